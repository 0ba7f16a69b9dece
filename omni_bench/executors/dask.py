"""Runs items on a Dask cluster: the pending items of each (model, channel, task) go out in chunks, each
worker loads a model once and keeps it, and the results come back to the client, which alone writes the
result store.

Why the client writes: SQLite with many writers over a network filesystem is unreliable, and one writer
keeps resume, failure records and reports exactly as in a serial run. A worker that dies takes only the
chunk it was computing with it; Dask recomputes that chunk on another worker, and a result stored twice
replaces its row (the store's primary key) instead of adding one.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from .. import plugins
from ..devices import resolve_device
from ..errors import OmniBenchError
from ..items import Item
from ..models.batched import default_batch_atoms
from ..models.fingerprint import model_packages
from ..models.loaded import LoadedModel
from ..models.registry import ModelVariant
from ..models.worker import worker_environment
from ..run.compute import ItemResult, compute_items, thread_time_limit
from ..run.options import RunOptions
from ..run.plan import RunPlan, plan_run, store_fingerprint
from ..run.summary import TaskOutcome, summarise
from ..store import StoreKey
from .gpu import claim_gpu, visible_gpu_count
from .settings import INSTALL_HINT, ExecutorSettings

#: chunks per worker thread for each (model, channel, task) when --chunk-size is not given: enough to
#: balance uneven items, few enough that per-task overhead stays small next to a model call
CHUNKS_PER_WORKER = 4
MAX_AUTO_CHUNK = 64


def import_distributed():
    try:
        import distributed
    except ImportError:
        raise OmniBenchError(f"--executor dask needs Dask: {INSTALL_HINT}") from None
    return distributed


# ----------------------------------------------------------------------------------------------- cluster


def default_local_workers(device: str) -> int:
    """One worker per core; with ``--device cuda``, one per visible GPU (each worker holds one replica)."""
    if resolve_device(device) == "cuda":
        return max(1, visible_gpu_count())
    if device.startswith("cuda:"):
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextmanager
def open_client(settings: ExecutorSettings, device: str, progress: bool = True) -> Iterator[Any]:
    """A Dask client on the cluster the settings name: a new local one, a running scheduler, or a
    dask-jobqueue cluster. Clusters started here are closed on the way out."""
    distributed = import_distributed()
    cluster = None
    if settings.name == "slurm":
        from .slurm import start_cluster

        cluster = start_cluster(settings.cluster_config, settings.workers, settings.trust_code)
    elif not settings.scheduler:
        # Single-threaded worker processes: a calculator is not thread-safe, and each process keeps its
        # own model (the nanny also pins OMP/MKL threads to 1, so N workers use N cores).
        cluster = distributed.LocalCluster(n_workers=settings.workers or default_local_workers(device),
                                           threads_per_worker=1, processes=True, dashboard_address=":0")
    try:
        try:
            client = distributed.Client(cluster if cluster is not None else settings.scheduler, timeout="30s")
        except OSError as exc:
            where = settings.scheduler or "the cluster started here"
            raise OmniBenchError(f"cannot reach the Dask scheduler at {where}: {exc}") from None
        if progress:
            print(f"dask: {_describe(client)}", file=sys.stderr)
        try:
            yield client
        finally:
            client.close()
    finally:
        if cluster is not None:
            # Workers that imported torch can take longer than the nanny's 4 s to exit; it then kills them,
            # after every result is stored. Its warning about it would only alarm.
            nanny_log = logging.getLogger("distributed.nanny")
            level = nanny_log.level
            nanny_log.setLevel(logging.ERROR)
            try:
                cluster.close()
            finally:
                nanny_log.setLevel(level)


def _describe(client) -> str:
    threads = client.nthreads()
    return (f"{len(threads)} workers, {sum(threads.values())} threads, scheduler {client.scheduler.address}"
            + ("" if threads else " (tasks wait until workers join)"))


# ------------------------------------------------------------------------------------------ worker side

#: models loaded on this worker process, by (fingerprint id, device): each worker loads a model once
_MODELS: dict[tuple[str, str], LoadedModel] = {}
#: how often this worker process loaded each model (fingerprint id), and the seconds it took: a worker
#: loads a model once (these are for tests and scripts/scaling_report.py)
MODEL_LOADS: Counter[str] = Counter()
MODEL_LOAD_SECONDS: dict[str, float] = {}
#: one lock per model: calculators are not thread-safe, so tasks on a multi-threaded worker take turns
_MODEL_LOCKS: dict[tuple[str, str], threading.Lock] = {}
_CACHE_LOCK = threading.Lock()


@dataclass
class ChunkResult:
    """What a worker sends back for one chunk: the item results, and where they were computed."""

    store_fingerprint: str
    device: str
    host: str
    results: list[ItemResult]


def worker_model(variant: ModelVariant, fid: str, device: str,
                 packages: dict[str, str] | None = None) -> tuple[LoadedModel, threading.Lock]:
    """This worker's replica of the model, loaded on first use; ``cuda`` means the GPU this worker holds.
    ``packages`` are the versions in the client's fingerprint: results are stored under it, so a worker
    with other versions must not compute them."""
    device = claim_gpu() if resolve_device(device) == "cuda" else device
    key = (fid, device)
    with _CACHE_LOCK:
        lock = _MODEL_LOCKS.setdefault(key, threading.Lock())
    with lock:
        if key not in _MODELS:
            check_worker_packages(variant, packages or {})
            start = time.perf_counter()
            _MODELS[key] = LoadedModel(variant, device)
            MODEL_LOADS[fid] += 1
            MODEL_LOAD_SECONDS[fid] = time.perf_counter() - start
    return _MODELS[key], lock


def check_worker_packages(variant: ModelVariant, expected: dict[str, str]) -> None:
    found = model_packages(variant, worker_environment(variant.card))
    different = [f"{name} {found[name]} (client: {version})" for name, version in expected.items()
                 if found.get(name) != version]
    if different:
        raise OmniBenchError(f"worker {socket.gethostname()} has {', '.join(different)} for {variant.label}: its "
                             "results would be stored under the client's model fingerprint; install the same "
                             "versions on every worker")


def compute_chunk(variant: ModelVariant, fid: str, device: str, protocol_name: str, params: dict[str, Any],
                  items: list[Item], timeout: float | None, skip: dict[str, set[str]] | None = None,
                  packages: dict[str, str] | None = None, batch_atoms: int | None = None) -> ChunkResult:
    """Compute ``items`` in order on this worker, stopping where the protocol raises StopTask.

    ``skip`` (device-specific tasks only) maps store fingerprints to finished item ids: the key of such a
    task names the device and host, which only the worker knows."""
    protocol = plugins.load("protocol", protocol_name)  # modules do not travel: the worker imports its own
    store_fp = store_fingerprint(fid, protocol, device)
    done = (skip or {}).get(store_fp, set())
    if all(item.id in done for item in items):
        return ChunkResult(store_fp, resolve_device(device), socket.gethostname(), [])
    model, lock = worker_model(variant, fid, device, packages)
    todo = [item for item in items if item.id not in done]
    batch_atoms = default_batch_atoms(model.device) if batch_atoms is None else batch_atoms
    with lock:
        results = list(compute_items(model, protocol, todo, params, batch_atoms, timeout, thread_time_limit))
    return ChunkResult(store_fp, model.device, socket.gethostname(), results)


# ------------------------------------------------------------------------------------------ client side


@dataclass
class _Scheduled:
    """A plan as the cluster sees it: its chunks in flight, and the plans whose chunks compute some of its
    items (an earlier task stored as this one: a subset, or the same items against another reference)."""

    plan: RunPlan
    order: int
    open_chunks: int = 0
    waits_for: list[_Scheduled] = field(default_factory=list)
    device: str = ""
    started: float = field(default_factory=time.perf_counter)
    outcome: TaskOutcome | None = None


def run_on_cluster(client, variants: list[ModelVariant], tasks, options: RunOptions,
                   chunk_size: int | None = None, expected_workers: int | None = None) -> list[TaskOutcome]:
    """The plans' items computed by the cluster's workers. Every (model, task) is scheduled at once; results
    are stored as chunks complete; outcomes come in the serial order. ``expected_workers`` sizes the automatic
    chunks where workers are still to join (batch jobs)."""
    distributed = import_distributed()
    scheduled = _share_items([_Scheduled(plan, order, device=options.device)
                              for order, plan in enumerate(plan_run(variants, tasks, options, local=False))])
    threads = max(1, sum(client.nthreads().values()), expected_workers or 0)
    futures: dict[Any, tuple[_Scheduled, list[Item]]] = {}
    for entry in scheduled:
        plan = entry.plan
        skip = _done_per_device(plan) if plan.device_specific and not options.rerun else None
        for chunk in _chunks(plan, chunk_size or _auto_chunk(len(plan.pending), threads)):
            future = client.submit(compute_chunk, plan.variant, plan.fingerprint_id, options.device,
                                   plan.task.spec.protocol, plan.task.params, chunk, options.item_timeout, skip,
                                   plan.fingerprint["packages"], options.batch_atoms, pure=False,
                                   priority=-entry.order, key=chunk_key(plan.task.spec.name,
                                                                        plan.position[chunk[0].id]))
            futures[future] = (entry, chunk)
            entry.open_chunks += 1
    _finish_ready(scheduled, options)
    bar = tqdm(total=sum(len(e.plan.pending) for e in scheduled), unit="item", desc="dask",
               disable=not options.progress, file=sys.stderr)
    try:
        with bar:
            for future in distributed.as_completed(list(futures)):
                if future not in futures:
                    continue  # cancelled after a StopTask, already accounted for
                entry, chunk = futures.pop(future)
                if future.status == "finished":
                    _store_chunk(entry, future.result(), futures, client)
                else:
                    _chunk_failed(entry, chunk, future, options)
                future.release()
                entry.open_chunks -= 1
                bar.update(len(chunk))
                _finish_ready(scheduled, options)
    except BaseException:
        client.cancel(list(futures))
        raise
    return [entry.outcome for entry in scheduled]


def _share_items(scheduled: list[_Scheduled]) -> list[_Scheduled]:
    """A plan stored under the same key as an earlier one leaves the items they share to the earlier one and
    finishes after it, so that a task and its subset (or a second reference) compute each item once."""
    owners: dict[tuple[StoreKey, str], _Scheduled] = {}
    for entry in scheduled:
        plan = entry.plan
        if plan.key is None or plan.rerun:
            continue
        keep = []
        for item in plan.pending:
            owner = owners.setdefault((plan.key, item.id), entry)
            if owner is entry:
                keep.append(item)
            elif owner not in entry.waits_for:
                entry.waits_for.append(owner)
        plan.set_pending(keep)
    return scheduled


def _finish_ready(scheduled: list[_Scheduled], options: RunOptions) -> None:
    """Summarise every plan whose chunks, and the chunks of the plans it waits for, are all done."""
    for entry in scheduled:
        if entry.outcome is None and entry.open_chunks == 0 and all(w.outcome for w in entry.waits_for):
            if entry.plan.key is None:  # nothing ran for a device-specific task: summarise what this host has
                entry.plan.use_local_key(options.device)
            entry.outcome = summarise(entry.plan, options, time.perf_counter() - entry.started, entry.device)


def chunk_key(task: str, first: int) -> str:
    """A Dask key that says what the chunk is (shown on the dashboard): the task and its first position."""
    return f"omni-bench-{task}-item{first}-{uuid.uuid4().hex[:12]}"


def _auto_chunk(n_items: int, threads: int) -> int:
    return max(1, min(MAX_AUTO_CHUNK, math.ceil(n_items / (threads * CHUNKS_PER_WORKER))))


def _chunks(plan: RunPlan, size: int) -> list[list[Item]]:
    """Device-specific tasks (timings, size ladders) stay whole: one worker, one device, items in order."""
    if plan.device_specific:
        return [plan.pending] if plan.pending else []
    return [plan.pending[n: n + size] for n in range(0, len(plan.pending), size)]


def _done_per_device(plan: RunPlan) -> dict[str, set[str]]:
    """Finished items of a device-specific task under every device and host it was stored for."""
    found = plan.store.done_per_device(plan.key_for(plan.fingerprint_id))
    return {key.fingerprint: ids for key, ids in found.items()}


def _store_chunk(entry: _Scheduled, chunk: ChunkResult, futures: dict, client) -> None:
    plan = entry.plan
    plan.use_key(chunk.store_fingerprint)
    entry.device = chunk.device
    for result in chunk.results:
        if plan.record(result):  # a StopTask: the chunks after it have nothing left to do
            later = [f for f, (e, items) in futures.items()
                     if e is entry and plan.position[items[0].id] > plan.stop[0]]
            client.cancel(later)
            for future in later:
                del futures[future]
                entry.open_chunks -= 1


def _chunk_failed(entry: _Scheduled, chunk: list[Item], future, options: RunOptions) -> None:
    """A chunk that killed its workers over and over (a crash, out of memory) is recorded as failed items,
    like any failing item; anything else (a model that cannot be built on the workers) stops the run."""
    from distributed.scheduler import KilledWorker

    plan = entry.plan
    if future.status == "cancelled":
        raise OmniBenchError(f"{plan.label} {plan.task.spec.name}: the Dask cluster dropped a chunk (was the "
                             "scheduler restarted?); finished items are stored: run the same command to resume")
    exc = future.exception()
    if isinstance(exc, KilledWorker):
        if plan.key is None:
            plan.use_local_key(options.device)
        for item in chunk:
            if item.id not in plan.written:
                plan.fail(item.id, f"KilledWorker: every worker that computed this item's chunk died ({exc}); "
                                   "--rerun retries it")
        return
    if isinstance(exc, OmniBenchError):
        raise OmniBenchError(f"on a Dask worker: {exc}") from None
    raise OmniBenchError(f"{plan.label} {plan.task.spec.name}: a Dask worker failed outside any item: "
                         f"{type(exc).__name__}: {exc}") from None
