"""Every metric of every result with its bootstrap interval, as one tidy table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..taskspec import primary_metric
from .bootstrap import N_RESAMPLES, SEED, bootstrap
from .load import TaskResult, metric_rows

COLUMNS = ["label", "model", "channel", "d3", "task", "task_version", "metric", "quantity", "statistic",
           "direction", "unit", "value", "ci_low", "ci_high", "n", "n_failed", "primary", "task_n_items",
           "task_n_failed", "fingerprint_id", "inputs_hash", "reference_convention"]
Replicates = dict[tuple[str, str, str], np.ndarray]


def metric_table(results: list[TaskResult], n_resamples: int = N_RESAMPLES,
                 seed: int = SEED) -> tuple[pd.DataFrame, Replicates]:
    """One row per (label, task, metric) with value and 95% interval, and the bootstrap replicates."""
    rows, replicates = [], {}
    for result in results:
        headline = primary_metric(result.metric_specs).name if result.metric_specs else None
        for spec in result.metric_specs:
            for label, scored in metric_rows(result, spec):
                interval = bootstrap(scored, spec.statistic, key=(result.task, label), n_resamples=n_resamples,
                                     seed=seed, resample_by=result.resample_by)
                stored = result.metrics.get(label, {})
                replicates[(result.label, result.task, label)] = interval.replicates
                unit = stored.get("unit") or ("1" if spec.statistic in ("r2", "f1") else _unit_of(result, spec))
                rows.append({
                    "label": result.label, "model": result.model, "channel": result.channel or "",
                    "d3": result.d3, "task": result.task, "task_version": result.task_version, "metric": label,
                    "quantity": spec.quantity, "statistic": spec.statistic, "direction": spec.direction,
                    "unit": unit, "value": interval.value, "ci_low": interval.low, "ci_high": interval.high,
                    "n": len(scored), "n_failed": stored.get("n_failed", 0), "primary": label == headline,
                    "task_n_items": result.n_items, "task_n_failed": result.n_failed,
                    "fingerprint_id": result.fingerprint_id, "inputs_hash": result.inputs_hash,
                    # the energy convention of the reference, where a task keeps one per convention
                    "reference_convention": (result.record.get("config") or {}).get("reference_energy_convention")
                    or "",
                })
    return pd.DataFrame(rows, columns=COLUMNS), replicates


def _unit_of(result: TaskResult, spec) -> str:
    units = result.predictions.loc[result.predictions["quantity"] == spec.quantity, "unit"]
    return str(units.iloc[0]) if len(units) else ""
