"""Bootstrap 95% confidence intervals for every metric, resampling the units that are independent.

Rows of a predictions CSV are resampled with replacement, except that rows whose id has the form
``<unit>@<point>`` (the angles of one torsion profile, the volumes of one equation of state) are drawn as
a whole unit: the points of one profile share one molecule and one reference minimum, so they are not
independent. Reaction and lattice-energy tasks already have one row per reaction or system (the protocol's
``derive`` builds them), so resampling rows resamples reactions and systems. A task file's ``resample_by``
names a group whose rows are drawn together instead (GoldDAC: the complexes of one framework share its
computed energy).

A resample is a vector of counts per unit (multinomial), applied as weights; with all weights one every
statistic equals ``omni_bench.scoring.statistic``. The generator is seeded from the seed, the task and the
metric, so a report is reproducible and models scored on the same rows are resampled identically; the
leaderboard's paired comparisons and the gate draw one set of counts and apply it to both sides
(``paired_statistics``).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

N_RESAMPLES = 1000
LEVEL = 0.95
SEED = 0
_MAX_CELLS = 4_000_000  # resamples x rows held in memory at once


@dataclass
class Interval:
    """A metric with its bootstrap interval and the resampled values (kept for derived scores)."""

    value: float
    low: float
    high: float
    replicates: np.ndarray

    @property
    def finite(self) -> bool:
        return bool(np.isfinite(self.value))


def unit_of(item_id: str) -> str:
    """The independent unit a row belongs to: the part of its id before the first '@'."""
    return str(item_id).split("@", 1)[0]


def weighted_statistic(name: str, predicted: np.ndarray, reference: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``scoring.statistic`` for each row of ``weights`` (resamples x items): item i counted weights[:, i] times."""
    w = weights.astype(float)
    total = w.sum(axis=1)
    present = w > 0
    if name in ("mean", "sum", "max", "min"):
        if name == "mean":
            return w @ predicted / total
        if name == "sum":
            return w @ predicted
        if name == "max":
            return np.where(present, predicted, -np.inf).max(axis=1)
        return np.where(present, predicted, np.inf).min(axis=1)
    error = predicted - reference
    if name == "mae":
        return w @ np.abs(error) / total
    if name == "rmse":
        return np.sqrt(w @ error**2 / total)
    if name == "mean_error":
        return w @ error / total
    if name == "max_abs_error":
        return np.where(present, np.abs(error), -np.inf).max(axis=1)
    if name == "median_abs_error":
        return weighted_median(np.abs(error), w)
    if name == "r2":
        mean_ref = w @ reference / total
        spread = (w * (reference[None, :] - mean_ref[:, None]) ** 2).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(spread > 0, 1.0 - (w @ error**2) / spread, np.nan)
    if name == "f1":
        pred_pos, ref_pos = predicted > 0, reference > 0
        tp = w @ (pred_pos & ref_pos).astype(float)
        denom = 2 * tp + w @ (pred_pos & ~ref_pos).astype(float) + w @ (~pred_pos & ref_pos).astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(denom > 0, 2 * tp / denom, np.nan)
    raise ValueError(f"unknown statistic {name!r}")


def weighted_median(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The median of ``values`` with item i counted weights[r, i] times, for each row r (NaN for a row of no
    weight): with integer weights, ``np.median`` of the repeated values. One sort serves every row: in sorted
    order the lower middle value is the first whose cumulative weight reaches half the total, the upper one
    the first whose cumulative weight exceeds it (the same value when the total is odd)."""
    if len(values) == 0:
        return np.full(len(weights), np.nan)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    cumulative = np.cumsum(weights[:, order], axis=1)
    half = cumulative[:, -1:] / 2
    last = len(values) - 1
    lower = np.minimum((cumulative < half).sum(axis=1), last)
    upper = np.minimum((cumulative <= half).sum(axis=1), last)
    return np.where(cumulative[:, -1] > 0, (ordered[lower] + ordered[upper]) / 2, np.nan)


def seed_for(*parts: str, seed: int = SEED) -> int:
    """A seed that depends on what is resampled, not on the order in which metrics are computed."""
    return zlib.crc32("\x1f".join(parts).encode()) ^ seed


def resample_counts(rows: pd.DataFrame, key: tuple[str, ...], *, n_resamples: int = N_RESAMPLES, seed: int = SEED,
                    resample_by: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(the unit of each row, resamples x units counts): units are ``resample_by`` groups where the task
    names one, else ids up to their '@'; the draw is seeded from ``key``."""
    column = f"group_{resample_by}"
    labels = rows[column] if resample_by and column in rows else [unit_of(i) for i in rows["id"]]
    units, unit_index = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
    return unit_index, uniform_counts(len(units), n_resamples, np.random.default_rng(seed_for(*key, seed=seed)))


def uniform_counts(k: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """resamples x k counts of k draws with replacement from k units: the multinomial with equal
    probabilities, counted from uniform draws (numpy's multinomial draws k binomials per resample, which made
    it most of a leaderboard's time on tasks of thousands of items)."""
    counts = np.empty((n_resamples, k), dtype=np.int64)
    per_chunk = max(1, _MAX_CELLS // max(1, k))
    for start in range(0, n_resamples, per_chunk):
        rows = min(per_chunk, n_resamples - start)
        draws = rng.integers(0, k, size=(rows, k)) + k * np.arange(rows)[:, None]
        counts[start:start + rows] = np.bincount(draws.ravel(), minlength=rows * k).reshape(rows, k)
    return counts


def resampled_statistic(statistic: str, predicted: np.ndarray, reference: np.ndarray, unit_index: np.ndarray,
                        counts: np.ndarray) -> np.ndarray:
    """The statistic under each resample of ``counts`` (resamples x units), in chunks that fit in memory."""
    per_chunk = max(1, _MAX_CELLS // max(1, len(predicted)))
    return np.concatenate([
        weighted_statistic(statistic, predicted, reference, counts[start:start + per_chunk][:, unit_index])
        for start in range(0, len(counts), per_chunk)])


def paired_statistics(rows: pd.DataFrame, predictions: list[np.ndarray], statistic: str, *, key: tuple[str, ...],
                      n_resamples: int = N_RESAMPLES, seed: int = SEED,
                      resample_by: str | None = None) -> list[tuple[float, np.ndarray]]:
    """(value, replicates) of the statistic for each of ``predictions`` on the same ``rows``, all under one draw
    of resample counts: a paired bootstrap (the leaderboard's pairs, the gate's baseline against now)."""
    reference = rows["reference"].to_numpy(float)
    unit_index, counts = resample_counts(rows, key, n_resamples=n_resamples, seed=seed, resample_by=resample_by)
    ones = np.ones((1, len(rows)))
    return [(float(weighted_statistic(statistic, predicted, reference, ones)[0]),
             resampled_statistic(statistic, predicted, reference, unit_index, counts)) for predicted in predictions]


def bootstrap(rows: pd.DataFrame, statistic: str, *, key: tuple[str, ...], n_resamples: int = N_RESAMPLES,
              seed: int = SEED, level: float = LEVEL, resample_by: str | None = None) -> Interval:
    """The statistic of ``rows`` (columns id, predicted, reference, and ``group_<resample_by>`` when given) with
    a percentile interval."""
    predicted = rows["predicted"].to_numpy(float)
    reference = rows["reference"].to_numpy(float)
    n = len(rows)
    if n == 0:
        nan = float("nan")
        return Interval(nan, nan, nan, np.full(n_resamples, np.nan))
    value = float(weighted_statistic(statistic, predicted, reference, np.ones((1, n)))[0])
    unit_index, counts = resample_counts(rows, key, n_resamples=n_resamples, seed=seed, resample_by=resample_by)
    replicates = resampled_statistic(statistic, predicted, reference, unit_index, counts)
    tail = (1.0 - level) / 2 * 100
    finite = replicates[np.isfinite(replicates)]
    if len(finite) == 0:
        return Interval(value, float("nan"), float("nan"), replicates)
    low, high = np.percentile(finite, [tail, 100 - tail])
    return Interval(value, float(low), float(high), replicates)
