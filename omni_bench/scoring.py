"""From stored per-item values to scored entries and metrics, with every unit converted here once."""

from __future__ import annotations

from dataclasses import replace
from types import ModuleType

import numpy as np

from . import units
from .items import Entry, Item, Prediction
from .store import StoredItem
from .taskspec import MetricSpec, TaskSpec


def default_derive(items: list[Item], results: dict[str, StoredItem], params: dict) -> list[Prediction]:
    """Each item's reference quantities against that item's own computed values."""
    predictions = []
    for item in items:
        stored = results.get(item.id)
        for quantity, reference in item.reference.items():
            value, error = None, "not computed"
            if stored is not None and stored.status == "ok":
                value, error = stored.values.get(quantity), None
                if value is None:
                    error = f"protocol did not return {quantity!r}"
            elif stored is not None:
                error = stored.error
            predictions.append(Prediction(item.id, quantity, value, reference, item.groups, error))
    return predictions


def reference_convention(task: TaskSpec, energy_convention: str | None) -> str | None:
    """The energy convention of the reference a model is scored against: its own where the task keeps a
    reference for it (``reference.by_energy_convention``), else ``raw``; None for tasks with one reference."""
    if not task.by_energy_convention:
        return None
    return energy_convention if energy_convention in task.by_energy_convention else "raw"


def in_convention(task: TaskSpec, items: list[Item], energy_convention: str | None) -> list[Item]:
    """The items with each scored reference replaced by the one in the model's energy convention, where the
    task keeps one (the stored model values stay the same: only what they are compared with changes)."""
    swap = task.by_energy_convention.get(energy_convention or "raw")
    if not swap:
        return items
    return [replace(item, reference={**item.reference, **{quantity: item.reference[source]
                                                          for quantity, source in swap.items()
                                                          if source in item.reference}})
            for item in items]


def score(task: TaskSpec, protocol: ModuleType, items: list[Item], results: dict[str, StoredItem],
          params: dict, energy_convention: str | None = None) -> list[Entry]:
    """Entries in the task's units for every scored quantity the task declares, against the references in the
    model's ``energy_convention`` where the task has them."""
    derive = getattr(protocol, "derive", default_derive)
    entries = []
    for p in derive(in_convention(task, items, energy_convention), results, params):
        if p.quantity not in task.units:
            continue
        unit = task.units[p.quantity]
        predicted = None
        if p.value is not None:
            predicted = units.convert(p.value, protocol.QUANTITIES[p.quantity], unit)
        reference = units.convert(p.reference.value, p.reference.unit, unit) if p.reference else float("nan")
        entries.append(Entry(p.id, p.quantity, predicted, reference, unit, dict(p.groups), p.error))
    return entries


def statistic(name: str, predicted: np.ndarray, reference: np.ndarray) -> float:
    if len(predicted) == 0:
        return float("nan")
    # Statistics of the model's own values, for quantities without a reference (timings, counts).
    if name == "mean":
        return float(np.mean(predicted))
    if name == "max":
        return float(np.max(predicted))
    if name == "min":
        return float(np.min(predicted))
    if name == "sum":
        return float(np.sum(predicted))
    error = predicted - reference
    if name == "mae":
        return float(np.mean(np.abs(error)))
    if name == "rmse":
        return float(np.sqrt(np.mean(error**2)))
    if name == "mean_error":
        return float(np.mean(error))
    if name == "max_abs_error":
        return float(np.max(np.abs(error)))
    if name == "median_abs_error":  # robust to the one outlier that can own a mean (an unstable tensor)
        return float(np.median(np.abs(error)))
    if name == "r2":
        total = np.sum((reference - reference.mean()) ** 2)
        return float(1.0 - np.sum(error**2) / total) if total > 0 else float("nan")
    if name == "f1":
        # Positive class: reference value above zero (e.g. unstable against decomposition).
        pred_pos, ref_pos = predicted > 0, reference > 0
        tp = np.sum(pred_pos & ref_pos)
        denom = 2 * tp + np.sum(pred_pos & ~ref_pos) + np.sum(~pred_pos & ref_pos)
        return float(2 * tp / denom) if denom else float("nan")
    raise ValueError(f"unknown statistic {name!r}")


def metrics(task: TaskSpec, entries: list[Entry]) -> dict[str, dict]:
    """Every metric of the task (split by group where asked), with counts of scored and failed entries."""
    out: dict[str, dict] = {}
    for spec in task.metrics:
        for label, subset in _groups(spec, entries):
            ok = [e for e in subset if not e.failed]
            out[label] = {
                "value": statistic(spec.statistic, np.array([e.predicted for e in ok], dtype=float),
                                   np.array([e.reference for e in ok], dtype=float)),
                "unit": "1" if spec.statistic in ("r2", "f1") else task.units[spec.quantity],
                "statistic": spec.statistic,
                "quantity": spec.quantity,
                "direction": spec.direction,
                "n": len(ok),
                "n_failed": len(subset) - len(ok),
            }
    return out


def _groups(spec: MetricSpec, entries: list[Entry]) -> list[tuple[str, list[Entry]]]:
    mine = [e for e in entries if e.quantity == spec.quantity]
    if not spec.group_by:
        return [(spec.name, mine)]
    values = sorted({e.groups.get(spec.group_by, "") for e in mine})
    return [(f"{spec.name}[{spec.group_by}={v}]", [e for e in mine if e.groups.get(spec.group_by, "") == v])
            for v in values]
