"""Every metric of every result with its bootstrap interval, as one tidy table."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import task_registry
from ..errors import OmniBenchError
from ..taskspec import ErrorScale, primary_metric
from .bootstrap import N_RESAMPLES, SEED, bootstrap
from .load import TaskResult, labelled_rows, metric_rows

COLUMNS = ["label", "model", "channel", "d3", "task", "task_version", "metric", "quantity", "statistic",
           "direction", "unit", "value", "ci_low", "ci_high", "n", "n_failed", "primary", "task_n_items",
           "task_n_failed", "fingerprint_id", "inputs_hash", "reference_convention"]
Replicates = dict[tuple[str, str, str], np.ndarray]


@dataclass
class HeadlineItems:
    """One task's headline metric item by item for every model variant, what paired comparisons read.

    ``items``: one row per item (id, reference, the ``resample_by`` group column where the task has one) and a
    column per label with its prediction, NaN where that model failed the item or has no row for it;
    ``present``: per label, which items its predictions CSV has a row for (scored or failed); ``own_reference``:
    per label, the reference of each item that label was scored against (a task with one reference per energy
    convention keeps several; ``items`` holds one of them and each label's predictions moved onto it, see
    ``_aligned``); ``scale`` and ``domain``: the task file's (``taskspec.ErrorScale``)."""

    task: str
    metric: str
    statistic: str
    direction: str
    resample_by: str | None
    items: pd.DataFrame
    present: dict[str, np.ndarray] = field(default_factory=dict)
    scale: ErrorScale | None = None
    domain: str | None = None
    own_reference: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return list(self.present)

    def own(self, label: str) -> tuple[np.ndarray, np.ndarray]:
        """(predictions, references) of ``label`` on the items it has a row for, against its own references."""
        rows = self.present[label]
        reference = self.own_reference.get(label, self.items["reference"].to_numpy(float))[rows]
        shared = self.items["reference"].to_numpy(float)[rows]
        return self.items[label].to_numpy(float)[rows] - shared + reference, reference


@dataclass
class Bootstraps:
    """What ``metric_table`` hands the leaderboard besides the table: every metric's replicates, each task's
    headline item by item, and the resampling settings (paired comparisons resample again, jointly)."""

    replicates: Replicates
    headlines: dict[str, HeadlineItems]
    n_resamples: int = N_RESAMPLES
    seed: int = SEED


def headline_items(results: list[TaskResult]) -> dict[str, HeadlineItems]:
    """Per task, the headline metric's rows of every model aligned by item id, with the error scale and domain
    of the task file of that name (read from the task files, so results written before a task declared them
    are scored by the same rule; a task no task file names has neither)."""
    specs = task_registry.all_tasks()
    by_task: dict[str, list[TaskResult]] = {}
    for result in results:
        if result.metric_specs:
            by_task.setdefault(result.task, []).append(result)
    out = {}
    for task, mine in sorted(by_task.items()):
        spec = primary_metric(mine[0].metric_specs)
        group = f"group_{mine[0].resample_by}" if mine[0].resample_by else None
        frames, predictions, ids, references = [], {}, {}, {}
        for result in sorted(mine, key=lambda r: r.label):
            rows = labelled_rows(result, spec)[0][1]
            ids[result.label] = set(rows["id"].astype(str))
            references[result.label] = rows.assign(id=rows["id"].astype(str)).set_index("id")["reference"]
            kept = ["id", "reference"] + ([group] if group and group in rows else [])
            frames.append(rows[kept])
            scored = rows[rows["status"] == "ok"]
            predictions[result.label] = scored.assign(id=scored["id"].astype(str)).set_index("id")[
                ["predicted", "reference"]].astype(float)
        items = pd.concat(frames).assign(id=lambda f: f["id"].astype(str)).drop_duplicates("id")
        items = items.set_index("id", drop=False).sort_index()
        for label, scored in predictions.items():
            items[label] = _aligned(task, label, scored.reindex(items.index), items["reference"], spec.statistic)
        present = {label: items["id"].isin(mine_ids).to_numpy() for label, mine_ids in ids.items()}
        own_reference = {label: reference.astype(float).reindex(items.index).to_numpy()
                         for label, reference in references.items()}
        task_file = specs.get(task)
        out[task] = HeadlineItems(task, spec.name, spec.statistic, spec.direction, mine[0].resample_by,
                                  items.reset_index(drop=True), present, task_file and task_file.scale,
                                  task_file and task_file.domain, own_reference)
    return out


#: statistics that are functions of the errors (predicted - reference) alone
ERROR_STATISTICS = ("mae", "rmse", "mean_error", "max_abs_error", "median_abs_error")


def _aligned(task: str, label: str, scored: pd.DataFrame, reference: pd.Series, statistic: str) -> np.ndarray:
    """A model's predictions moved onto the items' reference column so that each keeps its error against the
    reference the model was scored with: a task that keeps one reference per energy convention (wbm-formation:
    raw or MP2020-corrected) scores each model against its own, and the paired comparisons must too. Only a
    statistic of the errors alone can be compared that way; for another one, results scored against other
    references are refused."""
    own = scored["reference"].to_numpy(float)
    shift = reference.to_numpy(float) - own
    predicted = scored["predicted"].to_numpy(float)
    differs = np.isfinite(predicted) & (shift != 0)
    if not differs.any():
        return predicted
    if statistic not in ERROR_STATISTICS:
        raise OmniBenchError(f"{label} on {task} was scored against other references than the other results "
                             f"(another energy convention), and its headline statistic {statistic} is not a "
                             "function of the errors alone, so the two cannot be compared item by item; compare "
                             "results of one convention (--model)")
    return np.where(differs, predicted + shift, predicted)


def metric_table(results: list[TaskResult], n_resamples: int = N_RESAMPLES,
                 seed: int = SEED) -> tuple[pd.DataFrame, Bootstraps]:
    """One row per (label, task, metric) with value and 95% interval, and the bootstraps behind it."""
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
    return pd.DataFrame(rows, columns=COLUMNS), Bootstraps(replicates, headline_items(results), n_resamples, seed)


def _unit_of(result: TaskResult, spec) -> str:
    units = result.predictions.loc[result.predictions["quantity"] == spec.quantity, "unit"]
    return str(units.iloc[0]) if len(units) else ""
