"""Reading results folders: one ``TaskResult`` per results JSON and its predictions CSV."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import OmniBenchError
from ..scoring import statistic
from ..taskspec import GateSpec, MetricSpec

DEFAULT_RESULTS_DIR = Path("omni-bench-results")
_PREDICTION_COLUMNS = ("id", "quantity", "predicted", "reference", "unit", "error", "status")
_REQUIRED_KEYS = ("model", "task", "metrics", "n_items", "n_failed", "predictions_file")


@dataclass
class TaskResult:
    """One model variant's results on one task, as ``omni-bench run`` wrote them."""

    label: str  # the variant label: name[@channel][+d3]
    model: str  # the model card's name, shared by all channels of a multi-task model
    channel: str | None
    d3: bool
    fingerprint_id: str
    task: str
    task_version: int
    suites: list[str]
    metric_specs: list[MetricSpec]
    metrics: dict[str, dict]
    predictions: pd.DataFrame
    n_items: int
    n_failed: int
    limit: int | None
    record: dict[str, Any]
    path: Path
    gate: dict[str, GateSpec] = field(default_factory=dict)
    #: hash of the task's protocol, parameters and data the values come from ('' in older results files)
    inputs_hash: str = ""
    #: the group resampled as a whole in bootstrap intervals (the task file's ``resample_by``)
    resample_by: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.label, self.task

    @property
    def family(self) -> str:
        """The model a channel belongs to, with the D3 flag (channels are compared within a family)."""
        return self.model + ("+d3" if self.d3 else "")

    def metric_spec(self, name: str) -> MetricSpec:
        base = name.split("[", 1)[0]
        for spec in self.metric_specs:
            if spec.name == base:
                return spec
        raise KeyError(name)


def metric_specs_from_config(raw: dict) -> list[MetricSpec]:
    return [MetricSpec(m["name"], m["quantity"], m["statistic"], m["direction"], m.get("group_by"))
            for m in raw.get("metrics", [])]


def gate_from_config(raw: dict) -> dict[str, GateSpec]:
    return {name: GateSpec(float(g.get("abs", 0.0)), float(g.get("rel", 0.0)))
            for name, g in (raw.get("gate") or {}).items()}


def read_predictions(path: Path) -> pd.DataFrame:
    """The predictions CSV with ids and group labels kept as text (an element 'NA' must not become NaN)."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:  # a run that scored nothing (e.g. --limit below one whole reaction)
        frame = pd.DataFrame(columns=_PREDICTION_COLUMNS, dtype=str)
    except UnicodeDecodeError as exc:
        raise OmniBenchError(f"{path}: predictions file is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except (OSError, pd.errors.ParserError) as exc:
        raise OmniBenchError(f"cannot read predictions {path}: {exc}") from None
    missing = set(_PREDICTION_COLUMNS) - set(frame.columns)
    if missing:
        raise OmniBenchError(f"{path}: not a predictions file (missing columns: {', '.join(sorted(missing))})")
    for column in ("predicted", "reference", "error"):
        try:
            frame[column] = pd.to_numeric(frame[column].replace("", np.nan), errors="raise")
        except (ValueError, TypeError) as exc:
            raise OmniBenchError(f"{path}: column {column!r} holds a value that is not a number ({exc})") from None
    return frame


def read_result(json_path: Path) -> TaskResult:
    try:
        record = json.loads(Path(json_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8
        raise OmniBenchError(f"cannot read results file {json_path}: {exc}") from None
    if not isinstance(record, dict) or any(k not in record for k in _REQUIRED_KEYS):
        raise OmniBenchError(f"{json_path}: not a results file written by omni-bench run (needs keys "
                             f"{', '.join(_REQUIRED_KEYS)})")
    model, task = record["model"], record["task"]
    fp = model.get("fingerprint") or {}
    raw = task.get("config") or {}
    result = TaskResult(
        label=model["label"], model=fp.get("model") or model["label"], channel=fp.get("channel"),
        d3=bool(fp.get("d3")), fingerprint_id=model.get("fingerprint_id", ""), task=task["name"],
        task_version=int(task["version"]), suites=list(raw.get("suites", [])),
        metric_specs=metric_specs_from_config(raw), metrics=record["metrics"],
        predictions=read_predictions(Path(json_path).parent / record["predictions_file"]),
        n_items=int(record["n_items"]), n_failed=int(record["n_failed"]),
        limit=(record.get("config") or {}).get("limit"), record=record, path=Path(json_path),
        gate=gate_from_config(raw), inputs_hash=(record.get("config") or {}).get("inputs_hash") or "",
        resample_by=raw.get("resample_by"),
    )
    check_consistent(result)
    return result


def check_consistent(result: TaskResult) -> None:
    """The one check that a results JSON and its predictions CSV belong together, for every command that
    reads results (report, leaderboard, gate): each metric's scored and failed row counts, and its value
    recomputed from the CSV, must be the JSON's. A truncated or edited CSV, or a CSV beside another run's
    JSON, is refused."""
    found = {}
    for spec in result.metric_specs:
        for label, rows in labelled_rows(result, spec):
            ok = rows[rows["status"] == "ok"]
            found[label] = (len(ok), len(rows) - len(ok),
                            statistic(spec.statistic, ok["predicted"].to_numpy(float), ok["reference"].to_numpy(float)))
    for label, stored in result.metrics.items():
        n, n_failed, value = found.get(label, (0, 0, math.nan))
        recorded = float(stored["value"]) if stored.get("value") is not None else math.nan
        same_value = (math.isnan(recorded) and math.isnan(value)) or math.isclose(recorded, value, rel_tol=1e-9,
                                                                                  abs_tol=1e-12)
        expected = (stored.get("n", n), stored.get("n_failed", n_failed))
        if (n, n_failed) != expected or not same_value:
            raise OmniBenchError(
                f"{result.path}: metric {label} is {recorded!r} over {expected[0]} scored and {expected[1]} failed "
                f"rows, but {result.record['predictions_file']} gives {value!r} over {n} and {n_failed}: the two "
                "files do not belong together (truncated or edited?); run the same omni-bench run again to rewrite "
                "both")


def result_files(folder: Path) -> list[Path]:
    """Results JSONs of a folder written by ``run --out`` (``<folder>/<label>/<task>.json``), or one file."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise OmniBenchError(f"results folder {folder} does not exist (write one with: omni-bench run ... "
                             f"--out {folder})")
    return sorted(p for p in folder.glob("*/*.json"))


def load_results(folders: list[Path]) -> list[TaskResult]:
    """Every result in the folders; the same (label, task) twice is an error, since either could be meant."""
    found: dict[tuple[str, str], TaskResult] = {}
    for folder in folders:
        for path in result_files(folder):
            result = read_result(path)
            if result.key in found:
                raise OmniBenchError(f"{result.label} on {result.task} is in both {found[result.key].path} and "
                                     f"{path}; pass only one of these results folders")
            found[result.key] = result
    return list(found.values())


def select(results: list[TaskResult], models: list[str] | None = None, tasks: list[str] | None = None,
           suites: list[str] | None = None, channel: str | None = None) -> list[TaskResult]:
    """Results whose label or model name is in ``models``, whose task is named or in a named suite."""
    chosen = []
    for r in results:
        if models and r.label not in models and r.model not in models and r.family not in models:
            continue
        if channel is not None and (r.channel or "") != channel:
            continue
        if (tasks or suites) and r.task not in (tasks or []) and not set(r.suites) & set(suites or []):
            continue
        chosen.append(r)
    return chosen


def labelled_rows(result: TaskResult, spec: MetricSpec) -> list[tuple[str, pd.DataFrame]]:
    """(metric label, every row, scored or failed) for one metric, split by group the way ``scoring.metrics``
    splits it."""
    frame = result.predictions
    mine = frame[frame["quantity"] == spec.quantity]
    if not spec.group_by:
        return [(spec.name, mine)]
    column = f"group_{spec.group_by}"
    labels = mine[column] if column in mine else pd.Series("", index=mine.index)
    return [(f"{spec.name}[{spec.group_by}={v}]", mine[labels == v]) for v in sorted(set(labels))]


def metric_rows(result: TaskResult, spec: MetricSpec) -> list[tuple[str, pd.DataFrame]]:
    """(metric label, scored rows) for one metric. Failed rows are left out, as the metric leaves them out;
    they are counted separately."""
    return [(label, rows[rows["status"] == "ok"]) for label, rows in labelled_rows(result, spec)]


def recomputed_metrics(result: TaskResult) -> dict[str, float]:
    """Every metric recomputed from the predictions CSV: the check that the CSV is what was scored."""
    out = {}
    for spec in result.metric_specs:
        for label, rows in metric_rows(result, spec):
            out[label] = statistic(spec.statistic, rows["predicted"].to_numpy(float),
                                   rows["reference"].to_numpy(float))
    return out
