"""What a task scores, checked before any model runs: the values its protocol's derive step builds from the
items (reactions from molecules, formation energies from crystals) before anything is computed."""

from __future__ import annotations

import math

from . import scoring
from .errors import OmniBenchError
from .items import Item, Prediction
from .taskspec import TaskSpec, primary_metric


def _unscored(spec: TaskSpec, items: list[Item]) -> list[Prediction]:
    """The task's predictions with nothing computed yet: every value it will score, with its reference."""
    derive = getattr(spec.protocol_module, "derive", scoring.default_derive)
    return derive(items, {}, spec.run_params)


def scored_count(spec: TaskSpec, items: list[Item]) -> int:
    """How many values the task's headline metric scores over ``items`` (reactions, points, compounds...)."""
    quantity = primary_metric(spec.metrics).quantity
    return sum(p.quantity == quantity for p in _unscored(spec, items))


def check_scored(spec: TaskSpec, items: list[Item]) -> None:
    """Every reference a derive step builds is finite, each metric has something to score and the group it
    splits by, and the sizes the task file declares (``counts``) are the loader's."""
    predictions = _unscored(spec, items)
    where = ", ".join(f.path for f in spec.files) or "its data"
    for p in predictions:
        if p.reference is not None and not math.isfinite(p.reference.value):
            raise OmniBenchError(f"task {spec.name!r}: {p.id!r} has no valid reference {p.quantity} "
                                 f"({p.reference.value!r}) in {where}")
    for n, metric in enumerate(spec.metrics):
        mine = [p for p in predictions if p.quantity == metric.quantity]
        if not mine:
            raise OmniBenchError(f"{spec.path}: field 'metrics[{n}]' ({metric.name}) has nothing to score: the data "
                                 f"({where}) give no {metric.quantity} value (an empty table?)")
        if metric.group_by and not any(metric.group_by in p.groups for p in mine):
            groups = sorted({g for p in mine for g in p.groups})
            raise OmniBenchError(f"{spec.path}: field 'metrics[{n}].group_by' names group {metric.group_by!r}, "
                                 f"which no {metric.quantity} value has (groups: {', '.join(groups) or 'none'})")
    if spec.counts is None:
        return
    headline = primary_metric(spec.metrics).quantity
    found = {"items": len(items), "scored": sum(p.quantity == headline for p in predictions)}
    for key, declared in (("items", spec.counts.items), ("scored", spec.counts.scored)):
        if declared is not None and declared != found[key]:
            raise OmniBenchError(f"{spec.path}: field 'counts.{key}' is {declared}, but the data ({where}) give "
                                 f"{found[key]}; correct the task file")
