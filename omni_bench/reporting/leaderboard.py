"""The leaderboard: every (model, channel) on every task's headline metric, compared item by item.

- **Common items.** Each task's headline is shown on its common items: those every compared model scored (a
  model with no scored item is not compared), beside each model's coverage (scored/common/total).
- **Rank.** 1 + the number of models better than this one by a paired bootstrap of the difference in headline
  error: both models' errors on the same resamples of the items either scored (whole ``resample_by`` groups),
  each pair tested at a fixed Bonferroni level (``PAIR_LEVEL``: a family-wise error of 5% over all pairs of
  up to ``FAMILY_MODELS`` models). The level does not depend on how many models a table holds, so a model
  joining or leaving never flips another pair's verdict (Holm's correction over the table's pairs would). A
  failed item counts against the model that failed it (``pessimistic``), and a model with failures is called
  better only if it is also better on the items both scored: failing an item never gains a rank. The rank
  range runs from that rank to the number of compared models minus those this one beats: a noisy model has a
  good rank (few models beat it significantly) and a wide range.
- **Normalised error.** A model's headline error over all its items (failures counted against it) divided by
  the task's fixed scale (its file's ``scale``: the error of a null predictor computed from the references the
  model was scored against, or a stated value), capped at ``NORMALISED_CAP``: it reads no other model, so
  adding or removing one moves nobody's score. For a
  ``higher``-is-better headline the error is 1 minus the metric for R² and F1 and its inverse otherwise (a
  speed becomes a time per step); for a signed mean error, its size.
- **Domains and overall score.** A domain score is the mean normalised error over the domain's tasks the model
  has; the overall score is the mean of its domain scores, so a domain with many tasks does not dominate.
  Overall ranks (paired, the same fixed level) are given only among models with the same domains (their
  ``coverage``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from itertools import combinations

import numpy as np
import pandas as pd
from scipy.stats import norm as normal

from ..taskspec import VALUE_STATISTICS, primary_metric
from .bootstrap import LEVEL, paired_statistics, resample_counts, resampled_statistic, weighted_statistic
from .load import TaskResult
from .tables import Bootstraps, HeadlineItems
from .theory import warnings_for

FAMILYWISE_ERROR = 1 - LEVEL
#: the pairs of this many models form the family of the Bonferroni correction, whatever a table holds
FAMILY_MODELS = 12
FAMILY_PAIRS = FAMILY_MODELS * (FAMILY_MODELS - 1) // 2
#: the two-sided level at which each pair is tested
PAIR_LEVEL = FAMILYWISE_ERROR / FAMILY_PAIRS

BOUNDED_BY_ONE = ("r2", "f1")
#: the largest normalised error a task contributes: ten times its scale (a check failed tenfold or more, a model
#: ten times worse than the null predictor) counts as 10, so no single task owns a domain or overall score
#: (gfn2-xtb's periodic extensivity residual is 2,154 times its threshold)
NORMALISED_CAP = 10.0


@dataclass
class Leaderboard:
    """``tasks``: one row per (task, label) with the headline metric on the task's common items (``value``;
    ``own_value`` on the model's own scored items), its normalised error and rank; ``overall``: one row per
    label with its overall score, coverage and rank; ``metrics``: every metric of every result (the tidy table);
    ``pairs``: one row per (task, pair of labels) with the paired test and the better label ('' when
    indistinguishable); ``domains``: one row per (label, domain) with the domain score; ``channels``: the
    channel x domain table of each multi-channel model (``channel_domains``); ``replicates``: per (label, task),
    the normalised error's bootstrap replicates (the page re-ranks with the reader's weights from them)."""

    tasks: pd.DataFrame
    overall: pd.DataFrame
    metrics: pd.DataFrame
    pairs: pd.DataFrame
    domains: pd.DataFrame
    channels: pd.DataFrame = field(default_factory=pd.DataFrame)
    replicates: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)


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


def pessimistic(own: np.ndarray, other: np.ndarray, reference: np.ndarray, statistic: str,
                direction: str) -> np.ndarray:
    """``own`` predictions with its failed items (NaN) filled so that each counts against the model: at the
    larger of the model's own worst error on the task and the error of ``other`` on that item (the other model
    of a pair, or the null predictor), on the side of its mean error; for a statistic of the predictions alone
    (a speed), at the worse of its own worst value and the other's. Only the two models of a pair enter, so a
    third model never moves their verdict."""
    missing = np.isnan(own)
    if not missing.any():
        return own
    worse = np.fmax if direction == "lower" else np.fmin
    if statistic in VALUE_STATISTICS:
        worst = np.nanmax(own) if direction == "lower" else np.nanmin(own)
        return np.where(missing, worse(worst, other), own)
    error = own - reference
    side = 1.0 if np.nanmean(error) >= 0 else -1.0
    size = np.fmax(np.nanmax(np.abs(error)), np.abs(other - reference))
    return np.where(missing, reference + side * size, own)


@dataclass
class PairedTest:
    """The difference in headline error (first model minus second; negative: the first is better) on the same
    resamples of the same items, its percentile interval and a two-sided p-value (``test_from``)."""

    difference: float
    low: float
    high: float
    p_value: float


def paired_test(rows: pd.DataFrame, first: np.ndarray, second: np.ndarray, headline: HeadlineItems,
                key: tuple[str, ...], bootstraps: Bootstraps) -> PairedTest:
    if not len(rows):
        return PairedTest(np.nan, np.nan, np.nan, 1.0)
    stat, direction = headline.statistic, headline.direction
    (first_value, first_resampled), (second_value, second_resampled) = paired_statistics(
        rows, [first, second], stat, key=key, n_resamples=bootstraps.n_resamples, seed=bootstraps.seed,
        resample_by=headline.resample_by)
    difference = badness([first_value], stat, direction)[0] - badness([second_value], stat, direction)[0]
    return test_from(float(difference), badness(first_resampled, stat, direction)
                     - badness(second_resampled, stat, direction))


def compare_pair(headline: HeadlineItems, first: str, second: str, bootstraps: Bootstraps) -> PairedTest:
    """The paired test of two models on the items either scored, each one's failures counted against it
    (``pessimistic``). The model it favours, if it failed items itself, must also be better on the items both
    scored, or the test says nothing (p = 1): failing an item never wins a comparison."""
    items = headline.items
    rows = items[items[[first, second]].notna().any(axis=1)]
    reference = rows["reference"].to_numpy(float)
    own, other = rows[first].to_numpy(float), rows[second].to_numpy(float)
    test = paired_test(rows, pessimistic(own, other, reference, headline.statistic, headline.direction),
                       pessimistic(other, own, reference, headline.statistic, headline.direction), headline,
                       (headline.task, headline.metric, first, second), bootstraps)
    favoured = own if test.difference < 0 else other
    if not np.isfinite(test.difference) or test.difference == 0 or not np.isnan(favoured).any():
        return test
    both = ~np.isnan(own) & ~np.isnan(other)
    shared = paired_test(rows[both], own[both], other[both], headline,
                         (headline.task, headline.metric, first, second, "shared"), bootstraps)
    agrees = np.sign(shared.difference) == np.sign(test.difference)
    return PairedTest(test.difference, test.low, test.high, max(test.p_value, shared.p_value) if agrees else 1.0)


def compare(headline: HeadlineItems, bootstraps: Bootstraps) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One task's comparison: (per label: the headline on the common items with its interval, n_common, n_total
    and the rank with its range; per pair: the paired test and the better label). Models with no scored item
    are not compared."""
    items = headline.items
    labels = [label for label in headline.labels if items[label].notna().any()]
    common = items[items[labels].notna().all(axis=1)] if labels else items.iloc[:0]
    reference = common["reference"].to_numpy(float)
    rows = []
    if len(common):
        unit_index, counts = resample_counts(common, (headline.task, headline.metric, "common"),
                                             n_resamples=bootstraps.n_resamples, seed=bootstraps.seed,
                                             resample_by=headline.resample_by)
    for label in headline.labels:
        value, low, high = np.nan, np.nan, np.nan
        if len(common) and label in labels:
            predicted = common[label].to_numpy(float)
            value = float(weighted_statistic(headline.statistic, predicted, reference, np.ones((1, len(common))))[0])
            low, high = _percentiles(resampled_statistic(headline.statistic, predicted, reference, unit_index,
                                                         counts))
        rows.append({"label": label, "value": value, "ci_low": low, "ci_high": high, "n_common": len(common),
                     "n_total": int(headline.present[label].sum())})
    tests = [(a, b, compare_pair(headline, a, b, bootstraps)) for a, b in combinations(labels, 2)]
    pairs, ranks, worst = verdicts(tests, labels)
    table = pd.DataFrame(rows, columns=["label", "value", "ci_low", "ci_high", "n_common", "n_total"])
    table["rank"] = [ranks.get(label, 1) for label in table["label"]]
    table["rank_worst"] = [worst.get(label, len(labels)) for label in table["label"]]
    return table, pairs.assign(task=headline.task)


def verdicts(tests: list[tuple[str, str, PairedTest]],
             labels: list[str]) -> tuple[pd.DataFrame, dict[str, int], dict[str, int]]:
    """(one row per pair with its Bonferroni-adjusted p-value and the better label, '' when the pair's test does
    not reach ``PAIR_LEVEL``; per label of ``labels``, its rank, 1 + the labels better than it; per label, its
    worst rank, the number of labels less those it beats). Each verdict reads its own pair only."""
    pairs = pd.DataFrame([
        {"task": "", "first": a, "second": b, "difference": t.difference, "low": t.low, "high": t.high,
         "p_value": t.p_value, "p_adjusted": min(1.0, t.p_value * FAMILY_PAIRS),
         "better": (a if t.difference < 0 else b) if t.p_value < PAIR_LEVEL else ""}
        for a, b, t in tests], columns=PAIR_COLUMNS)
    losses: dict[str, int] = {}
    wins: dict[str, int] = {}
    for _, row in pairs[pairs["better"] != ""].iterrows():
        loser = row["second"] if row["better"] == row["first"] else row["first"]
        losses[loser] = losses.get(loser, 0) + 1
        wins[row["better"]] = wins.get(row["better"], 0) + 1
    return (pairs, {label: 1 + losses.get(label, 0) for label in labels},
            {label: len(labels) - wins.get(label, 0) for label in labels})


def null_predictions(headline: HeadlineItems, reference: np.ndarray) -> np.ndarray | None:
    """What the task's null predictor (its ``scale.null_predictor``) predicts for these references."""
    scale = headline.scale
    if scale is None or scale.null_predictor is None:
        return None
    return np.zeros_like(reference) if scale.null_predictor == "zero" else np.full_like(reference, reference.mean())


@dataclass
class Normalised:
    """A model's headline error on all its items of a task (failures counted against it) over the task's scale."""

    value: float
    low: float
    high: float
    replicates: np.ndarray
    scale: float


def normalised_error(headline: HeadlineItems, label: str, bootstraps: Bootstraps) -> Normalised:
    """The model's headline error over every item it has a row for, each failed item counted at the larger of
    its own worst error and the null predictor's error on that item (for a stated scale, the scale itself:
    a pass threshold) (``pessimistic``), divided by the task's
    scale: the null predictor's error on the same items against the references this model was scored with,
    or the task file's stated value. It reads this model's rows only, so no other model moves it (not even
    one scored against another energy convention); the resamples depend on the task and the items only, so
    models with the same items are resampled identically (paired)."""
    rows = headline.items[headline.present[label]]
    own, reference = headline.own(label)
    nan = np.full(bootstraps.n_resamples, np.nan)
    if headline.scale is None or not np.isfinite(own).any():
        return Normalised(np.nan, np.nan, np.nan, nan, np.nan)
    stat, direction = headline.statistic, headline.direction
    null = null_predictions(headline, reference)
    ones = np.ones((1, len(rows)))
    scale = (float(badness(weighted_statistic(stat, null, reference, ones), stat, direction)[0])
             if null is not None else float(headline.scale.value))
    if not (np.isfinite(scale) and scale > 0):
        return Normalised(np.nan, np.nan, np.nan, nan, np.nan)
    if null is not None:
        other = null
    elif stat in VALUE_STATISTICS:
        other = np.full_like(own, np.nan)
    else:  # a stated scale is a pass threshold: a failed item counts at least as an item at the threshold
        other = reference + float(headline.scale.value)
    filled = pessimistic(own, other, reference, stat, direction)
    value = min(NORMALISED_CAP, float(badness(weighted_statistic(stat, filled, reference, ones), stat, direction)[0])
                / scale)
    unit_index, counts = resample_counts(rows, (headline.task, headline.metric, "normalised"),
                                         n_resamples=bootstraps.n_resamples, seed=bootstraps.seed,
                                         resample_by=headline.resample_by)
    replicates = np.fmin(NORMALISED_CAP, badness(resampled_statistic(stat, filled, reference, unit_index, counts),
                                                 stat, direction) / scale)
    low, high = _percentiles(replicates)
    return Normalised(value, low, high, replicates, scale)


PAIR_COLUMNS = ["task", "first", "second", "difference", "low", "high", "p_value", "p_adjusted", "better"]


def rank_label(rank: int | None, tied: bool, worst: int | None = None) -> str:
    """'2=' for rank 2 shared; with ``worst``, the rank range too: '2= (2-7)' when the tests leave it open."""
    if rank is None:
        return "-"
    text = f"{rank}{'=' if tied else ''}"
    return text if worst is None or worst == rank else f"{text} ({rank}-{worst})"


def row_rank(row: pd.Series, with_range: bool = True) -> str:
    """``rank_label`` of a leaderboard row (a task row or an overall row)."""
    if pd.isna(row["rank"]):
        return "-"
    worst = row.get("rank_worst") if with_range else None
    return rank_label(int(row["rank"]), bool(row["tied"]), None if worst is None or pd.isna(worst) else int(worst))


def build(metrics: pd.DataFrame, bootstraps: Bootstraps) -> Leaderboard:
    """Each task's headline compared on its common items, ranked by paired tests, and the overall score."""
    headline = metrics[metrics["primary"]].copy()
    task_rows, pair_tables, replicates = [], [], {}
    for task, group in headline.groupby("task", sort=True):
        table, pairs = compare(bootstraps.headlines[task], bootstraps)
        pair_tables.append(pairs)
        group = group.rename(columns={"value": "own_value", "ci_low": "own_ci_low", "ci_high": "own_ci_high"})
        group = group.merge(table, on="label", how="left")
        group[["n_common", "n_total"]] = group[["n_common", "n_total"]].fillna(0).astype(int)
        stat, direction = group["statistic"].iloc[0], group["direction"].iloc[0]
        bad = badness(group["value"], stat, direction)
        bounds = [badness_interval(lo, hi, stat, direction) for lo, hi in zip(group["ci_low"], group["ci_high"],
                                                                             strict=True)]
        group["error"] = bad
        group["error_low"] = [b[0] for b in bounds]
        group["error_high"] = [b[1] for b in bounds]
        normalised = {label: normalised_error(bootstraps.headlines[task], label, bootstraps)
                      for label in group["label"]}
        replicates.update({(label, task): n.replicates for label, n in normalised.items()})
        for column, attribute in (("norm", "value"), ("norm_low", "low"), ("norm_high", "high"), ("scale", "scale")):
            group[column] = [getattr(normalised[label], attribute) for label in group["label"]]
        declared = bootstraps.headlines[task].scale
        group["domain"] = bootstraps.headlines[task].domain
        group["scale_rule"] = declared.describe() if declared else "none declared"
        group["rank"] = group["rank"].where(np.isfinite(bad))
        group["rank_worst"] = group["rank_worst"].where(np.isfinite(bad))
        ranks = group["rank"].tolist()
        group["tied"] = [pd.notna(r) and ranks.count(r) > 1 for r in ranks]
        task_rows.append(group)
    tasks = pd.concat(task_rows, ignore_index=True) if task_rows else headline.assign(
        own_value=[], own_ci_low=[], own_ci_high=[], n_common=[], n_total=[], error=[], error_low=[],
        error_high=[], norm=[], norm_low=[], norm_high=[], scale=[], domain=[], scale_rule=[], rank=[],
        rank_worst=[], tied=[])
    pairs = pd.concat(pair_tables, ignore_index=True) if pair_tables else pd.DataFrame(columns=PAIR_COLUMNS)
    domains = _domains(tasks, replicates)
    return Leaderboard(tasks, _overall(tasks, domains), metrics, pairs, domains[DOMAIN_COLUMNS],
                       channel_domains(tasks, domains), replicates)


def annotate(board: Leaderboard, results: list[TaskResult]) -> Leaderboard:
    """Adds to each (label, task) row what the results files say beyond the numbers: the model family
    (model and D3 flag), the task's suites, the warnings (``theory.warnings_for``) and the kinds of its failed
    headline entries (``failure_kinds``)."""
    found = {r.key: r for r in results}
    tasks = board.tasks.copy()
    keys = list(zip(tasks["label"], tasks["task"], strict=True))
    tasks["family"] = [found[k].family for k in keys]
    tasks["suites"] = [list(found[k].suites) for k in keys]
    tasks["warnings"] = [warnings_for(found[k]) for k in keys]
    tasks["failure_kinds"] = [failure_kinds(found[k]) for k in keys]
    return replace(board, tasks=tasks)


#: kinds of failure that a message names where its exception type does not (checked first, in this order)
FAILURE_MESSAGES = (("can't allocate memory", "out of memory"), ("out of memory", "out of memory"),
                    ("did not converge", "not converged"), ("outside the sampled", "minimum outside the sampled range"),
                    ("itemtimeout", "timed out"))
#: the protocols' own failure types (the runner stores '<type>: <message>'); any other type is the model's error
FAILURE_TYPES = {"ElasticallyUnstable": "elastically unstable", "DynamicallyUnstable": "dynamically unstable",
                 "NotConverged": "not converged", "ItemTimeout": "timed out"}


def failure_kind(error: str) -> str:
    text = str(error or "")
    lowered = text.lower()
    for pattern, kind in FAILURE_MESSAGES:
        if pattern in lowered:
            return kind
    return FAILURE_TYPES.get(text.split(":", 1)[0].strip(), "model error")


def failed_text(n: int, kinds: str | None) -> str:
    """'8 (elastically unstable 8)': how many failed, and of which kinds (``failure_kinds``)."""
    return f"{n} ({kinds})" if n and kinds else str(n)


def failure_kinds(result: TaskResult) -> str:
    """'elastically unstable 8, not converged 1': the kinds of the failed headline entries, most common first."""
    spec = primary_metric(result.metric_specs) if result.metric_specs else None
    if spec is None:
        return ""
    frame = result.predictions
    rows = frame[(frame["quantity"] == spec.quantity) & (frame["status"] != "ok")]
    counts = Counter(failure_kind(m) for m in (rows["message"] if "message" in rows else [""] * len(rows)))
    return ", ".join(f"{kind} {n}" for kind, n in counts.most_common())


def warning_text(warnings) -> str:
    return "; ".join(w.short for w in warnings)


DOMAIN_COLUMNS = ["label", "domain", "score", "score_low", "score_high", "tasks"]


def _domains(tasks: pd.DataFrame, replicates: dict[tuple[str, str], np.ndarray]) -> pd.DataFrame:
    """Per (label, domain): the mean normalised error over the domain's tasks the model has, with the
    per-resample means (each task's resamples are drawn from the task's items alone, so they are the same for
    every model with the same items)."""
    rows = []
    scored = tasks[np.isfinite(tasks["norm"].to_numpy(float)) & tasks["domain"].notna()]
    for (label, domain), group in scored.groupby(["label", "domain"], sort=True):
        per_resample = np.nanmean(np.vstack([replicates[(label, t)] for t in group["task"]]), axis=0)
        low, high = _percentiles(per_resample)
        rows.append({"label": label, "domain": domain, "score": float(group["norm"].mean()), "score_low": low,
                     "score_high": high, "tasks": len(group), "replicates": per_resample})
    return pd.DataFrame(rows, columns=[*DOMAIN_COLUMNS, "replicates"])


CHANNEL_COLUMNS = ["model", "domain", "label", "score", "score_low", "score_high", "tasks", "best", "next",
                   "separable", "p_value"]


def channel_domains(tasks: pd.DataFrame, domains: pd.DataFrame) -> pd.DataFrame:
    """The papers' question, which channel transfers to which domain: for each model with several channels (or
    D3 variants), one row per (domain, label) with the domain score; on the best label's row, the runner-up
    (``next``) and whether a paired test of the two domain scores (the same resamples of each task's items) at
    ``PAIR_LEVEL`` separates them."""
    models = tasks.drop_duplicates("label").set_index("label")["model"]
    rows = []
    for model, labels in models.groupby(models, sort=True):
        if len(labels) < 2:
            continue
        mine = domains[domains["label"].isin(labels.index)]
        for domain, group in mine.groupby("domain", sort=False):
            group = group.sort_values(["score", "label"])
            best, runner_up = group.iloc[0], group.iloc[1] if len(group) > 1 else None
            test = (_paired_scores(best["replicates"], runner_up["replicates"], best["score"] - runner_up["score"])
                    if runner_up is not None else None)
            for _, r in group.iterrows():
                first = r["label"] == best["label"]
                rows.append({"model": model, "domain": domain, "label": r["label"], "score": r["score"],
                             "score_low": r["score_low"], "score_high": r["score_high"], "tasks": r["tasks"],
                             "best": first, "next": runner_up["label"] if first and test else "",
                             "separable": bool(first and test and test.p_value < PAIR_LEVEL),
                             "p_value": test.p_value if first and test else np.nan})
    return pd.DataFrame(rows, columns=CHANNEL_COLUMNS)


def _percentiles(replicates: np.ndarray) -> tuple[float, float]:
    tail = (1 - LEVEL) / 2 * 100
    if not np.isfinite(replicates).any():
        return np.nan, np.nan
    low, high = np.nanpercentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


def _overall(tasks: pd.DataFrame, domains: pd.DataFrame) -> pd.DataFrame:
    """Per label: the mean of its domain scores (each domain counts once, however many tasks it has), its
    interval, and its rank among the models with the same domains (its ``coverage``), from paired tests of the
    overall scores at ``PAIR_LEVEL``, with its rank range. Rows are in order of coverage (most domains first),
    then score."""
    all_tasks = sorted(set(tasks["task"]))
    rows, replicates = [], {}
    for label, group in tasks.groupby("label", sort=False):
        done = group[np.isfinite(group["norm"].to_numpy(float))]
        mine = domains[domains["label"] == label]
        score, low, high = np.nan, np.nan, np.nan
        if len(mine):
            score = float(mine["score"].mean())
            replicates[label] = np.nanmean(np.vstack(list(mine["replicates"])), axis=0)
            low, high = _percentiles(replicates[label])
        first = group.iloc[0]
        rows.append({"label": label, "model": first["model"], "channel": first["channel"], "d3": first["d3"],
                     "score": score, "score_low": low, "score_high": high, "coverage": ", ".join(mine["domain"]),
                     "domains": len(mine), "tasks_done": len(done), "tasks_missing": len(all_tasks) - len(done),
                     "missing": ", ".join(t for t in all_tasks if t not in set(done["task"]))})
    overall = pd.DataFrame(rows, columns=OVERALL_COLUMNS[:-3])
    ranks: dict[str, int] = {}
    worst: dict[str, int] = {}
    for _, group in overall[np.isfinite(overall["score"].to_numpy(float))].groupby("coverage"):
        labels = sorted(group["label"])
        tests = [(a, b, _paired_scores(replicates[a], replicates[b], score_of(overall, a) - score_of(overall, b)))
                 for a, b in combinations(labels, 2)]
        _, group_ranks, group_worst = verdicts(tests, labels)
        ranks.update(group_ranks)
        worst.update(group_worst)
    overall["rank"] = pd.array([ranks.get(label) for label in overall["label"]], dtype="Int64")
    overall["rank_worst"] = pd.array([worst.get(label) for label in overall["label"]], dtype="Int64")
    same_rank = overall.groupby(["coverage", "rank"], dropna=False)["label"].transform("size")
    overall["tied"] = overall["rank"].notna().to_numpy() & (same_rank.to_numpy() > 1)
    overall["group_size"] = overall.groupby("coverage")["label"].transform("size")
    overall = overall.sort_values(["domains", "group_size", "coverage", "score", "label"],
                                  ascending=[False, False, True, True, True], na_position="last",
                                  ignore_index=True)
    return overall.drop(columns="group_size")


OVERALL_COLUMNS = ["label", "model", "channel", "d3", "score", "score_low", "score_high", "coverage", "domains",
                   "tasks_done", "tasks_missing", "missing", "rank", "rank_worst", "tied"]


def score_of(overall: pd.DataFrame, label: str) -> float:
    return float(overall.loc[overall["label"] == label, "score"].iloc[0])


def _paired_scores(first: np.ndarray, second: np.ndarray, difference: float) -> PairedTest:
    """A paired test of two overall scores from their per-resample values (same resamples per task)."""
    return test_from(difference, first - second)


def test_from(difference: float, replicates: np.ndarray) -> PairedTest:
    """The paired test of a difference from its bootstrap replicates: percentile interval, and a two-sided
    p-value from the normal approximation (a bootstrap's own p-value cannot go below 1/resamples, too coarse
    for Holm's correction over tens of pairs)."""
    spread = float(np.nanstd(replicates))
    p_value = float(2 * normal.sf(abs(difference) / spread)) if spread > 0 else float(difference == 0)
    low, high = _percentiles(replicates)
    return PairedTest(difference, low, high, p_value)


def task_cell(row: pd.Series, digits: int = 3, with_ci: bool = True) -> str:
    if not np.isfinite(row["value"]):
        return "no result"
    text = f"{row['value']:.{digits}g}"
    if with_ci and np.isfinite(row["ci_low"]):
        text += f" [{row['ci_low']:.{digits}g}, {row['ci_high']:.{digits}g}]"
    return text


def csv_frame(board: Leaderboard) -> pd.DataFrame:
    """Every metric (long format) with the headline's rank and each label's overall score on its rows."""
    columns = ["label", "task", "metric", "value", "ci_low", "ci_high", "n_common", "n_total", "norm", "rank",
               "rank_worst", "tied"]
    ranks = board.tasks[columns].rename(columns={"value": "common_value", "ci_low": "common_low",
                                                 "ci_high": "common_high"})
    frame = board.metrics.merge(ranks, on=["label", "task", "metric"], how="left")
    if "warnings" in board.tasks:  # annotated: the warnings of a (label, task) on all its metrics' rows
        notes = board.tasks[["label", "task"]].assign(
            warnings=board.tasks["warnings"].map(lambda ws: "; ".join(w.detail for w in ws)))
        frame = frame.merge(notes, on=["label", "task"], how="left")
    overall = board.overall[["label", "score", "score_low", "score_high", "tasks_missing"]].rename(
        columns={"score": "overall_score", "score_low": "overall_low", "score_high": "overall_high"})
    frame = frame.merge(overall, on="label", how="left")
    frame[["rank", "rank_worst"]] = frame[["rank", "rank_worst"]].astype("Int64")
    return frame
