"""Tasks that score one computation against different references share its stored items.

torsionnet500-wb97x scores the very model energies of torsionnet500 against wB97X-D3BJ instead of
DLPNO-CCSD(T). Its task file says ``computed_as: torsionnet500``, and its items are stored under that task's
name, version and inputs hash, so running both costs one set of single points. The claim is checked, not
trusted: the two files must name the same loader, data files, protocol and parameters, except the loader
parameters that only choose the reference or which items are kept (a loader's
``REFERENCE_AND_SELECTION_PARAMS``). So a CPU subset (torsionnet500-small) can be computed as its full task too:
its items are some of the full task's, computed the same way, and a later full run reuses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import plugins
from .errors import OmniBenchError
from .taskspec import TaskSpec, inputs_hash, load_task, protocol_params


@dataclass(frozen=True)
class StoreIdentity:
    """Under which task name, version and inputs hash a task's computed items are stored."""

    name: str
    version: int
    inputs_hash: str


def store_identity(spec: TaskSpec, params: dict[str, Any]) -> StoreIdentity:
    if spec.computed_as is None:
        return StoreIdentity(spec.name, spec.version, inputs_hash(spec, params))
    source = _source(spec)
    differences = computation_differences(spec, source)
    if differences:
        raise OmniBenchError(
            f"{spec.path}: field 'computed_as' names {source.name!r}, but the two tasks compute different things "
            f"({'; '.join(differences)}); make them equal or remove 'computed_as'")
    return StoreIdentity(source.name, source.version, inputs_hash(source, protocol_params(source)))


def _source(spec: TaskSpec) -> TaskSpec:
    path = spec.path.parent / f"{spec.computed_as}.yaml"
    if not path.is_file():
        raise OmniBenchError(f"{spec.path}: field 'computed_as' names {spec.computed_as!r}, but there is no "
                             f"{path.name} beside it; name a task file of the same folder")
    source = load_task(path)
    if source.computed_as is not None:
        raise OmniBenchError(f"{spec.path}: field 'computed_as' names {source.name!r}, which is itself computed as "
                             f"{source.computed_as!r}; name {source.computed_as!r} directly")
    return source


def computation_differences(spec: TaskSpec, source: TaskSpec) -> list[str]:
    """What makes ``spec`` compute something else than ``source`` (empty: the same items and values)."""
    not_computed = set(getattr(plugins.load("loader", spec.loader), "REFERENCE_AND_SELECTION_PARAMS", ()))

    def computed_params(task: TaskSpec) -> dict[str, Any]:
        return {k: v for k, v in task.loader_params.items() if k not in not_computed}

    compared = {
        "dataset.loader": (spec.loader, source.loader),
        "the data files": (_files(spec), _files(source)),
        "dataset.params other than " + (", ".join(sorted(not_computed)) or "none"):
            (computed_params(spec), computed_params(source)),
        "protocol.name": (spec.protocol, source.protocol),
        "protocol.params": (protocol_params(spec), protocol_params(source)),
    }
    return [f"{what} differ" for what, (mine, theirs) in compared.items() if mine != theirs]


def _files(spec: TaskSpec) -> list[tuple[str, str]]:
    return sorted((f.path, f.sha256) for f in [*spec.files, *spec.tables])
