"""Runs items on a Dask cluster: the pending items of each (model, channel, task) go out in chunks, each
worker loads a model once and keeps it, and the results come back to the client, which alone writes the
result store.

Why the client writes: SQLite with many writers over a network filesystem is unreliable, and one writer
keeps resume, failure records and reports exactly as in a serial run. A worker that dies takes only the
chunk it was computing with it; Dask recomputes that chunk on another worker, and a result stored twice
replaces its row (the store's primary key) instead of adding one.
"""

from __future__ import annotations

import ctypes
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
from ..errors import ItemTimeout, OmniBenchError
from ..items import Item
from ..models.batched import default_batch_atoms
from ..models.factories import resolve_device
from ..models.fingerprint import fingerprint, fingerprint_id, model_packages
from ..models.loaded import LoadedModel
from ..models.registry import ModelVariant
from ..models.worker import worker_environment
from ..runner import (
    ItemResult,
    PreparedTask,
    RunOptions,
    TaskOutcome,
    _store_fingerprint,
    _summarise,
    claim_task_inputs,
    compute_item,
    local_store_key,
    prepare_run,
    store_key,
    time_limit,
    with_prefetch,
)
from ..store import ResultStore
from . import ExecutorSettings
from .gpu import claim_gpu, visible_gpu_count

INSTALL_HINT = "pip install 'omni-bench[dask]' (dask and distributed; dask-jobqueue for --executor slurm)"
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

        cluster = start_cluster(settings.cluster_config, settings.workers)
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
            _check_packages(variant, packages or {})
            start = time.perf_counter()
            _MODELS[key] = LoadedModel(variant, device)
            MODEL_LOADS[fid] += 1
            MODEL_LOAD_SECONDS[fid] = time.perf_counter() - start
    return _MODELS[key], lock


def _check_packages(variant: ModelVariant, expected: dict[str, str]) -> None:
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
    protocol = plugins.load("protocol", protocol_name)
    store_fp = _store_fingerprint(fid, protocol, device)
    done = (skip or {}).get(store_fp, set())
    if all(item.id in done for item in items):
        return ChunkResult(store_fp, resolve_device(device), socket.gethostname(), [])
    model, lock = worker_model(variant, fid, device, packages)
    todo = [item for item in items if item.id not in done]
    batch_atoms = default_batch_atoms(model.device) if batch_atoms is None else batch_atoms
    results = []
    with lock:
        for _, item in with_prefetch(model, protocol, todo, params, batch_atoms, timeout, thread_time_limit):
            results.append(compute_item(model, protocol, item, params, timeout, limit=thread_time_limit))
            if results[-1].stop:
                break  # the client records the remaining items as skipped
        model.prefetch([], 0)
    return ChunkResult(store_fp, model.device, socket.gethostname(), results)


class _AsyncTimeout(ItemTimeout):
    """Raised inside a worker thread by the timer of ``thread_time_limit``."""


@contextmanager
def thread_time_limit(seconds: float | None):
    """``--item-timeout`` for Dask worker threads, where SIGALRM cannot reach: a timer raises an exception
    in the computing thread. Like SIGALRM it acts when the thread runs Python code again, so an optimiser
    loop stops at its next step, but a single C call (or sleep) that never returns is not interrupted."""
    if not seconds or threading.current_thread() is threading.main_thread():
        with time_limit(seconds):
            yield
        return
    target = threading.get_ident()
    guard = threading.Lock()
    active = [True]

    def expire() -> None:
        with guard:
            if active[0]:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(target), ctypes.py_object(_AsyncTimeout))

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        try:
            yield
        finally:
            with guard:  # after this no timeout can be raised, and one set but not yet raised is withdrawn
                active[0] = False
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(target), None)
            timer.cancel()
    except _AsyncTimeout:
        raise ItemTimeout(f"item took longer than --item-timeout {seconds:g} s") from None


# ------------------------------------------------------------------------------------------ client side


@dataclass
class _Plan:
    """One (model variant, task): its pending items, its chunks in flight and what came back."""

    variant: ModelVariant
    fid: str
    fp: dict[str, Any]
    task: PreparedTask
    protocol: Any
    key: tuple | None
    pending: list[Item]
    device: str
    position: dict[str, int] = field(default_factory=dict)
    open_chunks: int = 0
    written: set[str] = field(default_factory=set)
    #: (position in ``pending``, reason) of the earliest StopTask seen
    stop: tuple[int, str] | None = None
    started: float = field(default_factory=time.perf_counter)
    outcome: TaskOutcome | None = None

    @property
    def device_specific(self) -> bool:
        return bool(getattr(self.protocol, "DEVICE_SPECIFIC", False))


def run_on_cluster(client, variants: list[ModelVariant], tasks, options: RunOptions,
                   chunk_size: int | None = None, expected_workers: int | None = None) -> list[TaskOutcome]:
    """Like ``runner.run_benchmarks``, with the items computed by the cluster's workers. Every (model,
    task) is scheduled at once; results are stored as chunks complete; outcomes come in the serial order.
    ``expected_workers`` sizes the automatic chunks where workers are still to join (batch jobs)."""
    distributed = import_distributed()
    prepared = prepare_run(variants, tasks, options)
    plans = [_plan(variant, task, options) for variant in variants for task in prepared]
    threads = max(1, sum(client.nthreads().values()), expected_workers or 0)
    futures: dict[Any, tuple[_Plan, list[Item]]] = {}
    for order, plan in enumerate(plans):
        skip = _done_by_fingerprint(options.store, plan) if plan.device_specific and not options.rerun else None
        for chunk in _chunks(plan, chunk_size or _auto_chunk(len(plan.pending), threads)):
            future = client.submit(compute_chunk, plan.variant, plan.fid, options.device, plan.task.spec.protocol,
                                   plan.task.params, chunk, options.item_timeout, skip, plan.fp["packages"],
                                   options.batch_atoms, pure=False,
                                   priority=-order, key=chunk_key(plan.task.spec.name, plan.position[chunk[0].id]))
            futures[future] = (plan, chunk)
            plan.open_chunks += 1
    for plan in plans:
        if plan.open_chunks == 0:
            _finish(plan, options)
    bar = tqdm(total=sum(len(p.pending) for p in plans), unit="item", desc="dask", disable=not options.progress,
               file=sys.stderr)
    try:
        with bar:
            for future in distributed.as_completed(list(futures)):
                if future not in futures:
                    continue  # cancelled after a StopTask, already accounted for
                plan, chunk = futures.pop(future)
                if future.status == "finished":
                    _store_chunk(plan, future.result(), options, futures, client)
                else:
                    _chunk_failed(plan, chunk, future, options)
                future.release()
                plan.open_chunks -= 1
                bar.update(len(chunk))
                if plan.open_chunks == 0:
                    _finish(plan, options)
    except BaseException:
        client.cancel(list(futures))
        raise
    return [plan.outcome for plan in plans]


def chunk_key(task: str, first: int) -> str:
    """A Dask key that says what the chunk is (shown on the dashboard): the task and its first position."""
    return f"omni-bench-{task}-item{first}-{uuid.uuid4().hex[:12]}"


def _plan(variant: ModelVariant, task: PreparedTask, options: RunOptions) -> _Plan:
    fp = fingerprint(variant)
    fid = fingerprint_id(fp)
    options.store.register_fingerprint(fid, variant.label, fp)
    protocol = plugins.load("protocol", task.spec.protocol)
    plan = _Plan(variant, fid, fp, task, protocol, None, [], options.device)
    if plan.device_specific:  # the key names the worker's device and host: known when a result comes back
        plan.pending = list(task.items)
        for store_fp in _done_by_fingerprint(options.store, plan):  # every device and host stored so far
            claim_task_inputs(options.store, store_key(store_fp, variant, task), task, variant.label, options.rerun)
    else:
        plan.key = store_key(fid, variant, task)
        claim_task_inputs(options.store, plan.key, task, variant.label, options.rerun)
        done = options.store.get(plan.key)
        plan.pending = [i for i in task.items if options.rerun or i.id not in done]
    plan.position = {item.id: n for n, item in enumerate(plan.pending)}
    return plan


def _auto_chunk(n_items: int, threads: int) -> int:
    return max(1, min(MAX_AUTO_CHUNK, math.ceil(n_items / (threads * CHUNKS_PER_WORKER))))


def _chunks(plan: _Plan, size: int) -> list[list[Item]]:
    """Device-specific tasks (timings, size ladders) stay whole: one worker, one device, items in order."""
    if plan.device_specific:
        return [plan.pending] if plan.pending else []
    return [plan.pending[n: n + size] for n in range(0, len(plan.pending), size)]


def _done_by_fingerprint(store: ResultStore, plan: _Plan) -> dict[str, set[str]]:
    """Finished items of a device-specific task under every device and host it was stored for."""
    spec = plan.task.spec
    rows = store.db.execute(
        "SELECT fingerprint, item_id FROM results WHERE fingerprint LIKE ? AND channel=? AND task=? "
        "AND task_version=?", (f"{plan.fid}/%", plan.variant.channel or "", spec.name, spec.version)).fetchall()
    done: dict[str, set[str]] = {}
    for store_fp, item_id in rows:
        done.setdefault(store_fp, set()).add(item_id)
    return done


def _store_chunk(plan: _Plan, chunk: ChunkResult, options: RunOptions, futures: dict, client) -> None:
    if plan.key is None or plan.device_specific:
        plan.key = store_key(chunk.store_fingerprint, plan.variant, plan.task)
        claim_task_inputs(options.store, plan.key, plan.task, plan.variant.label, options.rerun)
    plan.device = chunk.device
    for result in chunk.results:
        if plan.stop and plan.position[result.item_id] > plan.stop[0]:
            _skip(plan, result.item_id, options)
            continue
        result.save(options.store, plan.key, plan.variant.label)
        plan.written.add(result.item_id)
        if result.stop and (plan.stop is None or plan.position[result.item_id] < plan.stop[0]):
            _stop(plan, plan.position[result.item_id], result.stop, options, futures, client)


def _stop(plan: _Plan, position: int, reason: str, options: RunOptions, futures: dict, client) -> None:
    """As in a serial run: the items after the one that raised StopTask are recorded as skipped."""
    plan.stop = (position, reason)
    for item in plan.pending[position + 1:]:
        _skip(plan, item.id, options)
    later = [f for f, (p, chunk) in futures.items() if p is plan and plan.position[chunk[0].id] > position]
    client.cancel(later)
    for future in later:
        del futures[future]
        plan.open_chunks -= 1


def _skip(plan: _Plan, item_id: str, options: RunOptions) -> None:
    options.store.put(plan.key, plan.variant.label, item_id, "failed", error=f"skipped: {plan.stop[1]}")
    plan.written.add(item_id)


def _chunk_failed(plan: _Plan, chunk: list[Item], future, options: RunOptions) -> None:
    """A chunk that killed its workers over and over (a crash, out of memory) is recorded as failed items,
    like any failing item; anything else (a model that cannot be built on the workers) stops the run."""
    from distributed.scheduler import KilledWorker

    label, task = plan.variant.label, plan.task.spec.name
    if future.status == "cancelled":
        raise OmniBenchError(f"{label} {task}: the Dask cluster dropped a chunk (was the scheduler restarted?); "
                             "finished items are stored: run the same command to resume")
    exc = future.exception()
    if isinstance(exc, KilledWorker):
        if plan.key is None:
            plan.key = local_store_key(plan.fid, plan.variant, plan.task, options.device)
        for item in chunk:
            if item.id not in plan.written:
                options.store.put(plan.key, label, item.id, "failed",
                                  error=f"KilledWorker: every worker that computed this item's chunk died ({exc}); "
                                        "--rerun retries it")
                plan.written.add(item.id)
        return
    if isinstance(exc, OmniBenchError):
        raise OmniBenchError(f"on a Dask worker: {exc}") from None
    raise OmniBenchError(f"{label} {task}: a Dask worker failed outside any item: {type(exc).__name__}: {exc}") \
        from None


def _finish(plan: _Plan, options: RunOptions) -> None:
    key = plan.key or local_store_key(plan.fid, plan.variant, plan.task, options.device)
    plan.outcome = _summarise(plan.variant, plan.fid, plan.fp, plan.task, plan.protocol, options, key,
                              len(plan.written), time.perf_counter() - plan.started, plan.device)
