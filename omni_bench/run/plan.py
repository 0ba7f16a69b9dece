"""One plan per (model variant, task): everything about where its items go, resolved once for every executor.

A plan knows its store key (for a protocol that measures the hardware, the key names the device and host,
so on a cluster it is known only when a worker answers), the pending items, the claim that the items stored
under its key were computed from the task's current inputs, and the skip rule: when an item raises StopTask,
the items after it are recorded as skipped with the reason, whatever order results come back in.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

from .. import results
from ..devices import resolve_device
from ..errors import OmniBenchError
from ..items import Item
from ..models.checkpoints import check_model_files
from ..models.fingerprint import fingerprint, fingerprint_id
from ..models.registry import ModelVariant
from ..store import ResultStore, StoreKey
from ..taskspec import TaskSpec
from .compute import ItemResult
from .options import RunOptions
from .prepare import PreparedTask, prepare_tasks


def store_fingerprint(fid: str, protocol, device: str, host: str | None = None) -> str:
    """The fingerprint items are stored under: the model's, and for protocols that measure the hardware
    (``DEVICE_SPECIFIC``), the device and host too."""
    if not getattr(protocol, "DEVICE_SPECIFIC", False):
        return fid
    return f"{fid}/{resolve_device(device)}@{host or socket.gethostname()}"


@dataclass
class RunPlan:
    variant: ModelVariant
    task: PreparedTask
    fingerprint: dict[str, Any]
    fingerprint_id: str
    store: ResultStore
    rerun: bool
    #: what ``--trust-code`` let through for this variant (factory, checkpoints), for the results file
    trusted_code: str | None = None
    #: where the items are stored; None until a worker names its device (device-specific tasks on a cluster)
    key: StoreKey | None = None
    pending: list[Item] = field(default_factory=list)
    position: dict[str, int] = field(default_factory=dict)
    #: items recorded by this run (computed, failed or skipped)
    written: set[str] = field(default_factory=set)
    #: (position in ``pending``, reason) of the earliest StopTask
    stop: tuple[int, str] | None = None

    @property
    def label(self) -> str:
        return self.variant.label

    @property
    def device_specific(self) -> bool:
        return bool(getattr(self.task.protocol, "DEVICE_SPECIFIC", False))

    def key_for(self, store_fp: str) -> StoreKey:
        return StoreKey(store_fp, self.variant.channel or "", self.task.identity.name, self.task.identity.version)

    def use_local_key(self, device: str) -> StoreKey:
        """Store under this process's key: for a device-specific task, this device and host."""
        return self.use_key(store_fingerprint(self.fingerprint_id, self.task.protocol, device))

    def use_key(self, store_fp: str) -> StoreKey:
        """Store under ``store_fp`` from now on (a worker computed there), claiming it first."""
        key = self.key_for(store_fp)
        if key != self.key:
            self.claim(key)
            self.key = key
        return key

    def claim(self, key: StoreKey) -> None:
        """Make sure the items stored under ``key`` were computed from the task's current inputs (protocol,
        parameters, data): record the hash on first use, and refuse a task file edited since without a version
        bump, unless ``rerun`` asks to replace the stale items. Items stored before hashes were recorded are
        taken to match the current task file of the same version."""
        current = self.task.identity.inputs_hash
        stored = self.store.inputs_hash(key)
        if stored == current:
            return
        spec = self.task.spec
        if stored is not None:
            if not self.rerun:
                raise OmniBenchError(
                    f"{spec.path}: the protocol, parameters or data files of task {spec.name!r} changed since "
                    f"{self.label}'s results for its version {spec.version} were stored in {self.store.path} "
                    f"(inputs hash {stored}, now {current}). Raise the task's 'version' field to keep both, or run "
                    "again with --rerun to replace the stored items")
            self.store.drop(key)
        self.store.set_inputs_hash(key, current)

    def set_pending(self, items: list[Item]) -> None:
        self.pending = items
        self.position = {item.id: n for n, item in enumerate(items)}

    def refresh_pending(self) -> None:
        """The items not yet stored under the plan's key (another task stored as this one may have computed
        some since the plan was made: a subset, or the same items against another reference)."""
        done = set() if self.key is None else set(self.store.get(self.key))
        self.set_pending([i for i in self.task.items if self.rerun or i.id not in done])

    def record(self, result: ItemResult) -> bool:
        """Store one computed item; True when it is the earliest StopTask so far (the items after it are then
        recorded as skipped, and an executor drops the work it still has for them)."""
        where = self.position[result.item_id]
        if self.stop is not None and where > self.stop[0]:
            self._skip(result.item_id)
            return False
        self.store.put(self.key, self.label, result.item_id, result.status, values=result.values,
                       error=result.error, notes=result.notes, wall_s=result.wall_s)
        self.written.add(result.item_id)
        if result.stop is None:
            return False
        self.stop = (where, result.stop)
        for item in self.pending[where + 1:]:
            self._skip(item.id)
        return True

    def fail(self, item_id: str, error: str) -> None:
        """Record an item as failed without a result (its worker died)."""
        self.store.put(self.key, self.label, item_id, "failed", error=error)
        self.written.add(item_id)

    def _skip(self, item_id: str) -> None:
        self.fail(item_id, f"skipped: {self.stop[1]}")


def plan_run(variants: list[ModelVariant], tasks: list[TaskSpec], options: RunOptions,
             local: bool = True) -> list[RunPlan]:
    """Everything checked before any model runs, for every executor: two models sharing a results folder, the
    tasks' data and items, the results files a --limit run would replace, the checkpoints the models would
    unpickle, and every store key's claim.
    ``local``: items are computed in this process, so a device-specific task's key is known now."""
    if options.out_dir is not None:
        results.refuse_shared_folders([variant.label for variant in variants])
    prepared = prepare_tasks(tasks, options.data_root, options.data_origin, options.limit)
    if options.out_dir is not None and not options.replace_complete:
        for variant in variants:
            for task in prepared:
                if task.partial:
                    results.refuse_partial_overwrite(options.out_dir, variant.label, task.spec, task.n_total,
                                                     options.limit)
    plans = []
    for variant in variants:
        trusted = "; ".join(filter(None, [variant.trusted_code, check_model_files(variant)])) or None
        fp = fingerprint(variant)
        fid = fingerprint_id(fp)
        options.store.register_fingerprint(fid, variant.label, fp)
        for task in prepared:
            plan = RunPlan(variant, task, fp, fid, options.store, options.rerun, trusted)
            if plan.device_specific and not local:  # every device and host stored so far; the key comes later
                for key in options.store.done_per_device(plan.key_for(fid)):
                    plan.claim(key)
            else:
                plan.use_local_key(options.device)
            plan.refresh_pending()
            plans.append(plan)
    return plans
