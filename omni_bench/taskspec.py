"""Task files: a declarative YAML per benchmark task, validated on load.

Every error names the file and the field, and says what would be accepted; an unknown key is an
error, because a typo silently ignored would change what a benchmark measures.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from types import ModuleType
from typing import Any

from . import plugins, units
from .errors import OmniBenchError, did_you_mean
from .schema import Fields, load_yaml

#: what zero and which corrections a model's energies (and a reference's) include: ``raw`` DFT energies, or
#: ``mp2020-corrected`` ones (the Materials Project 2020 anion and GGA/GGA+U corrections added, as CHGNet
#: learned them). A model card declares its own; a task may keep one reference per convention.
ENERGY_CONVENTIONS = ("raw", "mp2020-corrected")
#: error statistics compare with the reference; mean/max/min/sum describe the model's values alone
STATISTICS = ("mae", "rmse", "mean_error", "max_abs_error", "median_abs_error", "r2", "f1", "mean", "max", "min", "sum")
DIRECTIONS = ("lower", "higher")
#: statistics of a model's values alone, with no reference: no null predictor gives them a scale
VALUE_STATISTICS = ("mean", "max", "min", "sum")
#: null predictors whose error a task may declare as its scale: every value predicted 0 (relative,
#: interaction, reaction and adsorption energies), or the reference's mean over the task's items (bulk moduli,
#: volumes, formation energies: quantities whose zero is not a prediction anyone would make)
NULL_PREDICTORS = ("zero", "mean")
#: what a task measures, for the leaderboard's domain scores (one score per domain, averaged into the overall)
DOMAINS = ("molecules", "organometallics", "molecular-crystals", "mofs", "surfaces", "inorganic-crystals",
           "r2scan-transfer", "speed", "physicality")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class DataFile:
    path: str
    sha256: str


@dataclass(frozen=True)
class MetricSpec:
    name: str
    quantity: str
    statistic: str
    direction: str
    group_by: str | None = None


@dataclass(frozen=True)
class GateSpec:
    """How much worse than the baseline a metric may get: absolute and relative tolerances."""

    abs: float = 0.0
    rel: float = 0.0


@dataclass(frozen=True)
class TaskCounts:
    """What a full run of a task holds, declared in its file so that listing reads no data (and checked
    against the loader whenever the task runs): ``items`` computed (e.g. 39 structures) and ``scored``
    values of the headline metric's quantity (e.g. 31 reactions), with names a reader understands."""

    items: int
    item_name: str = "items"
    scored: int | None = None
    scored_name: str = "items"
    #: a CPU subset names the task with the full set and its item count (``subset_of: {task: T, items: N}``)
    subset_of: str | None = None
    subset_of_items: int | None = None


@dataclass(frozen=True)
class ErrorScale:
    """The fixed error a task's normalised error divides its headline error by, so that a model's normalised
    error depends on no other model: the headline statistic of a ``null_predictor`` (``NULL_PREDICTORS``)
    computed from the reference itself, or a stated ``value`` in the headline's ``unit`` with its ``source``."""

    null_predictor: str | None = None
    value: float | None = None
    unit: str | None = None
    source: str = ""

    def describe(self) -> str:
        if self.null_predictor == "zero":
            return "error of predicting 0"
        if self.null_predictor == "mean":
            return "error of predicting the reference mean"
        return f"{self.value:g} {self.unit} ({self.source})"


@dataclass(eq=False)
class TaskSpec:
    name: str
    version: int
    description: str
    suites: list[str]
    loader: str
    source: str
    files: list[DataFile]
    loader_params: dict[str, Any]
    level_of_theory: str
    citation: str
    protocol: str
    protocol_params: dict[str, Any]
    units: dict[str, str]
    metrics: list[MetricSpec]
    gate: dict[str, GateSpec] = field(default_factory=dict)
    notes: str = ""
    #: the item group that bootstrap intervals resample as a whole (items that share a computed fragment,
    #: such as the complexes of one framework, are not independent); None: items, or ``<unit>@`` id prefixes
    resample_by: str | None = None
    #: declared sizes (the optional ``counts`` section); None: not declared, so listing shows none
    counts: TaskCounts | None = None
    #: energy convention -> {scored quantity: reference quantity it is compared with for such models}
    by_energy_convention: dict[str, dict[str, str]] = field(default_factory=dict)
    path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    #: small derived tables shipped beside the task file (paths relative to its folder), with their sha256
    tables: list[DataFile] = field(default_factory=list)
    #: (current inputs hash, the hash its stored results were computed under); see ``identity.inputs_hash``
    inputs_hash_alias: tuple[str, str] | None = None
    #: the task this one ``extends`` (its file states only what differs); None: a task of its own
    parent: TaskSpec | None = None
    #: the name this task had before a rename: its items stay stored under it (``identity.py``)
    renamed_from: str | None = None
    #: the error scale of the normalised error (the optional ``scale`` section); None: no normalised error
    scale: ErrorScale | None = None
    #: the leaderboard domain (``DOMAINS``); None: in no domain score
    domain: str | None = None

    @property
    def needs_data(self) -> bool:
        return bool(self.files)

    @cached_property
    def protocol_module(self) -> ModuleType:
        """The protocol's module, imported on first use only (listing tasks imports no protocol)."""
        return plugins.load("protocol", self.protocol)

    @property
    def run_params(self) -> dict[str, Any]:
        """The protocol's parameters for a run: its defaults overlaid with the task file's."""
        return {**getattr(self.protocol_module, "PARAMS", {}), **self.protocol_params}

    @property
    def lineage(self) -> list[TaskSpec]:
        """This task, then the task it extends, and so on."""
        return [self] + (self.parent.lineage if self.parent else [])

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("protocol_module", None)  # a module does not pickle; it is imported again where needed
        return state


def builtin_tasks_dir() -> Path:
    """The bundled task files: the repository's tasks/ folder, installed as omni_bench/builtin_tasks."""
    installed = Path(__file__).resolve().parent / "builtin_tasks"
    return installed if installed.is_dir() else Path(__file__).resolve().parent.parent / "tasks"


#: the top-level fields of a task file (True: required, after ``extends`` has filled in the parent's)
TOP_FIELDS = {
    "name": True, "version": True, "description": True, "suites": True, "dataset": True, "reference": True,
    "protocol": True, "units": True, "metrics": True, "gate": False, "notes": False, "resample_by": False,
    "inputs_hash_alias": False, "counts": False, "extends": False, "renamed_from": False, "scale": False,
    "domain": False,
}
#: fields a task that ``extends`` another does not inherit: they speak of one file only
NOT_INHERITED = ("name", "extends", "renamed_from", "inputs_hash_alias")
#: longest chain of ``extends`` followed (a longer one is almost surely a loop through other folders)
MAX_EXTENDS_DEPTH = 8
#: parent tasks already read, by (file, modification time, size)
_PARENTS: dict[tuple[Path, int, int], TaskSpec] = {}


def load_task(path: Path, check_plugins: bool = True, _seen: tuple[Path, ...] = ()) -> TaskSpec:
    """Parse and validate one task file. ``check_plugins`` also imports its protocol and loader to check their
    parameters (``check_task_plugins``); listing leaves that out, so that it imports no model or data code.

    A file with ``extends: PARENT`` is its parent task file (``PARENT.yaml`` in the same folder, else among
    the built-in tasks) with the mappings it gives merged in, key by key: a value replaces the parent's, a
    mapping is merged the same way, and ``null`` removes the parent's key."""
    path = Path(path)
    own = load_yaml(path, "task file")
    if not isinstance(own, dict):
        Fields(path, "", own, TOP_FIELDS)  # fails: names the file and says a mapping is needed
    parent = _parent(path, own, _seen) if "extends" in own else None
    raw = merged(_inheritable(parent.raw), own) if parent else own
    top = Fields(path, "", raw, TOP_FIELDS)
    name = top.text("name")
    if name != path.stem:
        top.fail("name", f"is {name!r} but the file is {path.name}; rename one so they match")
    version = top.get("version", int)
    if version < 1:
        top.fail("version", "must be a positive integer")
    suites = top.get("suites", list)
    if not suites or not all(isinstance(s, str) and s for s in suites):
        top.fail("suites", "must be a non-empty list of suite names")

    dataset = Fields(path, "dataset", raw["dataset"], {
        "loader": True, "source": True, "files": False, "files_from": False, "tables": False, "params": False})
    files = _registry_files(dataset) + _data_files(path, dataset, "files", "the data root")
    tables = _data_files(path, dataset, "tables", "the task file's folder")

    reference = Fields(path, "reference", raw["reference"], {
        "level_of_theory": True, "citation": True, "notes": False, "by_energy_convention": False})
    protocol = Fields(path, "protocol", raw["protocol"], {"name": True, "params": False})

    task_units = top.get("units", dict)
    for quantity, unit in task_units.items():
        if not isinstance(quantity, str) or not isinstance(unit, str):
            top.fail(f"units.{quantity}", f"must map a quantity name to a unit string, got {unit!r}")
        try:
            units.check_unit(unit)
        except OmniBenchError as exc:
            top.fail(f"units.{quantity}", str(exc))

    metrics = []
    raw_metrics = top.get("metrics", list)
    if not raw_metrics:
        top.fail("metrics", "must list at least one metric")
    for i, entry in enumerate(raw_metrics):
        m = Fields(path, f"metrics[{i}]", entry, {
            "name": True, "quantity": True, "statistic": True, "direction": True, "group_by": False})
        spec = MetricSpec(m.text("name"), m.text("quantity"), m.text("statistic"), m.text("direction"),
                          m.text("group_by"))
        if spec.quantity not in task_units:
            m.fail("quantity", f"{spec.quantity!r} has no unit in 'units'{did_you_mean(spec.quantity, task_units)}")
        if spec.statistic not in STATISTICS:
            m.fail("statistic", f"unknown value {spec.statistic!r}{did_you_mean(spec.statistic, STATISTICS)};"
                   f" allowed: {', '.join(STATISTICS)}")
        if spec.direction not in DIRECTIONS:
            m.fail("direction", f"must be one of {', '.join(DIRECTIONS)}, got {spec.direction!r}")
        if any(spec.name == other.name for other in metrics):
            m.fail("name", f"{spec.name!r} is used twice")
        metrics.append(spec)

    gate = {}
    metric_names = [m.name for m in metrics]
    for metric_name, entry in top.get("gate", dict, {}).items():
        if metric_name not in metric_names:
            top.fail(f"gate.{metric_name}", f"is not a metric of this task{did_you_mean(metric_name, metric_names)}")
        g = Fields(path, f"gate.{metric_name}", entry, {"abs": False, "rel": False})
        tolerances = {k: g.get(k, (int, float), 0.0) for k in ("abs", "rel")}
        if any(v < 0 for v in tolerances.values()):
            g.fail("abs", "tolerances must not be negative")
        gate[metric_name] = GateSpec(**tolerances)

    spec = TaskSpec(
        name=name, version=version, description=top.text("description"), suites=suites,
        loader=dataset.text("loader"), source=dataset.text("source"), files=files,
        loader_params=dataset.get("params", dict, {}) or {},
        level_of_theory=reference.text("level_of_theory"), citation=reference.text("citation"),
        protocol=protocol.text("name"), protocol_params=protocol.get("params", dict, {}) or {},
        units=task_units, metrics=metrics, gate=gate, notes=top.get("notes", str, ""),
        resample_by=top.text("resample_by"), counts=_counts(top),
        by_energy_convention=_by_energy_convention(reference, task_units), path=path, raw=raw, tables=tables,
        inputs_hash_alias=_alias(top), parent=parent, renamed_from=top.text("renamed_from"),
        scale=_scale(top, primary_metric(metrics), task_units), domain=_domain(top),
    )
    if check_plugins:
        check_task_plugins(spec)
    return spec


def _parent(path: Path, own: dict[str, Any], seen: tuple[Path, ...]) -> TaskSpec:
    """The task a file ``extends``, loaded (and validated) on its own first."""
    fields = Fields(path, "", own, dict.fromkeys(TOP_FIELDS, False))
    name = fields.text("extends")
    if "/" in name or "\\" in name or name.endswith((".yaml", ".yml")):
        fields.fail("extends", f"must name a task (a task file's name without .yaml), got {name!r}")
    # a file named like its parent (a user's s22.yaml that extends s22) extends the built-in one it overrides
    candidates = [path.parent / f"{name}.yaml", builtin_tasks_dir() / f"{name}.yaml"]
    found = next((c for c in candidates if c.is_file() and c.resolve() != path.resolve()), None)
    if found is None and name == path.stem:
        fields.fail("extends", "names the task itself; name the task it is a variant of")
    if found is None:
        fields.fail("extends", f"names {name!r}, but there is no {name}.yaml beside it or among the built-in "
                    "tasks; name a task file of the same folder")
    chain = (*seen, path.resolve())
    if found.resolve() in chain or len(chain) > MAX_EXTENDS_DEPTH:
        fields.fail("extends", f"makes a loop ({' -> '.join(p.stem for p in chain)} -> {name}); a task cannot "
                    "extend itself or a task that extends it")
    stat = found.stat()
    key = (found.resolve(), stat.st_mtime_ns, stat.st_size)
    if key not in _PARENTS:  # the registry reads a parent once, however many variants extend it
        _PARENTS[key] = load_task(found, check_plugins=False, _seen=chain)
    return _PARENTS[key]


def _inheritable(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k not in NOT_INHERITED}


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` merged in: mappings key by key, anything else replaced, ``None`` removes."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _data_files(path: Path, dataset: Fields, key: str, relative_to: str) -> list[DataFile]:
    found = []
    for i, entry in enumerate(dataset.get(key, list, [])):
        f = Fields(path, f"dataset.{key}[{i}]", entry, {"path": True, "sha256": True})
        file_path, digest = f.text("path"), f.text("sha256")
        if file_path.startswith("/") or ".." in Path(file_path).parts:
            f.fail("path", f"must be relative to {relative_to}, without '..'")
        if not _SHA256.match(digest):
            f.fail("sha256", "must be 64 lowercase hex digits (run: sha256sum FILE)")
        found.append(DataFile(file_path, digest))
    return found


def _registry_files(dataset: Fields) -> list[DataFile]:
    """The files (and sha256) the dataset registry lists under each folder of ``dataset.files_from``: a
    task with hundreds of data files names their folder instead of repeating the registry line by line."""
    from . import datasets  # the registry reads package data only: no model code

    folders = dataset.get("files_from", list, [])
    registered = [f for d in datasets.registry().values() for f in d.files]
    files = []
    for i, folder in enumerate(folders):
        if not isinstance(folder, str) or not folder.strip() or folder.startswith("/") or ".." in folder:
            dataset.fail(f"files_from[{i}]", f"must be a folder relative to the data root, got {folder!r}")
        prefix = folder.rstrip("/") + "/"
        found = [DataFile(f.path, f.sha256) for f in registered if f.path.startswith(prefix)]
        if not found:
            dataset.fail(f"files_from[{i}]", f"{folder!r} holds no file of the dataset registry "
                         "(omni_bench/datasets.sha256; see: omni-bench data list)")
        files += found
    return files


def _alias(top: Fields) -> tuple[str, str] | None:
    raw = top.get("inputs_hash_alias", dict)
    if raw is None:
        return None
    alias = Fields(top.path, "inputs_hash_alias", raw, {"current": True, "stored_as": True})
    return alias.text("current"), alias.text("stored_as")


def _scale(top: Fields, headline: MetricSpec, task_units: dict[str, str]) -> ErrorScale | None:
    """The optional ``scale`` section: ``{null_predictor: zero|mean}`` or ``{value: X, unit: U, source: "..."}``."""
    if "scale" not in top.data:
        return None
    fields = Fields(top.path, "scale", top.data["scale"], {"null_predictor": False, "value": False, "unit": False,
                                                           "source": False})
    null = fields.text("null_predictor")
    if (null is None) == ("value" not in fields.data):
        fields.fail("", "must give either 'null_predictor' (zero or mean) or 'value' with 'unit' and "
                    "'source', not both")
    if null is not None:
        if null not in NULL_PREDICTORS:
            fields.fail("null_predictor", f"must be one of {', '.join(NULL_PREDICTORS)}, got {null!r}")
        if headline.statistic in VALUE_STATISTICS or headline.direction != "lower":
            fields.fail("null_predictor", "needs a headline error that is lower-is-better and compares with the "
                        f"reference; the headline {headline.name!r} is a {headline.direction}-is-better "
                        f"{headline.statistic}: give 'value', 'unit' and 'source' instead")
        return ErrorScale(null_predictor=null)
    value = fields.get("value", (int, float))
    if not value > 0:
        fields.fail("value", f"must be a positive number, got {value!r}")
    unit, source = fields.text("unit"), fields.text("source")
    if unit is None or source is None:
        fields.fail("unit" if unit is None else "source", "is required with 'value'")
    if unit != task_units[headline.quantity]:
        fields.fail("unit", f"must be the headline's unit {task_units[headline.quantity]!r} "
                    f"({headline.name}), got {unit!r}")
    return ErrorScale(value=float(value), unit=unit, source=source)


def _domain(top: Fields) -> str | None:
    domain = top.text("domain")
    if domain is not None and domain not in DOMAINS:
        top.fail("domain", f"unknown domain {domain!r}{did_you_mean(domain, DOMAINS)}; allowed: {', '.join(DOMAINS)}")
    return domain


def _counts(top: Fields) -> TaskCounts | None:
    """The optional ``counts`` section: how many items and scored values the task has, and what they are."""
    if "counts" not in top.data:
        return None
    c = Fields(top.path, "counts", top.data["counts"], {
        "items": True, "item_name": False, "scored": False, "scored_name": False, "subset_of": False})
    numbers = {key: c.get(key, int) for key in ("items", "scored")}
    for key, value in numbers.items():
        if value is not None and value < 1:
            c.fail(key, "must be a positive integer")
    item_name = c.text("item_name", "items")
    full_task, full_items = None, None
    if "subset_of" in c.data:
        full = Fields(top.path, "counts.subset_of", c.data["subset_of"], {"task": True, "items": True})
        full_task, full_items = full.text("task"), full.get("items", int)
        if full_items <= numbers["items"]:
            full.fail("items", f"must be the full task's item count, more than this subset's {numbers['items']}")
    return TaskCounts(numbers["items"], item_name, numbers["scored"], c.text("scored_name", item_name),
                      full_task, full_items)


def _by_energy_convention(reference: Fields, task_units: dict[str, str]) -> dict[str, dict[str, str]]:
    """``reference.by_energy_convention``: for models whose energies follow a convention, which reference
    quantity of the items a scored quantity is compared with instead of its own (``mp2020-corrected:
    {formation_energy: formation_energy_mp2020}``)."""
    chosen = reference.get("by_energy_convention", dict, {}) or {}
    for convention, mapping in chosen.items():
        if convention not in ENERGY_CONVENTIONS:
            reference.fail(f"by_energy_convention.{convention}", f"is not an energy convention; known: "
                           f"{', '.join(ENERGY_CONVENTIONS)}")
        if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
            reference.fail(f"by_energy_convention.{convention}", "must map a scored quantity to the reference "
                           "quantity its models are compared with")
        for quantity in mapping:
            if quantity not in task_units:
                reference.fail(f"by_energy_convention.{convention}.{quantity}",
                               f"is not a scored quantity (one of 'units'){did_you_mean(str(quantity), task_units)}")
    return chosen


def primary_metric(specs: list[MetricSpec]) -> MetricSpec:
    """A task's headline metric: the first one its task file lists that is not split by group."""
    for spec in specs:
        if not spec.group_by:
            return spec
    return specs[0]


def describe_counts(items: int, item_name: str, scored: int | None, scored_name: str) -> str:
    """'22 dimers' when what is computed is what is scored, else '39 structures, 31 reactions'."""
    if scored is None or (scored == items and scored_name == item_name):
        return f"{items} {item_name}"
    return f"{items} {item_name}, {scored} {scored_name}"


@cache
def check_task_plugins(spec: TaskSpec) -> None:
    """Check that the task's protocol and loader exist and accept the parameters the file gives them (imports
    both; once per task)."""
    protocol = Fields(spec.path, "protocol", spec.raw["protocol"], {"name": True, "params": False})
    dataset = Fields(spec.path, "dataset", spec.raw["dataset"], {
        "loader": True, "source": True, "files": False, "files_from": False, "tables": False,
        "params": False})
    for kind, fields, name, params, where in (
        ("protocol", protocol, spec.protocol, spec.protocol_params, "params"),
        ("loader", dataset, spec.loader, spec.loader_params, "params"),
    ):
        try:
            module = spec.protocol_module if kind == "protocol" else plugins.load(kind, name)
        except OmniBenchError as exc:
            fields.fail("name" if kind == "protocol" else "loader", str(exc))
        allowed = getattr(module, "PARAMS", {})
        for key in params:
            if key not in allowed:
                fields.fail(f"{where}.{key}", f"is not a parameter of {kind} {name!r}"
                            f"{did_you_mean(key, allowed)}; allowed: {', '.join(allowed) or 'none'}")
        if kind == "protocol":
            for quantity in spec.units:
                produced = getattr(module, "QUANTITIES", {})
                if quantity not in produced:
                    raise OmniBenchError(
                        f"{spec.path}: field 'units.{quantity}' is not a quantity protocol {name!r} computes"
                        f"{did_you_mean(quantity, produced)}; it computes: {', '.join(produced)}")
