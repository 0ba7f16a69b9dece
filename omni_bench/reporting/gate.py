"""The regression gate: current results against a baseline, with the tolerances of the task files.

A baseline is one of: a baseline JSON written by ``omni-bench gate --write-baseline``, a leaderboard CSV
(``omni-bench leaderboard --out``), a single results JSON of ``omni-bench run``, or a results folder.

For each (model label, task) of the baseline it checks that the task is present in the current results,
that it has the same task version, task inputs, units, number of items and references (otherwise the
numbers are not comparable), that no item scored in the baseline failed now (or, without per-item data, that
there are no more failed items), and every metric named in the task file's ``gate`` section.

Where the baseline holds per-item values (a results folder or JSON, or a baseline JSON of format 2) a metric
is compared on the items both scored, paired (``paired_worsening``): it regresses when the 95% interval of its
worsening excludes zero and the worsening exceeds ``max(abs, rel * |baseline|)``, in the metric's unit. Without
per-item values (a leaderboard CSV, an older baseline JSON) the two values are compared: a regression exceeds
that tolerance. "Worse" follows the metric's direction; for a signed mean error, its size.
"""

from __future__ import annotations

import io
import json
import math
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

from ..errors import OmniBenchError
from ..results_format import json_text, reference_sha256
from ..safe_text import printable
from ..taskspec import GateSpec
from ..version import __version__
from .bootstrap import paired_statistics
from .load import TaskResult, labelled_rows, load_results, metric_value, read_capped, read_result

BASELINE_KIND = "omni-bench-baseline"
PASS, FAIL, INFO = "pass", "FAIL", "info"


@dataclass
class Snapshot:
    """What the gate compares for one (label, task): counts and metrics."""

    label: str
    model: str
    channel: str
    task: str
    task_version: int
    n_items: int
    n_failed: int
    metrics: dict[str, dict] = field(default_factory=dict)
    fingerprint_id: str = ""
    inputs_hash: str = ""  # '' when the baseline predates it: then only the task version is compared
    #: sha256 of the (item, quantity, reference) rows scored ('' in baselines that predate it)
    reference_sha256: str = ""
    #: quantity -> item id -> signed error (predicted - reference) of every scored item with a finite error
    #: (empty in baselines that predate it, and for a leaderboard CSV: then values are compared unpaired)
    item_errors: dict[str, dict[str, float]] = field(default_factory=dict)
    #: quantity -> ids of the failed items (with ``item_errors``)
    failed_items: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Check:
    status: str
    label: str
    task: str
    check: str
    baseline: str = ""
    current: str = ""
    allowed: str = ""
    note: str = ""
    #: the smallest worsening this check would catch with 80% power (paired metric checks only)
    detectable: str = ""


def snapshot(result: TaskResult) -> Snapshot:
    metrics = {name: {k: m.get(k) for k in ("value", "unit", "statistic", "direction", "n", "n_failed")}
               for name, m in result.metrics.items()}
    frame = result.predictions
    item_errors, failed_items = per_item(frame)
    return Snapshot(result.label, result.model, result.channel or "", result.task, result.task_version,
                    result.n_items, result.n_failed, metrics, result.fingerprint_id, result.inputs_hash,
                    reference_sha256(frame["id"], frame["quantity"], frame["reference"]), item_errors, failed_items)


def per_item(frame: pd.DataFrame) -> tuple[dict[str, dict[str, float]], dict[str, list[str]]]:
    """(quantity -> id -> signed error of each scored item, quantity -> failed ids) of a predictions CSV. A
    quantity whose ids repeat, or without references (timings), has no per-item errors."""
    item_errors, failed_items = {}, {}
    for quantity, rows in frame.groupby("quantity", sort=True):
        if rows["id"].duplicated().any():
            continue
        ok = rows["status"] == "ok"
        error = rows["predicted"].to_numpy(float) - rows["reference"].to_numpy(float)
        scored = ok.to_numpy() & np.isfinite(error)
        if scored.any():
            item_errors[str(quantity)] = dict(zip(rows["id"][scored].astype(str), error[scored].tolist(), strict=True))
            failed_items[str(quantity)] = sorted(rows["id"][~ok].astype(str))
    return item_errors, failed_items


def write_baseline(results: list[TaskResult], path: Path) -> Path:
    if path.suffix == ".csv":
        raise OmniBenchError(f"--write-baseline writes JSON; name the baseline {path.with_suffix('.json')}")
    payload = {"kind": BASELINE_KIND, "format": 2, "omni_bench_version": __version__,
               "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "results": [asdict(snapshot(r)) for r in sorted(results, key=lambda r: r.key)]}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json_text(payload), encoding="utf-8")
    except OSError as exc:
        raise OmniBenchError(f"cannot write baseline {path}: {exc}") from None
    return path


def read_baseline(path: Path) -> list[Snapshot]:
    """Snapshots from any of the accepted baseline formats."""
    path = Path(path)
    if path.is_dir():
        return [snapshot(r) for r in load_results([path])]
    if not path.is_file():
        raise OmniBenchError(f"baseline {path} does not exist (record one with: omni-bench gate --write-baseline "
                             f"--baseline {path})")
    if path.suffix == ".csv":
        return _from_leaderboard_csv(path)
    try:
        payload = json.loads(read_capped(path.resolve(), "baseline").decode("utf-8"))  # a link named here is fine
    except (ValueError, RecursionError) as exc:  # not JSON, or not UTF-8
        raise OmniBenchError(f"cannot read baseline {path}: {exc}") from None
    if isinstance(payload, dict) and payload.get("kind") == BASELINE_KIND:
        return _from_baseline_json(path, payload)
    return [snapshot(read_result(path.resolve()))]


def _from_baseline_json(path: Path, payload: dict) -> list[Snapshot]:
    try:
        snapshots = [Snapshot(**entry) for entry in payload["results"]]
    except (KeyError, TypeError) as exc:
        raise OmniBenchError(f"baseline {path} is damaged: {exc}; record the baseline again with "
                             "--write-baseline") from None
    for s in snapshots:
        where = f"baseline {path}: {s.label!r} on {s.task!r}"
        text = [key for key in TEXT_FIELDS if not isinstance(getattr(s, key), str)]
        if text or not isinstance(s.metrics, dict) or not all(isinstance(m, dict) for m in s.metrics.values()):
            raise OmniBenchError(f"{where}: {', '.join(text) or 'metrics'} is not what --write-baseline writes; "
                                 "record the baseline again with --write-baseline")
        bad = [f"{name}.value={m.get('value')!r}" for name, m in s.metrics.items()
               if not isinstance(m.get("value"), (int, float, type(None))) or isinstance(m.get("value"), bool)]
        bad += [f"{key}={getattr(s, key)!r}" for key in ("task_version", "n_items", "n_failed")
                if not isinstance(getattr(s, key), int)]
        bad += [f"item_errors.{q}" for q, errors in _items(s.item_errors) if not isinstance(errors, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in errors.values())]
        bad += [f"failed_items.{q}" for q, ids in _items(s.failed_items)
                if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)]
        if bad:
            raise OmniBenchError(f"{where} has {', '.join(bad)}, not a number; record the baseline again with "
                                 "--write-baseline")
    return snapshots


def _items(value) -> list[tuple[str, object]]:
    """The entries of a per-item field of a baseline JSON; a field that is not an object is one bad entry."""
    return list(value.items()) if isinstance(value, dict) else [("", value)]


#: the fields of a baseline's snapshot that are text
TEXT_FIELDS = ("label", "model", "channel", "task", "fingerprint_id", "inputs_hash", "reference_sha256")


def _from_leaderboard_csv(path: Path) -> list[Snapshot]:
    try:
        data = io.BytesIO(read_capped(path.resolve(), "baseline"))
        frame = pd.read_csv(data, dtype={"label": str, "task": str, "metric": str, "channel": str,
                                         "fingerprint_id": str, "inputs_hash": str, "unit": str},
                            keep_default_na=False, na_values={"value": [""]})
    except (OSError, ValueError) as exc:  # pandas' parser errors and a file that is not UTF-8 are ValueErrors
        raise OmniBenchError(f"cannot read baseline {path}: {exc}") from None
    needed = {"label", "model", "task", "task_version", "task_n_items", "task_n_failed", "metric", "value",
              "statistic", "direction"}
    if needed - set(frame.columns):
        raise OmniBenchError(f"baseline {path} is not a leaderboard CSV (missing columns: "
                             f"{', '.join(sorted(needed - set(frame.columns)))})")
    snapshots = []
    for (label, task), group in frame.groupby(["label", "task"], sort=True):
        first = group.iloc[0]
        try:
            metrics = {r["metric"]: {"value": float(r["value"]), "unit": r.get("unit", ""),
                                     "statistic": r["statistic"], "direction": r["direction"], "n": int(r["n"]),
                                     "n_failed": int(r["n_failed"])}
                       for _, r in group.iterrows()}
            snapshots.append(Snapshot(label, str(first["model"]), str(first.get("channel", "")), task,
                                      int(first["task_version"]), int(first["task_n_items"]),
                                      int(first["task_n_failed"]), metrics, str(first.get("fingerprint_id", "")),
                                      str(first.get("inputs_hash", ""))))
        except (KeyError, TypeError, ValueError) as exc:
            raise OmniBenchError(f"baseline {path}: a row of {label} on {task} is not a number where one is needed "
                                 f"(value, n, n_failed, task_version, task_n_items, task_n_failed): {exc}") from None
    return snapshots


def matches(s: Snapshot, models: list[str], channel: str | None) -> bool:
    if models and s.label not in models and s.model not in models:
        return False
    return channel is None or s.channel == channel


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.5g}"
    return str(value)


def compare(baseline: list[Snapshot], current: list[Snapshot], gates: dict[str, dict[str, GateSpec]],
            results: dict[tuple[str, str], TaskResult] | None = None) -> list[Check]:
    """Every check of the current snapshots against the baseline; ``gates`` maps task -> metric -> tolerance.
    ``results`` (the current results by (label, task)) gives the per-item rows for paired metric checks."""
    now = {(s.label, s.task): s for s in current}
    checks: list[Check] = []
    for base in sorted(baseline, key=lambda s: (s.label, s.task)):
        cur = now.get((base.label, base.task))
        where = (base.label, base.task)
        if cur is None:
            checks.append(Check(FAIL, *where, "present", "yes", "missing",
                                note="task missing from the current results"))
            continue
        checks.append(Check(PASS, *where, "present", "yes", "yes"))
        if cur.task_version != base.task_version:
            checks.append(Check(FAIL, *where, "task version", str(base.task_version), str(cur.task_version),
                                note="task changed: numbers not comparable; record a new baseline"))
            continue
        if base.inputs_hash and cur.inputs_hash and cur.inputs_hash != base.inputs_hash:
            checks.append(Check(FAIL, *where, "task inputs", base.inputs_hash, cur.inputs_hash,
                                note="protocol, parameters or data changed within the task version: not "
                                     "comparable; raise the task's version and record a new baseline"))
            continue
        changed = _changed_units(base, cur)
        if changed:
            checks.append(Check(FAIL, *where, "units", *changed[1:],
                                note=f"units of {changed[0]} changed within the task version: not comparable; "
                                     "raise the task's version and record a new baseline"))
            continue
        if cur.n_items != base.n_items:
            checks.append(Check(FAIL, *where, "items", str(base.n_items), str(cur.n_items),
                                note="different number of items (a --limit run?): not comparable"))
            continue
        if base.reference_sha256 and cur.reference_sha256 and cur.reference_sha256 != base.reference_sha256:
            checks.append(Check(FAIL, *where, "references", base.reference_sha256[:16], cur.reference_sha256[:16],
                                note="scored against other reference values (other data, or an edited results "
                                     "file): not comparable"))
            continue
        checks.append(_failures_check(base, cur))
        checks += _metric_checks(base, cur, gates.get(base.task, {}), (results or {}).get(where))
    for key, cur in sorted(now.items()):
        if key not in {(b.label, b.task) for b in baseline}:
            checks.append(Check(INFO, cur.label, cur.task, "present", "-", "yes", note="not in the baseline"))
    return checks


def _changed_units(base: Snapshot, cur: Snapshot) -> tuple[str, str, str] | None:
    """(the metrics whose unit differs, their baseline units, their current units), e.g. ('mae, rmse',
    'kcal/mol', 'eV'); None when every metric both record has the same unit. Units are applied when scoring,
    so a task file edited from kcal/mol to eV reuses the stored values and keeps its version and inputs hash:
    only the units tell the numbers apart."""
    changed = [(name, str(old["unit"]), str(cur.metrics[name]["unit"])) for name, old in sorted(base.metrics.items())
               if old.get("unit") and (cur.metrics.get(name) or {}).get("unit")
               and str(old["unit"]) != str(cur.metrics[name]["unit"])]
    if not changed:
        return None
    names, old, new = zip(*changed, strict=True)
    return ", ".join(names), ", ".join(dict.fromkeys(old)), ", ".join(dict.fromkeys(new))


def _failures_check(base: Snapshot, cur: Snapshot) -> Check:
    """With per-item data, every item scored in the baseline and failed now is a regression by itself (a failed
    item never improves anything), named; without it, the count of failed items must not grow."""
    where = (base.label, base.task, "failures", str(base.n_failed), str(cur.n_failed))
    newly = sorted({i for q, ids in cur.failed_items.items() for i in ids if i in base.item_errors.get(q, {})})
    if newly:
        shown = ", ".join(newly[:5]) + (f" and {len(newly) - 5} more" if len(newly) > 5 else "")
        return Check(FAIL, *where, "none newly failed",
                     f"{len(newly)} item{'s' * (len(newly) > 1)} scored in the baseline failed now: {shown}")
    allowed = "none newly failed" if base.item_errors else "no more"
    if cur.n_failed > base.n_failed:
        return Check(FAIL, *where, allowed, "more failed items")
    return Check(PASS, *where, allowed)


def _metric_checks(base: Snapshot, cur: Snapshot, gate: dict[str, GateSpec], result: TaskResult | None) -> list[Check]:
    checks = []
    for name, old in sorted(base.metrics.items()):
        tolerance = gate.get(name.split("[", 1)[0])
        if tolerance is None:
            continue
        where = (base.label, base.task, name)
        new = cur.metrics.get(name)
        old_value, new_value = metric_value(old), metric_value(new)  # NaN: null, a metric of nothing
        if not math.isfinite(old_value):
            checks.append(Check(INFO, *where, _fmt(old_value), _fmt(new_value), note="no baseline value"))
            continue
        if not math.isfinite(new_value):
            checks.append(Check(FAIL, *where, _fmt(old_value), _fmt(new_value), note="metric has no value now"))
            continue
        allowed = max(tolerance.abs, tolerance.rel * abs(old_value))
        shown_allowed = f"{allowed:.4g} (abs {tolerance.abs:g}, rel {tolerance.rel:g})"
        statistic, direction = old.get("statistic") or "", old.get("direction") or "lower"
        paired = _paired(base, result, name, allowed) if result is not None else None
        if paired is not None:
            rounding = _ROUNDING * max(1.0, abs(old_value))
            failed = paired.regressed(allowed, rounding)
            detectable = _fmt(paired.detectable) if math.isfinite(paired.detectable) else "-"
            checks.append(Check(FAIL if failed else PASS, *where, _fmt(old_value), _fmt(new_value), shown_allowed,
                                paired.note(rounding), detectable))
            continue
        worse_by = worsening(old_value, new_value, statistic, direction)
        failed = worse_by > allowed + 1e-12
        same = abs(worse_by) <= _ROUNDING * max(1.0, abs(old_value))
        note = "unchanged" if same else (f"worse by {worse_by:.4g}" if worse_by > 0 else "better")
        if result is not None:
            note += " (values compared: the baseline has no per-item errors)"
        checks.append(Check(FAIL if failed else PASS, *where, _fmt(old_value), _fmt(new_value), shown_allowed, note))
    return checks


#: a worsening this small, relative to the value, is floating-point rounding, not a change
_ROUNDING = 1e-9


@dataclass
class Paired:
    """A metric's worsening on the items both runs scored, with its paired bootstrap interval."""

    n: int
    worse_by: float
    low: float
    high: float
    detectable: float

    def regressed(self, allowed: float, rounding: float = 0.0) -> bool:
        """The interval excludes zero (by more than ``rounding``) and the worsening exceeds the tolerance."""
        return bool(self.low > rounding and self.worse_by > allowed + 1e-12)

    def note(self, rounding: float) -> str:
        """What the interval says, with changes below ``rounding`` read as none."""
        items = f"{self.n} shared item{'s' * (self.n != 1)}"
        interval = f"[{self.low:.4g}, {self.high:.4g}] over {items}"
        if max(abs(self.low), abs(self.high), abs(self.worse_by)) <= rounding:
            return f"unchanged on {items}"
        if self.low > rounding:
            return f"worse by {self.worse_by:.4g} {interval}"
        if self.high < -rounding:
            return f"better by {-self.worse_by:.4g} {interval}"
        return f"no significant change: {self.worse_by:+.4g} {interval}"


def _paired(base: Snapshot, result: TaskResult, name: str, allowed: float) -> Paired | None:
    """The paired comparison of one metric, or None where the baseline has no per-item errors for it."""
    try:
        spec = result.metric_spec(name)
    except KeyError:
        return None
    errors = base.item_errors.get(spec.quantity)
    rows = next((r for label, r in labelled_rows(result, spec) if label == name), None)
    if not errors or rows is None:
        return None
    current_error = rows["predicted"].to_numpy(float) - rows["reference"].to_numpy(float)
    shared = (rows["status"] == "ok").to_numpy() & np.isfinite(current_error) & rows["id"].isin(errors).to_numpy()
    if not shared.any():
        return None
    rows = rows[shared]
    baseline_error = np.array([errors[i] for i in rows["id"]], dtype=float)
    return paired_worsening(rows, baseline_error, spec.statistic, spec.direction, allowed,
                            key=(base.label, base.task, name), resample_by=result.resample_by)


Z_TWO_SIDED_95 = float(norm.ppf(0.975))
Z_POWER_80 = float(norm.ppf(0.80))


def paired_worsening(rows: pd.DataFrame, baseline_error: np.ndarray, statistic: str, direction: str, allowed: float,
                     *, key: tuple[str, ...], resample_by: str | None = None, n_resamples: int = 1000,
                     seed: int = 0) -> Paired:
    """The worsening of a metric from the baseline to the current run, on the same items.

    ``rows`` are the current run's scored rows of the metric (id, predicted, reference, and the group column
    of ``resample_by``); ``baseline_error`` the baseline's signed errors of the same items, in that order. Both
    runs are scored against the current references (the gate has checked they are the baseline's), and the
    items are resampled jointly (a paired bootstrap: the same counts for both runs, drawn by
    ``bootstrap.paired_statistics`` as for the leaderboard's pairs, by unit and by ``resample_by`` group). For
    the MAE the worsening of a resample is the mean of the per-item differences of |error|; the bootstrap rather than a
    t-interval because it serves every statistic (RMSE, R², a signed mean error's size, max) and resamples
    torsion profiles and frameworks as units.

    A regression is caught when the interval excludes zero (worsening > z₀.₉₇₅·SE) and the worsening exceeds
    the tolerance ``allowed``, so the smallest worsening caught with 80% power at this item count is

        detectable = max(z₀.₉₇₅ · SE, allowed) + z₀.₈ · SE

    with SE the bootstrap standard error of the worsening (for the MAE ≈ sd(per-item |error| difference) / √n),
    i.e. (z₀.₉₇₅ + z₀.₈) · SE = 2.80 · SE when the tolerance is below the noise (normal approximation,
    alpha 0.05 two-sided). Where the differences have no spread (a deterministic model rerun unchanged) SE is
    the bootstrap standard error of the baseline's own metric: the figure for a change that moves each item's
    error by as much as the errors vary. With one item nothing is resampled, and no figure is given.
    """
    reference = rows["reference"].to_numpy(float)
    # both as reference + error, so that equal errors give equal values to the last bit
    current = reference + (rows["predicted"].to_numpy(float) - reference)
    (now_value, now_replicates), (then_value, then_replicates) = paired_statistics(
        rows, [current, reference + baseline_error], statistic, key=key, n_resamples=n_resamples, seed=seed,
        resample_by=resample_by)
    worse_by = worsening(then_value, now_value, statistic, direction)
    replicates = worsening(then_replicates, now_replicates, statistic, direction)
    replicates = replicates[np.isfinite(replicates)]
    if len(replicates) < 2:
        return Paired(len(rows), worse_by, math.nan, math.nan, math.nan)
    low, high = np.percentile(replicates, [2.5, 97.5])
    se = float(np.std(replicates, ddof=1))
    if se <= _ROUNDING * max(1.0, abs(then_value)):  # no spread of differences (a rerun of the same model)
        baseline_replicates = then_replicates[np.isfinite(then_replicates)]
        se = float(np.std(baseline_replicates, ddof=1)) if len(baseline_replicates) > 1 else math.nan
    detectable = max(Z_TWO_SIDED_95 * se, allowed) + Z_POWER_80 * se if len(rows) > 1 else math.nan
    return Paired(len(rows), float(worse_by), float(low), float(high), detectable)


def worsening(old, new, statistic: str, direction: str):
    """How much worse ``new`` is than ``old``, in the metric's own unit (negative: better); numbers or arrays."""
    if direction == "higher":
        return old - new
    if statistic == "mean_error":
        return abs(new) - abs(old)
    return new - old


def table_rows(checks: list[Check]) -> list[list[str]]:
    return [[c.status, c.label, c.task, c.check, c.baseline, c.current, c.allowed, c.detectable, c.note]
            for c in checks]


TABLE_HEADER = ["status", "model", "task", "check", "baseline", "current", "allowed worsening",
                "detectable (80% power)", "note"]


def junit_xml(checks: list[Check]) -> str:
    """One JUnit test case per check, so CI systems show each regression by name. Labels and task names come
    from results files: they pass through ``printable``, since XML 1.0 cannot hold control characters (not
    even escaped) and a lone surrogate cannot be written at all."""
    failures = sum(c.status == FAIL for c in checks)
    suites = ET.Element("testsuites", name="omni-bench gate", tests=str(len(checks)), failures=str(failures))
    suite = ET.SubElement(suites, "testsuite", name="omni-bench gate", tests=str(len(checks)),
                          failures=str(failures), errors="0", skipped="0")
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname=printable(f"omni-bench.{c.label}.{c.task}"),
                             name=printable(c.check), time="0")
        detail = f"baseline {c.baseline}, current {c.current}, allowed worsening {c.allowed or '-'}"
        if c.detectable:
            detail += f", smallest worsening detected with 80% power {c.detectable}"
        detail = f"{detail}; {c.note}".strip()
        if c.status == FAIL:
            ET.SubElement(case, "failure", message=printable(c.note or "regression"),
                          type="regression").text = printable(detail)
        else:
            ET.SubElement(case, "system-out").text = printable(detail)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
