"""Under which task name, version and inputs hash the computed items of a task are stored.

A task that ``extends`` another and computes the same thing (same loader and data files, same protocol and
parameters; the loader parameters that only choose the reference or which items are kept, a loader's
``REFERENCE_AND_SELECTION_PARAMS``, may differ) stores its items as its parent's, by construction: the CPU
subset torsionnet500-small and the wB97X-referenced torsionnet500-wb97x reuse torsionnet500's single
points, and a later full run reuses the subset's. A task that computes something else is stored as itself.

The inputs hash records what stored values depend on besides the model, so that a task file edited without
a version bump cannot reuse stale values (``run/plan.py`` checks it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from . import plugins
from .taskspec import TaskSpec


@dataclass(frozen=True)
class StoreIdentity:
    """Under which task name, version and inputs hash a task's computed items are stored."""

    name: str
    version: int
    inputs_hash: str


def store_identity(spec: TaskSpec) -> StoreIdentity:
    """The identity of the nearest task up the ``extends`` chain that computes something else than its
    parent; a task's own name is its name before any rename (``renamed_from``), so stored items stay found."""
    if spec.parent is not None and computes_the_same(spec, spec.parent):
        return store_identity(spec.parent)
    return StoreIdentity(spec.renamed_from or spec.name, spec.version, inputs_hash(spec))


def computes_the_same(spec: TaskSpec, other: TaskSpec) -> bool:
    """Whether ``spec`` computes the same items and values as ``other``: the same loader, data files, protocol
    and parameters, apart from the loader parameters that only choose the reference or the items."""
    not_computed = set(getattr(plugins.load("loader", spec.loader), "REFERENCE_AND_SELECTION_PARAMS", ()))

    def computation(task: TaskSpec) -> tuple:
        return (task.loader, _files(task), {k: v for k, v in task.loader_params.items() if k not in not_computed},
                task.protocol, task.run_params)

    return computation(spec) == computation(other)


def _files(spec: TaskSpec) -> list[tuple[str, str]]:
    return sorted((f.path, f.sha256) for f in [*spec.files, *spec.tables])


def inputs_hash(spec: TaskSpec) -> str:
    """Hash of what a task's stored values depend on besides the model: the protocol and its parameters
    (defaults included), the loader and its parameters, and the data files' checksums. The description,
    metrics, gate and units are left out: they are applied to stored values afresh each run.

    A task file's ``inputs_hash_alias: {current: H1, stored_as: H0}`` says that inputs hashing to H1 give
    exactly the items that H0 gave (e.g. the same structures read from their upstream files instead of a
    derived copy, proven item by item in a test), so results stored under H0 stay valid. It applies only while
    the computed hash is H1: any later edit changes the hash and the store's check works as usual."""
    payload = {"protocol": spec.protocol, "protocol_params": spec.run_params, "loader": spec.loader,
               "loader_params": spec.loader_params, "files": [[f.path, f.sha256] for f in spec.files]}
    if spec.tables:
        payload["tables"] = [[f.path, f.sha256] for f in spec.tables]
    computed = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]
    if spec.inputs_hash_alias and spec.inputs_hash_alias[0] == computed:
        return spec.inputs_hash_alias[1]
    return computed
