"""Runs tasks for model variants: computes what the store lacks, item by item, then scores everything.

The runner knows nothing about any particular task: the task file names a loader and a protocol, and
the runner only asks the loader for items, the protocol for values, and the store for what is done.
"""

from __future__ import annotations

import math
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from . import data, plugins, results, scoring, units
from .computed_as import StoreIdentity, store_identity
from .errors import ItemTimeout, OmniBenchError, StopTask
from .items import Item
from .models.batched import default_batch_atoms
from .models.checkpoints import check_model_files
from .models.factories import resolve_device
from .models.fingerprint import fingerprint, fingerprint_id
from .models.loaded import CHARGE_SPIN_IGNORED, LoadedModel
from .models.registry import ModelVariant
from .scored import check_scored
from .store import ResultStore
from .taskspec import TaskSpec, check_task_plugins, primary_metric, protocol_params


@dataclass
class RunOptions:
    store: ResultStore
    out_dir: Path | None = None
    data_root: Path | None = None
    data_origin: str = ""
    device: str = "auto"
    limit: int | None = None
    rerun: bool = False
    progress: bool = True
    #: seconds one item may take before it is recorded as failed (None: no limit)
    item_timeout: float | None = None
    #: loaded models by fingerprint id, kept across ``run`` calls (tests and long-lived workers reuse them)
    model_cache: dict[str, LoadedModel] = field(default_factory=dict)
    #: atoms per batch for single points of models with a batched evaluator (None: the default for the model's
    #: device, see models/batched.py); 0: every energy through the ASE calculator
    batch_atoms: int | None = None
    #: let a --limit run replace a complete results file in ``out_dir`` (otherwise refused)
    replace_complete: bool = False

    def __post_init__(self) -> None:
        if self.item_timeout is not None and not (math.isfinite(self.item_timeout) and self.item_timeout > 0):
            raise OmniBenchError(f"--item-timeout must be a positive number of seconds, not {self.item_timeout:g}"
                                 " (leave it out for no limit)")


@dataclass
class TaskOutcome:
    model: str
    task: str
    n_items: int
    n_failed: int
    metrics: dict[str, dict]
    computed: int
    results_file: Path | None = None
    failures: list[dict] = field(default_factory=list)
    #: values the headline metric scored (e.g. reactions, where items are molecules), and what both are called
    n_scored: int = 0
    item_name: str = "items"
    scored_name: str = "scored"
    #: items whose charge or spin the model could not take
    charge_spin_dropped: int = 0
    #: energy convention of the reference the model was scored against (None: the task has one reference)
    reference_convention: str | None = None


@dataclass
class PreparedTask:
    spec: TaskSpec
    items: list[Item]
    params: dict[str, Any]
    #: where its computed items are stored: its own name, or the task it is ``computed_as``
    stored_as: StoreIdentity
    #: items of the whole task (``items`` may be the first --limit of them)
    n_total: int = 0

    @property
    def partial(self) -> bool:
        return len(self.items) < self.n_total


def prepare(tasks: list[TaskSpec], options: RunOptions) -> list[PreparedTask]:
    """Check data and load items for every task before any model runs, so bad input fails fast."""
    prepared = []
    for spec in tasks:
        params = protocol_params(spec)
        stored_as = store_identity(spec, params)  # a false computed_as claim fails before any data is read
        items = load_items(spec, options.data_root, options.data_origin)
        chosen = items[: options.limit] if options.limit is not None else items
        prepared.append(PreparedTask(spec, chosen, params, stored_as, len(items)))
    return prepared


def load_items(spec: TaskSpec, data_root: Path | None, origin: str = "") -> list[Item]:
    """A task's items from its verified data files, checked item by item (``check_items``) and as a whole
    (``check_scored``)."""
    check_task_plugins(spec)
    files = data.task_files(spec, data_root, origin)
    try:
        items = plugins.load("loader", spec.loader).load(files, spec.loader_params)
    except OmniBenchError:
        raise
    except Exception as exc:  # a file that does not parse: name the task's files and the loader
        raise OmniBenchError(f"task {spec.name!r}: loader {spec.loader!r} could not read "
                             f"{', '.join(files) or 'its data'}: {type(exc).__name__}: {exc}") from None
    check_items(spec, items)
    check_scored(spec, items)
    return items


def check_items(spec: TaskSpec, items: list[Item]) -> None:
    """Unique ids, finite reference values, and reference units that convert to the task's units."""
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise OmniBenchError(f"task {spec.name!r}: item id {item.id!r} appears twice in the dataset")
        seen.add(item.id)
        if spec.resample_by and item.reference and spec.resample_by not in item.groups:
            raise OmniBenchError(f"{spec.path}: field 'resample_by' names group {spec.resample_by!r}, which item "
                                 f"{item.id!r} does not have (its groups: {', '.join(item.groups) or 'none'})")
        for quantity, reference in item.reference.items():
            if not math.isfinite(reference.value):
                raise OmniBenchError(f"task {spec.name!r}: item {item.id!r} has no valid reference {quantity} "
                                     f"({reference.value!r}) in {', '.join(f.path for f in spec.files) or 'its data'}")
            if quantity in spec.units:
                try:
                    units.convert(reference.value, reference.unit, spec.units[quantity])
                except OmniBenchError as exc:
                    raise OmniBenchError(f"{spec.path}: field 'units.{quantity}' does not fit the reference of "
                                         f"item {item.id!r}: {exc}") from None


def claim_task_inputs(store: ResultStore, key: tuple, task: PreparedTask, label: str, rerun: bool) -> None:
    """Make sure the items stored under ``key`` were computed from the task's current inputs (protocol,
    parameters, data): record the hash on first use, and refuse a task file edited since without a version
    bump, unless ``rerun`` asks to replace the stale items. Items stored before hashes were recorded are
    taken to match the current task file of the same version."""
    current = task.stored_as.inputs_hash
    stored = store.inputs_hash(key)
    if stored == current:
        return
    if stored is not None:
        if not rerun:
            raise OmniBenchError(
                f"{task.spec.path}: the protocol, parameters or data files of task {task.spec.name!r} changed "
                f"since {label}'s results for its version {task.spec.version} were stored in {store.path} "
                f"(inputs hash {stored}, now {current}). Raise the task's 'version' field to keep both, or run "
                "again with --rerun to replace the stored items")
        store.drop(key)
    store.set_inputs_hash(key, current)


def prepare_run(variants: list[ModelVariant], tasks: list[TaskSpec], options: RunOptions) -> list[PreparedTask]:
    """Everything checked before any model runs, for every executor: the tasks' data and items, the results
    files a --limit run would replace, and the checkpoints the models would unpickle."""
    prepared = prepare(tasks, options)
    if options.out_dir is not None and not options.replace_complete:
        for variant in variants:
            for task in prepared:
                if task.partial:
                    results.refuse_partial_overwrite(options.out_dir, variant.label, task.spec, task.n_total,
                                                     options.limit)
    for variant in variants:
        check_model_files(variant)
    return prepared


def run_benchmarks(variants: list[ModelVariant], tasks: list[TaskSpec], options: RunOptions) -> list[TaskOutcome]:
    prepared = prepare_run(variants, tasks, options)
    fingerprints = [fingerprint(variant) for variant in variants]
    for variant, fp in zip(variants, fingerprints, strict=True):  # every store key is checked before any model runs
        for task in prepared:
            key = local_store_key(fingerprint_id(fp), variant, task, options.device)
            claim_task_inputs(options.store, key, task, variant.label, options.rerun)
    outcomes = []
    for variant, fp in zip(variants, fingerprints, strict=True):
        fid = fingerprint_id(fp)
        options.store.register_fingerprint(fid, variant.label, fp)
        model = options.model_cache.get(fid)
        for task in prepared:
            start = time.perf_counter()
            protocol = plugins.load("protocol", task.spec.protocol)
            key = local_store_key(fid, variant, task, options.device)
            done = options.store.get(key)
            pending = [i for i in task.items if options.rerun or i.id not in done]
            if pending and model is None:
                model = options.model_cache[fid] = LoadedModel(variant, options.device)
            bar = tqdm(total=len(task.items), initial=len(task.items) - len(pending), unit="item",
                       desc=f"{variant.label} {task.spec.name}", disable=not options.progress, file=sys.stderr)
            counted = Counter(model.evaluations) if model else Counter()
            batch_atoms = options.batch_atoms
            if batch_atoms is None and model is not None:
                batch_atoms = default_batch_atoms(model.device)
            with bar:
                for position, item in with_prefetch(model, protocol, pending, task.params, batch_atoms,
                                                    options.item_timeout):
                    stop = _compute_one(model, protocol, task, item, options.store, key, variant.label,
                                        options.item_timeout)
                    bar.update(1)
                    if stop:
                        for skipped in pending[position + 1:]:
                            options.store.put(key, variant.label, skipped.id, "failed", error=f"skipped: {stop}")
                        bar.update(len(pending) - position - 1)
                        break
            single_points = None
            if model is not None:
                model.prefetch([], 0)  # let go of the last chunk's energies
                single_points = _single_point_record(model, model.evaluations - counted, batch_atoms)
            outcomes.append(_summarise(variant, fid, fp, task, protocol, options, key, len(pending),
                                       time.perf_counter() - start, model.device if model else options.device,
                                       single_points))
    return outcomes


#: single points prefetched at once, in batches' worth of atoms: enough for full batches, few enough that the
#: progress bar moves and memory stays bounded
PREFETCH_BATCHES = 8


def with_prefetch(model: LoadedModel, protocol, items: list[Item], params: dict[str, Any], batch_atoms: int,
                  timeout: float | None = None, limit=None) -> Iterator[tuple[int, Item]]:
    """``enumerate(items)``, prefetching the single points of the next chunk whenever the last one is used up."""
    prefetched_until = 0
    for position, item in enumerate(items):
        if position == prefetched_until:
            prefetched_until = prefetch_single_points(model, protocol, items, position, params, batch_atoms,
                                                      timeout, limit)
        yield position, item


def prefetch_single_points(model: LoadedModel, protocol, items: list[Item], start: int, params: dict[str, Any],
                           batch_atoms: int, timeout: float | None = None, limit=None) -> int:
    """Hand the model the single points of the items from ``start`` on (protocols that name them with
    ``single_points(item, params)``), for it to compute in batches before the items ask for them one by
    one. Returns the position of the first item not covered; the caller prefetches again there.

    The batches may take ``timeout`` per item they cover; past that they are dropped, and each item computes
    its own energies under its own ``timeout`` (``limit(seconds)`` enforces it, SIGALRM by default)."""
    single_points = getattr(protocol, "single_points", None)
    if single_points is None or batch_atoms < 1 or model.batched_path is None:
        model.prefetch([], 0)
        return len(items)
    structures, end, n_atoms = [], start, 0
    while end < len(items) and (end == start or n_atoms < PREFETCH_BATCHES * batch_atoms):
        try:
            wanted = list(single_points(items[end], params))
        except Exception:  # a malformed item: its compute() raises and the failure is recorded there
            wanted = []
        structures += wanted
        n_atoms += sum(len(atoms) for atoms in wanted)
        end += 1
    try:
        with (limit or time_limit)(timeout * (end - start) if timeout else None):
            model.prefetch(structures, batch_atoms)
    except ItemTimeout:
        model.prefetch([], 0)
    return end


def _single_point_record(model: LoadedModel, counts: Counter, batch_atoms: int) -> dict[str, Any]:
    """Which path computed this task's energies (``model.energy`` calls), for the results file: ``batched``,
    ``ase``, or ``batched+ase`` when some went through the calculator (fallbacks, or not single points);
    ``batched_forces`` counts the structures whose forces came from batches (lock-step relaxations)."""
    path = "+".join(name for name in ("batched", "ase") if counts[name]) or "none"
    return {"path": path, "batched_evaluator": model.batched_path, "batch_atoms": batch_atoms,
            "batched": counts["batched"], "ase": counts["ase"], "batch_failed": counts["batch_failed"],
            "batched_error": model.batched_error, "batched_forces": counts["batched_forces"]}


@contextmanager
def time_limit(seconds: float | None):
    """Raise ``ItemTimeout`` in the main thread after ``seconds`` (SIGALRM). A model stuck inside C code
    that never returns to Python is interrupted when it does; elsewhere than the main thread, no limit."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise ItemTimeout(f"item took longer than --item-timeout {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def store_key(store_fp: str, variant: ModelVariant, task: PreparedTask) -> tuple[str, str, str, int]:
    """The result store's key of a variant's items of a task, under a store fingerprint (``_store_fingerprint``)."""
    return store_fp, variant.channel or "", task.stored_as.name, task.stored_as.version


def local_store_key(fid: str, variant: ModelVariant, task: PreparedTask, device: str) -> tuple[str, str, str, int]:
    """The key of items computed in this process, on ``device``."""
    protocol = plugins.load("protocol", task.spec.protocol)
    return store_key(_store_fingerprint(fid, protocol, device), variant, task)


def _store_fingerprint(fid: str, protocol, device: str) -> str:
    """Timings depend on the hardware: protocols that measure it are stored per device and host."""
    if not getattr(protocol, "DEVICE_SPECIFIC", False):
        return fid
    return f"{fid}/{resolve_device(device)}@{socket.gethostname()}"


@dataclass
class ItemResult:
    """One computed item before it is stored: what the store row holds, plus a protocol's request to stop.
    Kept apart from the store write so that distributed workers can compute and the client can store."""

    item_id: str
    status: str
    values: dict[str, float] | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    wall_s: float | None = None
    #: StopTask's reason: the remaining items of the task cannot succeed either
    stop: str | None = None

    def save(self, store: ResultStore, key: tuple, label: str) -> None:
        store.put(key, label, self.item_id, self.status, values=self.values, error=self.error, notes=self.notes,
                  wall_s=self.wall_s)


def compute_item(model: LoadedModel, protocol, item: Item, params: dict[str, Any], timeout: float | None = None,
                 limit=time_limit) -> ItemResult:
    """Compute one item: values when it worked, the reason when it did not. ``limit(timeout)`` is the
    context manager that enforces the time limit (SIGALRM by default, which works in the main thread only)."""
    model.notes.clear()
    start = time.perf_counter()
    try:
        with ExitStack() as guard:
            try:
                guard.enter_context(limit(timeout))
            except Exception as exc:  # the harness's own setting, not the model: fail the run, store nothing
                raise OmniBenchError(f"cannot enforce --item-timeout {timeout!r}: {type(exc).__name__}: "
                                     f"{exc}") from None
            return _compute(model, protocol, item, params, start)
    except ItemTimeout as exc:  # caught outside the limit, which words it (a Dask thread's timer cannot)
        return ItemResult(item.id, "failed", error=f"ItemTimeout: {exc}", notes=list(model.notes),
                          wall_s=time.perf_counter() - start)


def _compute(model: LoadedModel, protocol, item: Item, params: dict[str, Any], start: float) -> ItemResult:
    """``protocol.compute`` under the time limit the caller set up; any failure of the model is the result."""
    try:
        values = {k: float(v) for k, v in protocol.compute(item, model, params).items()}
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            raise ValueError(f"non-finite value for {', '.join(bad)}")
    except (KeyboardInterrupt, ItemTimeout):
        raise
    except Exception as exc:  # a model failing on one structure must not stop the run
        return ItemResult(item.id, "failed", error=f"{type(exc).__name__}: {exc}"[:2000], notes=list(model.notes),
                          wall_s=time.perf_counter() - start, stop=str(exc) if isinstance(exc, StopTask) else None)
    return ItemResult(item.id, "ok", values=values, notes=list(model.notes), wall_s=time.perf_counter() - start)


def _compute_one(model: LoadedModel, protocol, task: PreparedTask, item: Item, store: ResultStore,
                 key: tuple, label: str, timeout: float | None = None) -> str | None:
    """Compute one item and commit it. Returns the reason when the protocol says the remaining items
    cannot succeed either."""
    result = compute_item(model, protocol, item, task.params, timeout)
    result.save(store, key, label)
    return result.stop


def _summarise(variant, fid, fp, task: PreparedTask, protocol, options: RunOptions, key, computed: int,
               wall_s: float, device: str, single_points: dict[str, Any] | None = None) -> TaskOutcome:
    stored = options.store.get(key)
    ids = {i.id for i in task.items}
    stored = {k: v for k, v in stored.items() if k in ids}
    convention = variant.card.energy_convention
    entries = scoring.score(task.spec, protocol, task.items, stored, task.params, convention)
    metrics = scoring.metrics(task.spec, entries)
    failures = [{"item_id": s.item_id, "error": s.error} for s in stored.values() if s.status == "failed"]
    notes = Counter(n for s in stored.values() for n in s.notes)
    headline = primary_metric(task.spec.metrics).quantity
    outcome = TaskOutcome(variant.label, task.spec.name, len(task.items), len(failures), metrics, computed,
                          failures=failures, n_scored=sum(e.quantity == headline for e in entries),
                          item_name=task.spec.counts.item_name if task.spec.counts else "items",
                          scored_name=task.spec.counts.scored_name if task.spec.counts else "scored",
                          charge_spin_dropped=notes[CHARGE_SPIN_IGNORED],
                          reference_convention=scoring.reference_convention(task.spec, convention))
    if options.out_dir is not None:
        record = results.record(
            label=variant.label, fingerprint_id=fid, fingerprint=fp, card_source=variant.card.source,
            task=task.spec, data_root=str(options.data_root) if task.spec.files else None,
            config={"device": options.device, "limit": options.limit, "rerun": options.rerun,
                    "store": str(options.store.path), "inputs_hash": task.stored_as.inputs_hash,
                    "stored_as": task.stored_as.name,
                    "protocol_params": task.params,
                    "loader_params": task.spec.loader_params, "single_points": single_points,
                    "reference_energy_convention": outcome.reference_convention,
                    "trust_code": variant.trusted_code},
            device=device, wall_s=wall_s, computed=computed, cached=len(task.items) - computed,
            n_items=len(task.items), failures=failures, notes=dict(notes), metrics=metrics,
            card=results.card_summary(variant.card, variant.channel))
        record["complete"] = not task.partial
        outcome.results_file = results.write(options.out_dir, variant.label, task.spec, record, entries)
    return outcome
