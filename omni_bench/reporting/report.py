"""The report: one self-contained HTML file (figures embedded) and a Markdown summary beside it."""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from . import plots
from .bootstrap import LEVEL, N_RESAMPLES, SEED, bootstrap
from .leaderboard import Leaderboard, build, rank_label
from .load import TaskResult
from .tables import metric_table, primary_metric
from .text import VERSION_HEADER, fmt, fmt_ci, html_table, img, markdown_table, page, run_commands, versions

WORST_SHOWN = 5
METRIC_HEADER = ["model", "metric", f"value [{LEVEL:.0%} CI]", "unit", "n", "failed"]


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


def _parity(task: str, quantity: str, results: list[TaskResult], n_resamples: int, seed: int) -> bytes:
    panels = []
    for r in results:
        ok, failed = _scored(r, quantity)
        stats = {s: bootstrap(ok, s, key=(task, quantity, s), n_resamples=n_resamples, seed=seed,
                              resample_by=r.resample_by)
                 for s in ("mae", "rmse", "r2")}
        panels.append(plots.ParityPanel(r.label, ok, failed, stats["mae"], stats["rmse"], stats["r2"]))
    unit = str(results[0].predictions.loc[results[0].predictions["quantity"] == quantity, "unit"].iloc[0])
    return plots.parity_figure(f"{task}: {quantity}", quantity, unit, panels)


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


def _suite_figures(suite: str, tasks: list[str], by_task: dict[str, list[TaskResult]],
                   board: Leaderboard) -> list[str]:
    panels = []
    for task in tasks:
        spec = primary_metric(by_task[task][0].metric_specs)
        if spec.quantity not in plotted_quantities(by_task[task][0]):
            continue  # no reference to be wrong against (timings)
        errors = {}
        for r in by_task[task]:
            ok, _ = _scored(r, spec.quantity)
            errors[r.label] = (ok["predicted"] - ok["reference"]).to_numpy(float)
        unit = by_task[task][0].predictions.loc[by_task[task][0].predictions["quantity"] == spec.quantity, "unit"]
        panels.append((task, str(unit.iloc[0]) if len(unit) else "", errors))
    out = [img(plots.error_distribution_figure(f"{suite}: error distributions (headline quantity)", panels),
               f"error distributions of suite {suite}")] if panels else []
    mine = board.tasks[board.tasks["task"].isin(tasks)]
    if len(set(mine["label"])) > 1:
        out.append(img(plots.normalised_figure(f"{suite}: headline error / largest among models", mine),
                       f"normalised errors of suite {suite}"))
    return out


def channel_matrices(results: list[TaskResult], board: Leaderboard) -> list[tuple[str, bytes]]:
    """For every model with several channels among the results: channels x tasks, best channel framed."""
    out = []
    families: dict[str, set[str]] = {}
    for r in results:
        if r.channel:
            families.setdefault(r.family, set()).add(r.label)
    for family, labels in sorted(families.items()):
        if len(labels) < 2:
            continue
        rows = board.tasks[board.tasks["label"].isin(labels)]
        errors = rows.pivot(index="channel", columns="task", values="error")
        largest = errors.max(axis=0).replace(0, np.nan)
        normalised = errors / largest
        values = rows.pivot(index="channel", columns="task", values="value")
        text = values.apply(lambda column: column.map(lambda v: fmt(v, 3)))
        best = {task: errors[task].idxmin() for task in errors.columns if errors[task].notna().any()}
        title = f"{family}: headline error per channel and task"
        out.append((family, plots.channel_heatmap(title, normalised, best, text.fillna("n/a"))))
    return out


def build_report(results: list[TaskResult], title: str, suites: list[str] | None = None,
                 n_resamples: int = N_RESAMPLES, seed: int = SEED, command: str = "") -> Report:
    metrics, replicates = metric_table(results, n_resamples, seed)
    board = build(metrics, replicates)
    by_task: dict[str, list[TaskResult]] = {}
    for r in sorted(results, key=lambda r: r.label):
        by_task.setdefault(r.task, []).append(r)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    intro = (f"omni-bench {__version__}, {stamp}. {len({r.label for r in results})} model variants, "
             f"{len(by_task)} tasks. Intervals: bootstrap {LEVEL:.0%}, {n_resamples} resamples, seed {seed}, "
             "resampling items (whole reactions, systems and torsion profiles where a task has them).")
    body = [f"<h1>{html.escape(title)}</h1>", f"<p class=\"note\">{html.escape(intro)}</p>"]
    md = [f"# {title}", "", intro, "", "Figures: see the HTML report beside this file.", ""]

    summary = [[r["task"], r["metric"], r["label"], fmt_ci(r["value"], r["ci_low"], r["ci_high"]), r["unit"],
                rank_label(None if pd.isna(r["rank"]) else int(r["rank"]), bool(r["tied"])), str(r["task_n_failed"])]
               for _, r in board.tasks.sort_values(["task", "error", "label"]).iterrows()]
    summary_header = ["task", "headline", "model", f"value [{LEVEL:.0%} CI]", "unit", "rank", "failed items"]
    body += ["<h2>Summary</h2>", html_table(summary_header, summary)]
    md += ["## Summary", "", markdown_table(summary_header, summary), ""]

    for suite, tasks in _suites(results, suites or []).items():
        body += [f"<h2>Suite {html.escape(suite)}</h2>", *_suite_figures(suite, tasks, by_task, board)]

    matrices = channel_matrices(results, board)
    if matrices:
        body.append("<h2>Channel matrix</h2>")
        body += [img(png, f"channel matrix of {family}") for family, png in matrices]

    for task, task_results in sorted(by_task.items()):
        record = task_results[0].record["task"]
        description = (record.get("config") or {}).get("description", "")
        body += [f"<h2>Task {html.escape(task)} (v{task_results[0].task_version})</h2>",
                 f"<p>{html.escape(description)}</p><p class=\"note\">Reference: "
                 f"{html.escape(record.get('level_of_theory', ''))}; {html.escape(record.get('citation', ''))}</p>",
                 html_table(METRIC_HEADER, _metric_rows(metrics[metrics["task"] == task]))]
        md += [f"## {task}", "", markdown_table(METRIC_HEADER, _metric_rows(metrics[metrics["task"] == task])), ""]
        for quantity in plotted_quantities(task_results[0]):
            body.append(img(_parity(task, quantity, task_results, n_resamples, seed), f"parity plot {task} {quantity}"))
            worst = [row for r in task_results for row in _worst(r, quantity)]
            if not worst:
                continue
            worst_header = ["model", "item", "predicted", "reference", "error"]
            body += [f"<h3>Largest errors: {html.escape(quantity)}</h3>", html_table(worst_header, worst)]
            md += [f"Largest errors ({quantity}):", "",
                   markdown_table(worst_header, [row for r in task_results for row in _worst(r, quantity, 3)]), ""]
        failures = [row for r in task_results for row in _failures(r)]
        if failures:
            body += ["<h3>Failures (first 20 per model)</h3>", html_table(["model", "item", "error"], failures)]
    provenance = ["<h2>How these results were produced</h2>",
                  "<pre>" + html.escape("\n".join([*run_commands(results), command])) + "</pre>",
                  html_table(VERSION_HEADER, versions(results))]
    body += provenance
    md += ["## How these results were produced", "", "```bash", *run_commands(results), command, "```", "",
           markdown_table(VERSION_HEADER, versions(results)), ""]
    return Report(page(title, "\n".join(body)), "\n".join(md))


def write_report(report: Report, stem: Path) -> tuple[Path, Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    html_path, md_path = Path(f"{stem}.html"), Path(f"{stem}.md")
    html_path.write_text(report.html)
    md_path.write_text(report.markdown.replace("the HTML report beside this file",
                                               f"[{html_path.name}]({html_path.name})"))
    return html_path, md_path
