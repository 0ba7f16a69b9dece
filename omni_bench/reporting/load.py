"""Reading results folders: one ``TaskResult`` per results JSON and its predictions CSV."""

from __future__ import annotations

import io
import json
import math
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import OmniBenchError
from ..results_format import MAX_FILE_BYTES, reference_sha256
from ..safe_text import printable
from ..scoring import statistic
from ..taskspec import GateSpec, MetricSpec
from . import bundle
from .results_schema import check_record

DEFAULT_RESULTS_DIR = Path("omni-bench-results")
_PREDICTION_COLUMNS = ("id", "quantity", "predicted", "reference", "unit", "error", "status")


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
    #: the task's units (quantity -> unit) the values were scored in
    units: dict[str, str] = field(default_factory=dict)
    #: energy convention of the reference the model was scored against ('' for tasks with one reference)
    reference_convention: str = ""

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
            for m in raw.get("metrics") or []]


def gate_from_config(raw: dict) -> dict[str, GateSpec]:
    return {name: GateSpec(float(g.get("abs") or 0.0), float(g.get("rel") or 0.0))
            for name, g in (raw.get("gate") or {}).items()}


def read_capped(path: Path, what: str) -> bytes:
    """The bytes of a results file, which must be a regular file (not a link, a device or a pipe) of at most
    ``MAX_FILE_BYTES``: a crafted file must not make a command read /etc/shadow or /dev/zero."""
    path = Path(path)
    refusal = f"{path}: {what} must be a regular file of at most {MAX_FILE_BYTES // 2**20} MB"
    try:
        if path.is_symlink():
            raise OmniBenchError(f"{refusal}, not a symbolic link")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise OmniBenchError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OmniBenchError(f"{refusal}; this is not a regular file")
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise OmniBenchError(f"{refusal}; this one is larger")
    return data


def predictions_path(json_path: Path, name: str) -> Path:
    """The predictions CSV a results JSON names: a plain file name, beside the JSON."""
    if name in (".", "..") or any(c in name for c in "/\\\0") or Path(name).name != name:
        raise OmniBenchError(f"{json_path}: field 'predictions_file' must be the name of a file beside it "
                             f"(no folder, no '..'), got {name!r}; run that omni-bench run again to rewrite it")
    return Path(json_path).parent / name


def read_predictions(path: Path) -> pd.DataFrame:
    """The predictions CSV with ids and group labels kept as text (an element 'NA' must not become NaN)."""
    data = read_capped(path, "predictions file")
    try:
        frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, encoding="utf-8")
    except pd.errors.EmptyDataError:  # a run that scored nothing (e.g. --limit below one whole reaction)
        frame = pd.DataFrame(columns=_PREDICTION_COLUMNS, dtype=str)
    except UnicodeDecodeError as exc:
        raise OmniBenchError(f"{path}: predictions file is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except (ValueError, pd.errors.ParserError) as exc:
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


def read_record(json_path: Path) -> dict[str, Any]:
    """A results JSON, parsed and checked against the schema (``results_schema``)."""
    try:
        record = json.loads(read_capped(json_path, "results file").decode("utf-8"))
        json.dumps(record, ensure_ascii=False).encode("utf-8")  # a lone surrogate cannot be written anywhere
    except UnicodeError as exc:  # not UTF-8, or a lone surrogate (\ud800) in a string
        raise OmniBenchError(f"{json_path}: results file holds text that is not valid Unicode ({exc.reason}); "
                             "run that omni-bench run again to rewrite it") from None
    except (ValueError, RecursionError) as exc:  # not JSON, or nested deeper than any results file
        raise OmniBenchError(f"cannot read results file {json_path}: not JSON ({exc})") from None
    return check_record(Path(json_path), record)


def read_result(json_path: Path) -> TaskResult:
    """One results JSON and its predictions CSV, checked: the schema, where the CSV is, that its rows give the
    JSON's metrics and that its references are the ones the run recorded (``reference_sha256``)."""
    record = read_record(json_path)
    model, task, config = record["model"], record["task"], record.get("config") or {}
    fp = model.get("fingerprint") or {}
    raw = task.get("config") or {}
    csv_path = predictions_path(json_path, record["predictions_file"])
    result = TaskResult(
        label=model["label"], model=fp.get("model") or model["label"], channel=fp.get("channel"),
        d3=bool(fp.get("d3")), fingerprint_id=model.get("fingerprint_id") or "", task=task["name"],
        task_version=task["version"], suites=list(raw.get("suites") or []),
        metric_specs=metric_specs_from_config(raw), metrics=record["metrics"],
        predictions=read_predictions(csv_path), n_items=record["n_items"], n_failed=record["n_failed"],
        limit=config.get("limit"), record=record, path=Path(json_path), gate=gate_from_config(raw),
        inputs_hash=config.get("inputs_hash") or "", resample_by=raw.get("resample_by"),
        units=dict(task.get("units") or {}), reference_convention=config.get("reference_energy_convention") or "",
    )
    check_consistent(result)
    check_references(result)
    return result


def check_references(result: TaskResult) -> None:
    """The predictions CSV's reference column must be the one the run scored against, as recorded in the JSON
    (files written before ``reference_sha256`` was recorded are checked against their peers instead,
    ``comparable.check_references_agree``)."""
    recorded = result.record.get("reference_sha256")
    frame = result.predictions
    if recorded and reference_sha256(frame["id"], frame["quantity"], frame["reference"]) != recorded:
        raise OmniBenchError(
            f"{result.path}: the references in {result.record['predictions_file']} are not the ones this run "
            "scored against (their sha256 is not the recorded reference_sha256): the file was edited or replaced; "
            "run the same omni-bench run again to rewrite both")


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
        recorded = metric_value(stored)
        # null (or NaN in older files) is a metric of nothing: the CSV must give no number either
        same_value = (not math.isfinite(recorded) and not math.isfinite(value)) or math.isclose(
            recorded, value, rel_tol=1e-9, abs_tol=1e-12)
        expected = (stored.get("n", n), stored.get("n_failed", n_failed))
        if (n, n_failed) != expected or not same_value:
            raise OmniBenchError(
                f"{result.path}: metric {label} is {recorded!r} over {expected[0]} scored and {expected[1]} failed "
                f"rows, but {result.record['predictions_file']} gives {value!r} over {n} and {n_failed}: the two "
                "files do not belong together (truncated or edited?); run the same omni-bench run again to rewrite "
                "both")


def metric_value(metric: dict | None) -> float:
    """A metric's recorded value as a float: NaN where it is null (not computed), inf past a float's range."""
    value = (metric or {}).get("value")
    if value is None:
        return math.nan
    try:
        return float(value)
    except OverflowError:  # a whole number too large for a float
        return math.inf if value > 0 else -math.inf


def result_files(folder: Path) -> list[Path]:
    """Results JSONs of a folder written by ``run --out`` (``<folder>/<label>/<task>.json``), or one file; a
    results bundle is unpacked first (``bundle.open_bundle``)."""
    folder = Path(folder)
    if bundle.is_bundle(folder):
        folder = bundle.open_bundle(folder)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise OmniBenchError(f"results folder {folder} does not exist (write one with: omni-bench run ... "
                             f"--out {folder})")
    return sorted(p for p in folder.glob("*/*.json"))


def load_results(folders: list[Path], prefer: Path | None = None) -> list[TaskResult]:
    """Every result in the folders. Where two folders hold the same (label, task), the later folder wins, or the
    ``prefer`` folder whatever its place, and one line on stderr names both files: a user's own rerun joins the
    committed results. A folder named twice is read once. The same (label, task) twice inside one folder is an
    error, since either could be meant."""
    order = list(reversed({_resolved(f): Path(f) for f in reversed(folders)}.values()))  # at its last place
    chosen: list[Path] = []
    if prefer is not None:
        chosen = [f for f in order if _resolved(f) == _resolved(prefer)]
        if not chosen:
            raise OmniBenchError(f"--prefer {prefer} is not one of the results folders "
                                 f"({', '.join(map(str, order))}); pass it with --results too")
        order = [f for f in order if f not in chosen] + chosen
    found: dict[tuple[str, str], TaskResult] = {}
    origin: dict[tuple[str, str], Path] = {}
    for folder in order:
        for path in result_files(folder):
            try:
                result = read_result(path)
            except OmniBenchError as exc:
                raise OmniBenchError(bundle.shown(str(exc))) from None
            if result.key in found:
                earlier = found[result.key].path
                if _resolved(earlier) == _resolved(path):  # one file reached as itself and through its folder
                    continue
                if origin[result.key] == folder:
                    raise OmniBenchError(f"{result.label} on {result.task} is in both {earlier} and {path}, in "
                                         f"one results folder {folder}; remove one of the two")
                why = "--prefer" if folder in chosen else "the later --results wins"
                print(printable(f"note: {result.label} on {result.task}: {path} replaces {earlier} ({why})"),
                      file=sys.stderr)
            found[result.key], origin[result.key] = result, folder
    return list(found.values())


def _resolved(path: Path) -> Path:
    try:
        return Path(path).resolve()
    except OSError:  # a loop of links: compared as written
        return Path(path)


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
