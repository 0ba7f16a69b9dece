"""Model cards (YAML, in the spirit of matbench-discovery): what a model is, where it came from, and how
to build its ASE calculator. Reading a card imports nothing but YAML."""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from ..errors import OmniBenchError
from ..schema import Fields, load_yaml, name_problem
from ..taskspec import ENERGY_CONVENTIONS

_CARD_FIELDS = {
    "name": True, "description": True, "factory": True, "args": False, "channels": False,
    "default_channel": False, "channel_arg": False, "level_of_theory": False, "d3_functional": False,
    "trained_with_dispersion": True, "training_data": False, "provenance": False, "checkpoint": False,
    "checkpoint_env": False, "checkpoint_help": False, "packages": False, "charge_spin": False,
    "molecule_box": False, "architecture": False, "parameters": False, "notes": False, "training": False,
    # where the model runs and what it is good for (see omni_bench/models/worker.py and environments.py)
    "environment": False, "in_domain": False, "license": False, "python": False, "torch": False, "weights": False,
    "weights_packages": False, "download": False, "weights_url": False,
    "energy_convention": False, "energy_convention_source": False, "sanity": False,
    # measured figures the card reports (headline metric per task and channel, e.g. omni's from its leaderboard)
    "task_figures": False,
}
#: a managed environment's name: its folder, directly under the environments folder
ENVIRONMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True)
class ChannelInfo:
    level_of_theory: str
    d3_functional: str | None = None
    training_data: str = ""


@dataclass(frozen=True)
class SanityBounds:
    """Results no model of this kind can give for a real structure; a result outside them is recorded as a
    failure instead of a number (a runaway SCF, a hole in a learned potential). Few, per model kind, and
    documented in the card that sets them."""

    #: largest |partial charge| on any atom, in e (from the calculator's ``charges``, where it gives them)
    max_abs_charge: float | None = None
    #: (lowest, highest) potential energy per atom, in eV/atom
    energy_per_atom: tuple[float, float] | None = None


@dataclass(frozen=True)
class WeightsDownload:
    """A checkpoint omni-bench fetches on first use (with consent): its URL, the most bytes it may have, and
    its sha256 where the card knows it (otherwise the first download is pinned, ``models/weights.py``)."""

    url: str
    max_bytes: int
    sha256: str | None = None

    @property
    def filename(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]


@dataclass
class ModelCard:
    """Everything omni-bench knows about a model before loading it."""

    name: str
    description: str
    factory: str
    trained_with_dispersion: bool
    args: dict[str, Any] = field(default_factory=dict)
    channels: dict[str, ChannelInfo] = field(default_factory=dict)
    default_channel: str | None = None
    channel_arg: str = "channel"
    level_of_theory: str = ""
    d3_functional: str | None = None
    training_data: list[str] = field(default_factory=list)
    provenance: str = ""
    checkpoint: list[str] = field(default_factory=list)
    checkpoint_env: str | None = None
    checkpoint_help: str = ""
    packages: list[str] = field(default_factory=list)
    charge_spin: dict[str, str] | None = None
    molecule_box: float | None = None
    #: the energies the model learned: ``raw`` DFT or ``mp2020-corrected`` (see taskspec.ENERGY_CONVENTIONS)
    energy_convention: str = "raw"
    sanity: SanityBounds = field(default_factory=SanityBounds)
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    #: a Python environment managed by omni-bench (``omni-bench env create NAME``) the model runs in
    environment: str | None = None
    #: names of the tasks whose data (or data of the same origin) the model was trained on
    in_domain: list[str] = field(default_factory=list)
    license: str = ""
    #: the interpreter the model runs in (a worker process), instead of a managed ``environment``
    python: str | None = None
    #: the torch version ``env create`` installs before anything else (any other request may fetch GBs)
    torch: str | None = None
    #: how to get the weights: shipped in a package, downloaded by the package on first use, or a local file
    weights: str = ""
    #: packages installed without their requirements, for the files they ship (weights)
    weights_packages: list[str] = field(default_factory=list)
    #: where omni-bench downloads the checkpoint when no listed path has it (``models/weights.py``)
    download: WeightsDownload | None = None
    #: where the model's package downloads its weights from (for a card whose package does), shown when loading
    #: fails so an offline user knows what was tried
    weights_url: str = ""

    def load_hint(self) -> str:
        """What a failure to build the model adds: where the weights come from, and how to use a local file."""
        where = f"from {self.weights_url}: " if self.weights_url else ""
        return f" (weights {where}{' '.join(self.weights.split())})" if self.weights else ""

    @property
    def package_names(self) -> list[str]:
        """The distribution names of ``packages`` (which may carry pins for ``env create``)."""
        return [requirement_name(p) for p in self.packages]

    @property
    def is_multichannel(self) -> bool:
        return bool(self.channels)

    def summary(self) -> dict[str, Any]:
        """What a results file records about the model beside its fingerprint (``"card"``)."""
        return {"name": self.name, "source": self.source, "license": self.license, "training_data": self.training_data,
                "trained_with_dispersion": self.trained_with_dispersion, "in_domain": self.in_domain,
                "environment": self.environment, "weights": self.weights}

    def channel_info(self, channel: str | None) -> ChannelInfo:
        if channel is None:
            return ChannelInfo(self.level_of_theory, self.d3_functional)
        return self.channels[channel]

    def resolve_checkpoint(self, package_dirs: dict[str, str | None] | None = None) -> Path | None:
        """The checkpoint file on disk, or None for models without one; a clear error if it is missing.
        ``package_dirs`` locates the packages of ``pkg:`` entries (a worker's environment), instead of this
        interpreter's import system."""
        if not self.checkpoint and not self.checkpoint_env:
            return None
        candidates = []
        if self.checkpoint_env and os.environ.get(self.checkpoint_env):
            candidates.append(Path(os.environ[self.checkpoint_env]).expanduser())
        candidates += [_expand(c, package_dirs) for c in self.checkpoint]
        if self.download is not None:
            candidates.append(self.download_cache())
        for path in candidates:
            if path is not None and path.is_file():
                return path.resolve()
        where = "; ".join(str(p) for p in candidates if p is not None)
        env = f"set {self.checkpoint_env}=/path/to/the/file or " if self.checkpoint_env else ""
        raise OmniBenchError(
            f"model {self.name!r}: checkpoint not found (looked in: {where}); {env}copy it to the last "
            f"path. {self.checkpoint_help}".strip())

    def download_cache(self) -> Path:
        """Where a ``download`` lands: ``<user cache>/weights/<model>/<file name of the URL>``."""
        return Path(platformdirs.user_cache_dir("omni-bench")) / "weights" / self.name / self.download.filename

    def user_checkpoints(self) -> list[str]:
        """The checkpoint paths the user chose (``checkpoint_env``'s variable, entries other than ``pkg:``) and the
        downloaded one: files that, unlike those shipped inside installed packages, nobody but the user vouches
        for."""
        chosen = os.environ.get(self.checkpoint_env) if self.checkpoint_env else None
        entries = [os.path.expandvars(c) for c in self.checkpoint if not c.startswith("pkg:")]
        if self.download is not None:
            entries.append(str(self.download_cache()))
        return [chosen, *entries] if chosen else entries


def checkpoint_packages(card: ModelCard) -> list[str]:
    """The packages that ``pkg:`` checkpoint entries point into."""
    return [entry[4:].partition("/")[0] for entry in card.checkpoint if entry.startswith("pkg:")]


def requirement_name(requirement: str) -> str:
    """``mace-torch==0.3.16`` -> ``mace-torch``."""
    return re.split(r"[\s\[<>=!~;@]", requirement.strip(), maxsplit=1)[0]


def _expand(entry: str, package_dirs: dict[str, str | None] | None = None) -> Path | None:
    """``pkg:NAME/rel/path`` is a file inside an installed package (found without importing it)."""
    if entry.startswith("pkg:"):
        package, _, rel = entry[4:].partition("/")
        if package_dirs is not None:
            folder = package_dirs.get(package)
            return Path(folder) / rel if folder else None
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(list(spec.submodule_search_locations)[0]) / rel
    return Path(os.path.expandvars(entry)).expanduser()


def card_from_dict(data: Any, source: Path | str) -> ModelCard:
    """Validate a card mapping; errors name the card file and the field."""
    f = Fields(Path(source), "", data, _CARD_FIELDS)
    channels = {}
    for name, info in (f.get("channels", dict, {}) or {}).items():
        problem = name_problem(str(name))
        if problem:
            f.fail("channels", f"channel name {problem}")
        c = Fields(Path(source), f"channels.{name}", info, {
            "level_of_theory": True, "d3_functional": False, "training_data": False})
        channels[str(name)] = ChannelInfo(c.text("level_of_theory"), c.text("d3_functional"),
                                          c.get("training_data", str, ""))
    default_channel = f.text("default_channel")
    if default_channel is not None and default_channel not in channels:
        f.fail("default_channel", f"{default_channel!r} is not one of the channels: {', '.join(channels)}")
    if not channels and not f.data.get("level_of_theory"):
        f.fail("level_of_theory", "is required for a model without channels")
    if ":" not in f.text("factory"):
        f.fail("factory", "must be 'package.module:function'")
    if not all(isinstance(k, str) and k.isprintable() for k in f.get("args", dict, {}) or {}):
        f.fail("args", "keys must be argument names (printable text)")
    checkpoint = f.get("checkpoint", (str, list), [])
    for entry in [checkpoint] if isinstance(checkpoint, str) else checkpoint:
        if not isinstance(entry, str) or not entry.strip():
            f.fail("checkpoint", "must be a path or a list of paths")
        if entry.startswith("pkg:") and ".." in Path(entry[4:]).parts:
            f.fail("checkpoint", f"{entry!r}: a 'pkg:' entry names a file inside the package; remove '..'")
    charge_spin = f.get("charge_spin", dict, None)
    if charge_spin is not None:
        Fields(Path(source), "charge_spin", charge_spin, {"charge": True, "spin": True, "spin_convention": False})
        if charge_spin.get("spin_convention", "multiplicity") not in ("multiplicity", "unpaired"):
            f.fail("charge_spin.spin_convention", "must be 'multiplicity' or 'unpaired'")
    energy_convention = f.text("energy_convention", "raw")
    if energy_convention not in ENERGY_CONVENTIONS:
        f.fail("energy_convention", f"must be one of {', '.join(ENERGY_CONVENTIONS)}, got {energy_convention!r}")
    known = {k: v for k, v in f.data.items()
             if k in ("architecture", "parameters", "notes", "training", "task_figures")}
    environment, python = f.text("environment"), f.text("python")
    if environment is not None and python is not None:
        f.fail("python", "and 'environment' both name where the model runs: keep one")
    if environment is not None and not ENVIRONMENT_NAME.fullmatch(environment):
        f.fail("environment", "must be a name of letters, digits, '.', '_' and '-' (the folder of the environment)")
    for key in ("in_domain", "packages", "training_data", "weights_packages"):
        if not all(isinstance(v, str) for v in f.get(key, list, [])):
            f.fail(key, "must be a list of strings")
    download = _download(f)
    return ModelCard(
        name=f.name("name"), description=f.text("description"), factory=f.text("factory"),
        trained_with_dispersion=f.get("trained_with_dispersion", bool), args=f.get("args", dict, {}) or {},
        channels=channels, default_channel=default_channel, channel_arg=f.text("channel_arg", "channel"),
        level_of_theory=f.get("level_of_theory", str, ""), d3_functional=f.text("d3_functional"),
        training_data=f.get("training_data", list, []), provenance=f.get("provenance", str, ""),
        checkpoint=[checkpoint] if isinstance(checkpoint, str) else checkpoint,
        checkpoint_env=f.text("checkpoint_env"), checkpoint_help=f.get("checkpoint_help", str, ""),
        packages=f.get("packages", list, []), charge_spin=charge_spin,
        molecule_box=f.get("molecule_box", (int, float), None), energy_convention=energy_convention,
        sanity=_sanity(f), source=str(source), extra=known,
        environment=environment, in_domain=f.get("in_domain", list, []), license=f.get("license", str, ""),
        python=python, torch=_version_text(f, "torch"), weights=f.get("weights", str, ""),
        weights_packages=f.get("weights_packages", list, []), download=download,
        weights_url=f.get("weights_url", str, ""),
    )


def _download(card: Fields) -> WeightsDownload | None:
    if card.data.get("download") is None:
        return None
    d = Fields(card.path, "download", card.get("download", dict), {"url": True, "max_bytes": True, "sha256": False})
    url = d.text("url")
    if not url.startswith("https://") or url.endswith("/"):
        d.fail("url", "must be an https:// URL of a file")
    size = d.get("max_bytes", int)
    if size <= 0:
        d.fail("max_bytes", "must be a positive number of bytes")
    sha = d.text("sha256")
    if sha is not None and not re.fullmatch(r"[0-9a-f]{64}", sha):
        d.fail("sha256", "must be 64 lowercase hex digits")
    return WeightsDownload(url, size, sha)


def _version_text(f: Fields, key: str) -> str | None:
    """A version number, which YAML may have read as a float (``torch: 2.5``): quote it to keep it exact."""
    value = f.data.get(key)
    if isinstance(value, float):
        f.fail(key, f"must be a quoted version string, e.g. '{value}' (YAML reads {value} as a number)")
    return f.text(key)


def _sanity(card: Fields) -> SanityBounds:
    s = Fields(card.path, "sanity", card.get("sanity", dict, {}) or {},
               {"max_abs_charge": False, "energy_per_atom": False, "why": False})
    charge = s.get("max_abs_charge", (int, float))
    if charge is not None and charge <= 0:
        s.fail("max_abs_charge", "must be a positive charge in e")
    energy = s.get("energy_per_atom", list)
    if energy is not None and (len(energy) != 2 or not all(isinstance(v, (int, float)) for v in energy)
                               or energy[0] >= energy[1]):
        s.fail("energy_per_atom", "must be [lowest, highest] in eV/atom")
    return SanityBounds(charge, tuple(energy) if energy else None)


def load_card(path: Path) -> ModelCard:
    return card_from_dict(load_yaml(path, "model card"), path)
