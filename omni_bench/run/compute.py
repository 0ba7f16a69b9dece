"""Computing items: one ``ItemResult`` per item, whatever the model does (raises, returns NaN, hangs past the
time limit), with the single points of the next items prefetched in batches, and their relaxations done in
lock-step, for models that can."""

from __future__ import annotations

import ctypes
import math
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..errors import ItemTimeout, OmniBenchError, StopTask
from ..items import Item

#: single points prefetched at once, in batches' worth of atoms: enough for full batches, few enough that the
#: progress bar moves and memory stays bounded
PREFETCH_BATCHES = 8


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


def compute_items(model, protocol, items: list[Item], params: dict[str, Any], batch_atoms: int,
                  timeout: float | None = None, limit=None) -> Iterator[ItemResult]:
    """Compute ``items`` in order, prefetching single points in batches; ends after an item raises StopTask."""
    limit = limit or time_limit
    model.batch_atoms = batch_atoms
    try:
        for _, item in with_prefetch(model, protocol, items, params, batch_atoms, timeout, limit):
            result = compute_item(model, protocol, item, params, timeout, limit)
            yield result
            if result.stop:
                return
    finally:
        model.prefetch([], 0)  # let go of the last chunk's energies and relaxations
        model.prefetch_relaxations([], 0)
        model.prefetch_answers([])


def with_prefetch(model, protocol, items: list[Item], params: dict[str, Any], batch_atoms: int,
                  timeout: float | None = None, limit=None) -> Iterator[tuple[int, Item]]:
    """``enumerate(items)``, prefetching the next chunk's single points and relaxations whenever the last
    chunk is used up."""
    prefetched_until = 0
    for position, item in enumerate(items):
        if position == prefetched_until:
            prefetched_until = prefetch_ahead(model, protocol, items, position, params, batch_atoms, timeout, limit)
        yield position, item


def prefetch_ahead(model, protocol, items: list[Item], start: int, params: dict[str, Any], batch_atoms: int,
                   timeout: float | None = None, limit=None) -> int:
    """Hand the model the single points and relaxations of the items from ``start`` on (protocols that name
    them with ``single_points(item, params)`` and ``relaxations(item, params)``), for it to compute in batches
    (relaxations in lock-step) before the items ask for them one by one. Returns the position of the first
    item not covered; the caller prefetches again there.

    The batches may take ``timeout`` per item they cover; past that they are dropped, and each item computes
    its own energies under its own ``timeout`` (``limit(seconds)`` enforces it, SIGALRM by default)."""
    single_points = getattr(protocol, "single_points", None)
    relaxations = getattr(protocol, "relaxations", None)
    if (single_points is None and relaxations is None) or batch_atoms < 1 or model.batched_path is None:
        model.prefetch([], 0)
        model.prefetch_relaxations([], 0)
        return len(items)
    structures, requests, end, n_atoms = [], [], start, 0
    while end < len(items) and (end == start or n_atoms < PREFETCH_BATCHES * batch_atoms):
        try:
            wanted = list(single_points(items[end], params)) if single_points else []
            to_relax = list(relaxations(items[end], params)) if relaxations else []
        except Exception:  # a malformed item: its compute() raises and the failure is recorded there
            wanted, to_relax = [], []
        structures += wanted
        requests += to_relax
        n_atoms += sum(len(atoms) for atoms in wanted) + sum(len(atoms) for atoms, _ in to_relax)
        end += 1
    try:
        with (limit or time_limit)(timeout * (end - start) if timeout else None):
            model.prefetch(structures, batch_atoms)
            model.prefetch_relaxations(requests, batch_atoms)
    except ItemTimeout:
        model.prefetch([], 0)
        model.prefetch_relaxations([], 0)
    return end


def single_point_record(model, counts: Counter, batch_atoms: int) -> dict[str, Any]:
    """Which path computed a task's energies (``model.energy`` calls), for the results file: ``batched``,
    ``ase``, or ``batched+ase`` when some went through the calculator (fallbacks, or not single points);
    ``batched_forces`` counts the force evaluations that came from batches, ``relaxed_in_lockstep`` the
    relaxations the runner did ahead in lock-step (models/lockstep.py)."""
    path = "+".join(name for name in ("batched", "ase") if counts[name]) or "none"
    return {"path": path, "batched_evaluator": model.batched_path, "batch_atoms": batch_atoms,
            "batched": counts["batched"], "ase": counts["ase"], "batch_failed": counts["batch_failed"],
            "batched_error": model.batched_error, "batched_forces": counts["batched_forces"],
            "relaxed_in_lockstep": counts["relaxed_in_lockstep"]}


def compute_item(model, protocol, item: Item, params: dict[str, Any], timeout: float | None = None,
                 limit=None) -> ItemResult:
    """Compute one item: values when it worked, the reason when it did not. ``limit(timeout)`` is the
    context manager that enforces the time limit (SIGALRM by default, which works in the main thread only)."""
    model.notes.clear()
    start = time.perf_counter()
    try:
        with ExitStack() as guard:
            try:
                guard.enter_context((limit or time_limit)(timeout))
            except Exception as exc:  # the harness's own setting, not the model: fail the run, store nothing
                raise OmniBenchError(f"cannot enforce --item-timeout {timeout!r}: {type(exc).__name__}: "
                                     f"{exc}") from None
            return _compute(model, protocol, item, params, start)
    except ItemTimeout as exc:  # caught outside the limit, which words it (a Dask thread's timer cannot)
        return ItemResult(item.id, "failed", error=f"ItemTimeout: {exc}", notes=list(model.notes),
                          wall_s=time.perf_counter() - start)


def _compute(model, protocol, item: Item, params: dict[str, Any], start: float) -> ItemResult:
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


@contextmanager
def time_limit(seconds: float | None):
    """Raise ``ItemTimeout`` in the main thread after ``seconds`` (SIGALRM). A model stuck inside C code
    that never returns to Python is interrupted when it does; elsewhere than the main thread, no limit
    (``thread_time_limit`` covers threads)."""
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


class _AsyncTimeout(ItemTimeout):
    """Raised inside a worker thread by the timer of ``thread_time_limit``."""


@contextmanager
def thread_time_limit(seconds: float | None):
    """``--item-timeout`` for worker threads (Dask), where SIGALRM cannot reach: a timer raises an exception
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
