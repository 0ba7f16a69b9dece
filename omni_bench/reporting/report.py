"""The report: one self-contained, interactive HTML file (plotly figures, the sortable results table) and a
Markdown summary beside it. Every interval shown, in a table or a figure, is read from the one metric table
(``tables.metric_table``), so a plot and a table never disagree."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..safe_text import printable
from ..version import __version__
from . import figures, physicality_plots
from .bootstrap import LEVEL, N_RESAMPLES, SEED, bootstrap
from .leaderboard import Leaderboard, annotate, build, row_rank, warning_text
from .leaderboard_output import channel_matrix_html
from .load import TaskResult
from .results_table import results_table
from .results_table import script as table_script
from .tables import metric_table, primary_metric
from .text import (
    VERSION_HEADER,
    fmt,
    fmt_ci,
    html_table,
    html_text,
    markdown_table,
    md_text,
    page,
    run_commands,
    versions,
)

WORST_SHOWN = 5
METRIC_HEADER = ["model", "metric", f"value [{LEVEL:.0%} CI]", "unit", "n", "failed"]
PARITY_STATISTICS = ("mae", "rmse", "r2")


@dataclass
class Report:
    html: str
    markdown: str


def plotted_quantities(result: TaskResult) -> list[str]:
    """Quantities worth a parity plot: a finite reference that varies (not flags whose reference is 0)."""
    frame = result.predictions
    chosen = []
    for quantity in dict.fromkeys(frame["quantity"]):
        reference = frame.loc[frame["quantity"] == quantity, "reference"].to_numpy(float)
        if len(reference) and np.isfinite(reference).all() and np.ptp(reference) > 0:
            chosen.append(quantity)
    return chosen


def _scored(result: TaskResult, quantity: str) -> tuple[pd.DataFrame, int]:
    rows = result.predictions[result.predictions["quantity"] == quantity]
    ok = rows[rows["status"] == "ok"]
    return ok, len(rows) - len(ok)


def _unit(result: TaskResult, quantity: str) -> str:
    units = result.predictions.loc[result.predictions["quantity"] == quantity, "unit"]
    return str(units.iloc[0]) if len(units) else ""


def parity_statistics(result: TaskResult, quantity: str, metrics: pd.DataFrame, n_resamples: int,
                      seed: int) -> dict[str, tuple[float, float, float]]:
    """MAE, RMSE and R² of one quantity with their intervals: the metric table's row where the task file
    names that metric (so the number is the table's), a bootstrap of the same rows otherwise."""
    mine = metrics[(metrics["label"] == result.label) & (metrics["task"] == result.task)
                   & (metrics["quantity"] == quantity) & ~metrics["metric"].str.contains("[", regex=False)]
    ok, _ = _scored(result, quantity)
    out = {}
    for statistic in PARITY_STATISTICS:
        row = mine[mine["statistic"] == statistic]
        if len(row):
            out[statistic] = (float(row["value"].iloc[0]), float(row["ci_low"].iloc[0]),
                              float(row["ci_high"].iloc[0]))
        else:
            interval = bootstrap(ok, statistic, key=(result.task, quantity, statistic), n_resamples=n_resamples,
                                 seed=seed, resample_by=result.resample_by)
            out[statistic] = (interval.value, interval.low, interval.high)
    return out


def _parity_section(task: str, quantity: str, results: list[TaskResult], metrics: pd.DataFrame,
                    look: dict[str, figures.Style], n_resamples: int, seed: int) -> list[str]:
    unit = _unit(results[0], quantity)
    panels = {r.label: _scored(r, quantity)[0] for r in results}
    figure = figures.parity_figure(f"{task}: {quantity} (hover a point for its item)", quantity, unit, panels,
                                   look)
    header = ["model", "n scored", "failed", *(f"{name} ({unit}) [{LEVEL:.0%} CI]" for name in ("MAE", "RMSE")),
              f"R² (dimensionless) [{LEVEL:.0%} CI]"]
    rows = []
    for r in results:
        stats = parity_statistics(r, quantity, metrics, n_resamples, seed)
        ok, failed = _scored(r, quantity)
        rows.append([r.label, str(len(ok)), str(failed), *(fmt_ci(*stats[s]) for s in PARITY_STATISTICS)])
    return [figures.figure_html(figure, f"parity-{_slug(task)}-{_slug(quantity)}"), html_table(header, rows)]


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text)


def _worst(result: TaskResult, quantity: str, count: int = WORST_SHOWN) -> list[list[str]]:
    ok, _ = _scored(result, quantity)
    ok = ok.assign(size=(ok["predicted"] - ok["reference"]).abs()).sort_values("size", ascending=False)
    return [[result.label, r["id"], fmt(r["predicted"]), fmt(r["reference"]), fmt(r["predicted"] - r["reference"])]
            for _, r in ok.head(count).iterrows()]


def _failures(result: TaskResult, count: int = 20) -> list[list[str]]:
    failures = result.record.get("failures") or []
    return [[result.label, f["item_id"], str(f.get("error") or "")[:160]] for f in failures[:count]]


def _metric_rows(metrics: pd.DataFrame) -> list[list[str]]:
    return [[r["label"], r["metric"], fmt_ci(r["value"], r["ci_low"], r["ci_high"]), r["unit"], str(r["n"]),
             str(r["n_failed"])] for _, r in metrics.iterrows()]


def _suites(results: list[TaskResult], chosen: list[str]) -> dict[str, list[str]]:
    suites: dict[str, list[str]] = {}
    for r in results:
        for suite in r.suites:
            if not chosen or suite in chosen:
                suites.setdefault(suite, [])
                if r.task not in suites[suite]:
                    suites[suite].append(r.task)
    return {s: sorted(t) for s, t in sorted(suites.items())}


def _suite_figures(suite: str, tasks: list[str], by_task: dict[str, list[TaskResult]], board: Leaderboard,
                   look: dict[str, figures.Style]) -> list[str]:
    """The suite's error distributions (headline quantity of each task) and its normalised-error chart."""
    panels = []
    for task in tasks:
        spec = primary_metric(by_task[task][0].metric_specs)
        if spec.quantity not in plotted_quantities(by_task[task][0]):
            continue  # no reference to be wrong against (timings)
        errors = {}
        for r in by_task[task]:
            ok, _ = _scored(r, spec.quantity)
            errors[r.label] = ok.assign(error=ok["predicted"] - ok["reference"])
        unit = _unit(by_task[task][0], spec.quantity)
        band = figures.accuracy_band(spec.quantity, unit)
        panels.append((f"{task} ({spec.quantity})", unit, band[0] if band else None, errors))
    out = []
    if panels:
        figure = figures.error_distribution_figure(f"{suite}: error distributions (headline quantity)", panels,
                                                   look)
        out.append(figures.figure_html(figure, f"errors-{_slug(suite)}"))
    mine = board.tasks[board.tasks["task"].isin(tasks)]
    if mine["label"].nunique() > 1:
        figure = figures.normalised_figure(f"{suite}: headline error / the task's null-predictor error", mine, look)
        out.append(figures.figure_html(figure, f"normalised-{_slug(suite)}"))
    return out


def build_report(results: list[TaskResult], title: str, suites: list[str] | None = None,
                 n_resamples: int = N_RESAMPLES, seed: int = SEED, command: str = "") -> Report:
    metrics, replicates = metric_table(results, n_resamples, seed)
    board = annotate(build(metrics, replicates), results)
    look = figures.styles(r.label for r in results)
    by_task: dict[str, list[TaskResult]] = {}
    for r in sorted(results, key=lambda r: r.label):
        by_task.setdefault(r.task, []).append(r)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    intro = (f"omni-bench {__version__}, {stamp}. {len({r.label for r in results})} model variants, "
             f"{len(by_task)} tasks. Intervals: bootstrap {LEVEL:.0%}, {n_resamples} resamples, seed {seed}, "
             "resampling items (whole reactions, systems and torsion profiles where a task has them).")
    body = [f"<h1>{html_text(title)}</h1>", f"<p class=\"note\">{html_text(intro)}</p>"]
    md = [f"# {md_text(title)}", "", intro, "", "Figures: see the HTML report beside this file.", ""]

    summary = [[r["task"], r["metric"], r["label"], fmt_ci(r["value"], r["ci_low"], r["ci_high"]), r["unit"],
                row_rank(r), str(r["task_n_failed"]),
                warning_text(r["warnings"])]
               for _, r in board.tasks.sort_values(["task", "error", "label"]).iterrows()]
    summary_header = ["task", "headline", "model", f"value [{LEVEL:.0%} CI]", "unit", "rank", "failed items",
                      "warnings"]
    body += ["<h2>Summary</h2>", results_table(board.tasks)]
    md += ["## Summary", "", markdown_table(summary_header, summary), ""]

    for suite, tasks in _suites(results, suites or []).items():
        body += [f"<h2>Suite {html_text(suite)}</h2>", *_suite_figures(suite, tasks, by_task, board, look)]
    body += channel_matrix_html(board)

    for task, task_results in sorted(by_task.items()):
        record = task_results[0].record["task"]
        description = (record.get("config") or {}).get("description", "")
        body += [f"<h2>Task {html_text(task)} (v{task_results[0].task_version})</h2>",
                 f"<p>{html_text(description)}</p><p class=\"note\">Reference: "
                 f"{html_text(record.get('level_of_theory', ''))}; {html_text(record.get('citation', ''))}</p>",
                 html_table(METRIC_HEADER, _metric_rows(metrics[metrics["task"] == task]))]
        md += [f"## {md_text(task)}", "", markdown_table(METRIC_HEADER, _metric_rows(metrics[metrics["task"] == task])),
               ""]
        body += physicality_plots.task_figures(task, task_results, look)
        for quantity in plotted_quantities(task_results[0]):
            body += _parity_section(task, quantity, task_results, metrics, look, n_resamples, seed)
            unit = _unit(task_results[0], quantity)
            worst_header = ["model", "item", f"predicted ({unit})", f"reference ({unit})", f"error ({unit})"]
            worst = [row for r in task_results for row in _worst(r, quantity)]
            if not worst:
                continue
            body += [f"<h3>Largest errors: {html_text(quantity)}</h3>", html_table(worst_header, worst)]
            md += [f"Largest errors ({md_text(quantity)}):", "",
                   markdown_table(worst_header, [row for r in task_results for row in _worst(r, quantity, 3)]), ""]
        failures = [row for r in task_results for row in _failures(r)]
        if failures:
            body += ["<h3>Failures (first 20 per model)</h3>", html_table(["model", "item", "error"], failures)]
    body += ["<h2>How these results were produced</h2>",
             "<pre>" + "\n".join(map(html_text, [*run_commands(results), command])) + "</pre>",
             html_table(VERSION_HEADER, versions(results))]
    md += ["## How these results were produced", "", "```bash", *map(printable, [*run_commands(results), command]),
           "```", "",
           markdown_table(VERSION_HEADER, versions(results)), ""]
    text = "\n".join(body)
    plotly = figures.plotly_script() if "plotly-graph-div" in text else ""  # none for a timings-only report
    return Report(page(title, text, head=plotly, tail=table_script()), "\n".join(md))


def write_report(report: Report, stem: Path) -> tuple[Path, Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    html_path, md_path = Path(f"{stem}.html"), Path(f"{stem}.md")
    # a lone surrogate (from a command line's undecodable bytes) is written as its escape, never an error
    html_path.write_text(report.html, encoding="utf-8", errors="backslashreplace")
    md_path.write_text(report.markdown.replace("the HTML report beside this file",
                                               f"[{html_path.name}]({html_path.name})"),
                       encoding="utf-8", errors="backslashreplace")
    return html_path, md_path
