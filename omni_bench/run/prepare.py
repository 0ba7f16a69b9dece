"""A task's items, loaded from verified data and checked before any model runs, so bad input fails fast."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from .. import data, plugins, units
from ..errors import OmniBenchError
from ..identity import StoreIdentity, store_identity
from ..items import Item
from ..scored import check_scored
from ..taskspec import TaskSpec, check_task_plugins


@dataclass
class PreparedTask:
    spec: TaskSpec
    items: list[Item]
    #: where its computed items are stored: its own name, or its parent's where it computes the same
    identity: StoreIdentity
    #: items of the whole task (``items`` may be the first --limit of them)
    n_total: int

    @property
    def protocol(self) -> ModuleType:
        return self.spec.protocol_module

    @property
    def params(self) -> dict[str, Any]:
        return self.spec.run_params

    @property
    def partial(self) -> bool:
        return len(self.items) < self.n_total


def prepare_tasks(tasks: list[TaskSpec], data_root: Path | None, origin: str = "",
                  limit: int | None = None) -> list[PreparedTask]:
    """Every task's items (the first ``limit`` of them), checked, and where they are stored."""
    prepared = []
    for spec in tasks:
        items = load_items(spec, data_root, origin)
        chosen = first_scored_units(spec, items, limit) if limit is not None else items
        prepared.append(PreparedTask(spec, chosen, store_identity(spec), len(items)))
    return prepared


def first_scored_units(spec: TaskSpec, items: list[Item], limit: int) -> list[Item]:
    """The items of the task's first ``limit`` scored units: the first items where each item is scored alone,
    else every item that the first ``limit`` reactions, complexes or landscapes need (the protocol's
    ``scored_units``), in the task's order."""
    units = getattr(spec.protocol_module, "scored_units", None)
    if units is None:
        return items[:limit]
    needed = {item_id for unit in units(items)[:limit] for item_id in unit}
    return [item for item in items if item.id in needed]


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
