"""The leaderboard: every (model, channel) on every task's headline metric, ranked with its uncertainty.

- **Normalised error.** For each task, a model's headline error divided by the largest headline error among
  the compared models (Fig. 2f of the SevenNet-Omni paper): 1 is the worst model, smaller is better. For a
  ``higher``-is-better headline the error is 1 minus the metric for R² and F1 and its inverse otherwise (a
  speed becomes a time per step); for a signed mean error, its size.
- **Rank.** One plus the number of models whose whole 95% interval is better than this model's whole
  interval. Models whose intervals overlap therefore share a rank, shown as ``2=`` (tied).
- **Overall score.** The mean normalised error over the tasks a model completed (lower is better), with a
  bootstrap interval from the same resamples, and the count of compared tasks it did not complete (no
  result, or no scored item). A model that skipped tasks is scored on fewer tasks: read the count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .bootstrap import LEVEL
from .load import TaskResult
from .tables import Replicates
from .theory import warnings_for

BOUNDED_BY_ONE = ("r2", "f1")


@dataclass
class Leaderboard:
    """``tasks``: one row per (task, label) with the headline metric, its normalised error and rank;
    ``overall``: one row per label; ``metrics``: every metric of every result (the tidy table)."""

    tasks: pd.DataFrame
    overall: pd.DataFrame
    metrics: pd.DataFrame


def badness(values, statistic: str, direction: str):
    """A metric turned into an error where lower is better and zero is perfect: 1 - R² or 1 - F1, the size
    of a signed mean error, the inverse of other higher-is-better values (a speed becomes a time)."""
    values = np.asarray(values, dtype=float)
    if direction == "higher":
        if statistic in BOUNDED_BY_ONE:
            return 1.0 - values
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(values > 0, 1.0 / values, np.nan)
    if statistic == "mean_error":
        return np.abs(values)
    return values


def badness_interval(low: float, high: float, statistic: str, direction: str) -> tuple[float, float]:
    if direction == "higher":
        a, b = badness([high, low], statistic, direction)
        return float(a), float(b)
    if statistic == "mean_error":
        if low <= 0 <= high:
            return 0.0, max(abs(low), abs(high))
        return min(abs(low), abs(high)), max(abs(low), abs(high))
    return low, high


def interval_ranks(lows: np.ndarray, highs: np.ndarray) -> tuple[list[int | None], list[bool]]:
    """Ranks of error intervals (lower is better): 1 + how many intervals lie wholly below this one."""
    finite = np.isfinite(lows) & np.isfinite(highs)
    ranks: list[int | None] = []
    for i in range(len(lows)):
        ranks.append(1 + int(np.sum(finite & (highs < lows[i]))) if finite[i] else None)
    tied = [r is not None and ranks.count(r) > 1 for r in ranks]
    return ranks, tied


def rank_label(rank: int | None, tied: bool) -> str:
    return "-" if rank is None else f"{rank}{'=' if tied else ''}"


def build(metrics: pd.DataFrame, replicates: Replicates) -> Leaderboard:
    headline = metrics[metrics["primary"]].copy()
    task_rows = []
    for _, group in headline.groupby("task", sort=True):
        group = group.copy()
        stat, direction = group["statistic"].iloc[0], group["direction"].iloc[0]
        bad = badness(group["value"], stat, direction)
        bounds = [badness_interval(lo, hi, stat, direction) for lo, hi in zip(group["ci_low"], group["ci_high"],
                                                                             strict=True)]
        group["error"] = bad
        group["error_low"] = [b[0] for b in bounds]
        group["error_high"] = [b[1] for b in bounds]
        largest = np.nanmax(bad) if np.isfinite(bad).any() else np.nan
        scale = largest if largest and np.isfinite(largest) and largest > 0 else np.nan
        group["norm"] = bad / scale if np.isfinite(scale) else np.where(np.isfinite(bad), 0.0, np.nan)
        group["norm_low"] = group["error_low"] / scale if np.isfinite(scale) else group["norm"]
        group["norm_high"] = group["error_high"] / scale if np.isfinite(scale) else group["norm"]
        group["scale"] = scale
        ranks, tied = interval_ranks(group["error_low"].to_numpy(float), group["error_high"].to_numpy(float))
        group["rank"] = ranks
        group["tied"] = tied
        task_rows.append(group)
    tasks = pd.concat(task_rows, ignore_index=True) if task_rows else headline.assign(
        error=[], error_low=[], error_high=[], norm=[], norm_low=[], norm_high=[], scale=[], rank=[], tied=[])
    return Leaderboard(tasks, _overall(tasks, replicates), metrics)


def annotate(board: Leaderboard, results: list[TaskResult]) -> Leaderboard:
    """Adds to each (label, task) row what the results files say beyond the numbers: the model family
    (model and D3 flag), the task's suites, and the warnings (``theory.warnings_for``)."""
    found = {r.key: r for r in results}
    tasks = board.tasks.copy()
    keys = list(zip(tasks["label"], tasks["task"], strict=True))
    tasks["family"] = [found[k].family for k in keys]
    tasks["suites"] = [list(found[k].suites) for k in keys]
    tasks["warnings"] = [warnings_for(found[k]) for k in keys]
    return Leaderboard(tasks, board.overall, board.metrics)


def warning_text(warnings) -> str:
    return "; ".join(w.short for w in warnings)


def _overall(tasks: pd.DataFrame, replicates: Replicates) -> pd.DataFrame:
    all_tasks = sorted(set(tasks["task"]))
    rows = []
    for label, group in tasks.groupby("label", sort=False):
        done = group[np.isfinite(group["norm"].to_numpy(float))]
        score, low, high = np.nan, np.nan, np.nan
        if len(done):
            score = float(done["norm"].mean())
            resampled = []
            for _, row in done.iterrows():
                reps = badness(replicates[(label, row["task"], row["metric"])], row["statistic"], row["direction"])
                resampled.append(reps / row["scale"] if np.isfinite(row["scale"]) else np.zeros_like(reps))
            per_resample = np.nanmean(np.vstack(resampled), axis=0)
            tail = (1 - LEVEL) / 2 * 100
            low, high = (float(v) for v in np.nanpercentile(per_resample, [tail, 100 - tail]))
        first = group.iloc[0]
        rows.append({"label": label, "model": first["model"], "channel": first["channel"], "d3": first["d3"],
                     "score": score, "score_low": low, "score_high": high, "tasks_done": len(done),
                     "tasks_missing": len(all_tasks) - len(done),
                     "missing": ", ".join(t for t in all_tasks if t not in set(done["task"]))})
    overall = pd.DataFrame(rows, columns=["label", "model", "channel", "d3", "score", "score_low", "score_high",
                                          "tasks_done", "tasks_missing", "missing"])
    overall = overall.sort_values(["score", "label"], na_position="last", ignore_index=True)
    ranks, tied = interval_ranks(overall["score_low"].to_numpy(float), overall["score_high"].to_numpy(float))
    overall["rank"], overall["tied"] = ranks, tied
    return overall


def task_cell(row: pd.Series, digits: int = 3, with_ci: bool = True) -> str:
    if not np.isfinite(row["value"]):
        return "no result"
    text = f"{row['value']:.{digits}g}"
    if with_ci and np.isfinite(row["ci_low"]):
        text += f" [{row['ci_low']:.{digits}g}, {row['ci_high']:.{digits}g}]"
    return text


def csv_frame(board: Leaderboard) -> pd.DataFrame:
    """Every metric (long format) with the headline's rank and each label's overall score on its rows."""
    ranks = board.tasks[["label", "task", "metric", "norm", "rank", "tied"]]
    frame = board.metrics.merge(ranks, on=["label", "task", "metric"], how="left")
    if "warnings" in board.tasks:  # annotated: the warnings of a (label, task) on all its metrics' rows
        notes = board.tasks[["label", "task"]].assign(
            warnings=board.tasks["warnings"].map(lambda ws: "; ".join(w.detail for w in ws)))
        frame = frame.merge(notes, on=["label", "task"], how="left")
    overall = board.overall[["label", "score", "score_low", "score_high", "tasks_missing"]].rename(
        columns={"score": "overall_score", "score_low": "overall_low", "score_high": "overall_high"})
    frame = frame.merge(overall, on="label", how="left")
    frame["rank"] = frame["rank"].astype("Int64")
    return frame
