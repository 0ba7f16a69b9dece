"""The leaderboard as a terminal table, Markdown, CSV and a self-contained HTML page."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from ..safe_text import printable
from ..taskspec import DOMAINS
from ..version import __version__
from . import figures, weights
from .bootstrap import LEVEL
from .leaderboard import (
    FAMILY_MODELS,
    NORMALISED_CAP,
    PAIR_LEVEL,
    Leaderboard,
    csv_frame,
    failed_text,
    row_rank,
    task_cell,
    warning_text,
)
from .load import TaskResult
from .results_table import results_table
from .results_table import script as table_script
from .text import (
    VERSION_HEADER,
    fmt_ci,
    html_table,
    html_text,
    markdown_table,
    md_text,
    page,
    plain_table,
    run_commands,
    versions,
)

EXPLANATION = (
    "Each task is scored on its headline metric (the first in its task file). Value: the headline on the task's "
    "common items, those every compared model scored (a model with no scored item is not compared), with a "
    f"bootstrap {LEVEL:.0%} interval; 'scored/common/total' gives each model's coverage. Rank: 1 + the number "
    "of models better than this one by a paired bootstrap (both models' errors on the same resamples of the "
    "items either scored, whole groups where the task resamples groups), each pair tested at the fixed "
    f"Bonferroni level {PAIR_LEVEL:.2g} (a family-wise error of {1 - LEVEL:.0%} over the pairs of up to "
    f"{FAMILY_MODELS} models, however many a table holds, so no model's arrival changes another pair's "
    "verdict); models no test separates share a rank, marked `=`. In brackets, the rank range: from that rank "
    "to the number of compared models minus those this one beats. A noisy model has a good rank (few models beat "
    "it significantly) and a wide range: read both. Rows are in order of the point estimate. "
    "A failed item counts against the model that failed it: in a pair it is scored at the larger of that "
    "model's own worst error on the task and the other model's error on it, and a model with failures is called "
    "better only if it is also better on the items both scored. Normalised: the model's headline error on all "
    "its items (a failed item counted at the larger of its own worst error and the null predictor's, or the "
    "pass threshold) divided by the task's fixed scale (its task file's: the error of predicting 0 or the "
    f"reference mean, or a pass threshold), so no other model moves it, and capped at {NORMALISED_CAP:g} so that "
    "no single task owns a domain score. Domain score: the mean normalised error over the domain's tasks the "
    "model has; overall score: the mean of its domain scores (lower is better). Overall ranks compare only "
    "models with the same domains ('of N': the models with those domains), by paired tests of the overall "
    "scores at the same level; 'missing' counts the compared tasks a model has no scored result for.")


def domain_names(board: Leaderboard) -> list[str]:
    return [d for d in DOMAINS if d in set(board.domains["domain"])]


def _overall_rows(board: Leaderboard) -> list[list[str]]:
    scores = {(r["label"], r["domain"]): fmt_ci(r["score"], r["score_low"], r["score_high"], 2)
              for _, r in board.domains.iterrows()}
    group_sizes = board.overall.groupby("coverage")["label"].transform("size")
    rows = []
    for (_, r), size in zip(board.overall.iterrows(), group_sizes, strict=True):
        rank = "-" if pd.isna(r["rank"]) else f"{row_rank(r)} of {size}"
        rows.append([rank, r["label"], fmt_ci(r["score"], r["score_low"], r["score_high"], 2),
                     *(scores.get((r["label"], d), "-") for d in domain_names(board)),
                     f"{r['domains']}", str(r["tasks_done"]), str(r["tasks_missing"])])
    return rows


def overall_header(board: Leaderboard) -> list[str]:
    return ["rank (range)", "model", "overall score (mean of domain scores)", *domain_names(board), "domains",
            "tasks", "missing"]


CHANNEL_NOTE = ("Which channel transfers to which domain (the question of the SevenNet-Omni and MACE-MH-1 "
                "papers): each channel (and D3 variant) of a multi-channel model on its domain scores (mean "
                "normalised error, lower is better) with their intervals; ★ marks the best channel of a domain, "
                "and the last column says whether a paired test of the best and the next (the same resamples of "
                f"each task's items) separates them at the level {PAIR_LEVEL:.2g}.")


def channel_tables(board: Leaderboard) -> list[tuple[str, list[str], list[list[str]]]]:
    """(model, header, rows) of each multi-channel model's channel x domain table."""
    out = []
    channels = board.channels
    if channels.empty:
        return out
    for model, mine in channels.groupby("model", sort=True):
        labels = sorted(set(mine["label"]))
        cells = {(r["domain"], r["label"]): ("★ " if r["best"] else "")
                 + fmt_ci(r["score"], r["score_low"], r["score_high"], 2) for _, r in mine.iterrows()}
        rows = []
        for domain in [d for d in DOMAINS if d in set(mine["domain"])]:
            best = mine[(mine["domain"] == domain) & mine["best"]].iloc[0]
            if not best["next"]:
                verdict = f"{best['label']} (the only channel scored)"
            elif best["separable"]:
                verdict = f"{best['label']}, separable from {best['next']} (p = {best['p_value']:.2g})"
            else:
                verdict = f"{best['label']} ≈ {best['next']}: not separable (p = {best['p_value']:.2g})"
            rows.append([domain, *(cells.get((domain, label), "-") for label in labels), verdict])
        out.append((str(model), ["domain", *labels, "best channel"], rows))
    return out


def _task_heading(group: pd.DataFrame) -> str:
    first = group.iloc[0]
    unit = "" if first["unit"] in ("", "1") else f" ({first['unit']})"
    return (f"{first['task']}: {first['metric']}{unit}, {first['direction']} is better; domain "
            f"{first['domain'] or 'none'}; scale: {first['scale_rule']}")


def coverage(row: pd.Series) -> str:
    """scored/common/total: the items this model scored, the task's common items and its items."""
    return f"{row['n']}/{row['n_common']}/{row['n_total']}"


def _task_rows(group: pd.DataFrame) -> list[list[str]]:
    rows = []
    for _, r in group.sort_values(["norm", "error", "label"], na_position="last").iterrows():
        n = coverage(r)
        label = r["label"] + (f" (vs {r['reference_convention']} reference)" if r.get("reference_convention") else "")
        rows.append([row_rank(r), label,
                     task_cell(r), fmt_ci(r["norm"], r["norm_low"], r["norm_high"], 2), n,
                     failed_text(r["n_total"] - r["n"], r.get("failure_kinds")), warning_text(r.get("warnings") or [])])
    return rows


TASK_HEADER = ["rank (range)", "model", f"common-item value [{LEVEL:.0%} CI]", "normalised [CI]", "scored/common/total",
               "failed", "warnings"]


def _wide(board: Leaderboard) -> tuple[list[str], list[list[str]]]:
    tasks = sorted(set(board.tasks["task"]))
    header = ["model", "score", "missing", *tasks]
    cells = {(r["label"], r["task"]): r for _, r in board.tasks.iterrows()}
    rows = []
    for _, o in board.overall.iterrows():
        row = [o["label"], fmt_ci(o["score"], o["score_low"], o["score_high"], 2), str(o["tasks_missing"])]
        for task in tasks:
            r = cells.get((o["label"], task))
            row.append("-" if r is None else f"{task_cell(r, 3, with_ci=False)} "
                       f"({row_rank(r, with_range=False)})")
        rows.append(row)
    return header, rows


def terminal(board: Leaderboard) -> str:
    parts = ["overall", plain_table(overall_header(board), _overall_rows(board))]
    for _, group in board.tasks.groupby("task", sort=True):
        parts += ["", printable(_task_heading(group)), plain_table(TASK_HEADER, _task_rows(group))]
    return "\n".join(parts)


def markdown(board: Leaderboard, results: list[TaskResult], command: str) -> str:
    header, rows = _wide(board)
    parts = [
        "# omni-bench leaderboard", "",
        f"Generated by omni-bench {__version__} on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with "
        f"`{printable(command)}`. Every number comes from the results files listed below; none is typed by hand.", "",
        EXPLANATION, "",
        "## Overall", "", markdown_table(overall_header(board), _overall_rows(board)), "",
        *_channel_markdown(board),
        "## All tasks at a glance", "", "Headline metric per task (rank in brackets); units and intervals below.",
        "", markdown_table(header, rows), "", "## Per task", ""]
    subsets = subset_notes(results)
    for task, group in board.tasks.groupby("task", sort=True):
        parts += [f"### {md_text(_task_heading(group))}", ""]
        if task in subsets:
            parts += [md_text(subsets[task]), ""]
        parts += [markdown_table(TASK_HEADER, _task_rows(group)), ""]
    parts += ["## How these results were produced", "", "```bash", *map(printable, run_commands(results)), "```", "",
              markdown_table(VERSION_HEADER, versions(results)), ""]
    return "\n".join(parts)


def _channel_markdown(board: Leaderboard) -> list[str]:
    tables = channel_tables(board)
    if not tables:
        return []
    parts = ["## Channels by domain", "", CHANNEL_NOTE, ""]
    for model, header, rows in tables:
        parts += [f"### {md_text(model)}", "", markdown_table(header, rows), ""]
    return parts


def _channel_html(board: Leaderboard) -> list[str]:
    tables = channel_tables(board)
    if not tables:
        return []
    out = ["<h2>Channels by domain</h2>", f'<p class="note">{html_text(CHANNEL_NOTE)}</p>']
    for model, header, rows in tables:
        out += [f"<h3>{html_text(model)}</h3>", html_table(header, rows)]
    return out


def html_page(board: Leaderboard, results: list[TaskResult], command: str) -> str:
    """The leaderboard as one interactive page: overall ranking, the sortable and filterable table of every
    result with its warnings, the normalised-error chart and a channel matrix per multi-task model."""
    body = [f"<h1>omni-bench leaderboard</h1><p class=\"note\">omni-bench {html_text(__version__)}, "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, <code>{html_text(command)}</code></p>",
            f"<p>{html_text(EXPLANATION.replace('`', ''))}</p>", "<h2>Overall</h2>",
            html_table(overall_header(board), _overall_rows(board)), *weights.section(board), *_channel_html(board),
            "<h2>All results</h2>", results_table(board.tasks)]
    charts = board_figures(board)
    body += charts
    body += pairwise_html(board)
    body += ["<h2>Reference levels of theory</h2>",
             html_table(["task", "suites", "reference level of theory", "items"], reference_rows(results))]
    body += ["<h2>How these results were produced</h2>",
             "<pre>" + "\n".join(map(html_text, run_commands(results))) + "</pre>",
             html_table(VERSION_HEADER, versions(results))]
    return page("omni-bench leaderboard", "\n".join(body), head=figures.plotly_script() if charts else "",
                tail=table_script())


VERDICT = {"better": "better", "worse": "worse", "": "≈"}


def pairwise_matrix(board: Leaderboard, task: str) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of one task's pairwise verdicts: the cell in row A, column B says whether A is better
    than, worse than or indistinguishable from (≈) B, with the paired difference in headline error (A − B) and
    its interval."""
    pairs = board.pairs[board.pairs["task"] == task]
    mine = board.tasks[(board.tasks["task"] == task) & board.tasks["rank"].notna()].sort_values(["rank", "label"])
    labels = list(mine["label"])
    cells = {}
    for _, p in pairs.iterrows():
        for row, column, sign in ((p["first"], p["second"], 1), (p["second"], p["first"], -1)):
            verdict = "" if not p["better"] else ("better" if p["better"] == row else "worse")
            low, high = sorted((sign * p["low"], sign * p["high"]))
            cells[(row, column)] = f"{VERDICT[verdict]} {sign * p['difference']:+.3g} [{low:+.3g}, {high:+.3g}]"
    rows = [[label, *("" if label == other else cells.get((label, other), "") for other in labels)]
            for label in labels]
    return ["model (row) vs (column)", *labels], rows


def pairwise_html(board: Leaderboard) -> list[str]:
    if board.pairs.empty:
        return []
    out = ["<h2>Pairwise comparisons</h2><p class=\"note\">Per task, each model (row) against each other model "
           f"(column): better, worse or ≈ (the paired test does not reach the level {PAIR_LEVEL:.2g}), then the "
           f"difference in headline error, row minus column (negative: the row model is better), with its "
           f"{LEVEL:.0%} paired bootstrap interval (uncorrected).</p>"]
    for task in sorted(set(board.pairs["task"])):
        header, rows = pairwise_matrix(board, task)
        out += [f"<h3>{html_text(task)}</h3>", html_table(header, rows, "pairwise")]
    return out


def reference_rows(results: list[TaskResult]) -> list[list[str]]:
    """Each task's reference level of theory, as its task file gives it (warnings compare against these), and
    whether its items are a CPU subset."""
    subsets = subset_notes(results)
    seen = {r.task: [r.task, ", ".join(r.suites), r.record["task"].get("level_of_theory", ""),
                     subsets.get(r.task, "all")] for r in results}
    return [seen[t] for t in sorted(seen)]


def subset_notes(results: list[TaskResult]) -> dict[str, str]:
    """For each task that is a CPU subset (its file's ``counts.subset_of``), one sentence saying of what."""
    notes = {}
    for r in results:
        counts = (r.record["task"].get("config") or {}).get("counts") or {}
        full = counts.get("subset_of")
        if full:
            name = counts.get("item_name", "items")
            notes[r.task] = (f"CPU subset: {counts['items']:,} of the {full['items']:,} {name} of {full['task']} "
                             "(run that task for the full set).")
    return notes


def board_figures(board: Leaderboard) -> list[str]:
    """The normalised-error chart (when there are models to compare) and the channel matrices, as HTML."""
    out = []
    if board.tasks["label"].nunique() > 1:
        figure = figures.normalised_figure("headline error / the task's null-predictor error", board.tasks,
                                           figures.styles(board.tasks["label"]))
        out += ["<h2>Normalised error</h2>", figures.figure_html(figure, "normalised")]
    return out + channel_matrix_html(board)


def channel_matrix_html(board: Leaderboard) -> list[str]:
    matrices = figures.channel_matrices(board.tasks)
    if not matrices:
        return []
    return ["<h2>Channel matrix</h2><p class=\"note\">Which training database transfers to which domain: each "
            "channel of a multi-task model on each task's headline metric, coloured relative to the worst channel "
            "of the task; hover for the value and its interval.</p>",
            *(figures.figure_html(fig, f"channels-{i}") for i, (_, fig) in enumerate(matrices))]


def write_all(board: Leaderboard, results: list[TaskResult], stem: Path, command: str) -> list[Path]:
    """``<stem>.md``, ``<stem>.csv`` and ``<stem>.html``."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [Path(f"{stem}{suffix}") for suffix in (".md", ".csv", ".html")]
    # a lone surrogate (from a command line's undecodable bytes) is written as its escape, never an error
    paths[0].write_text(markdown(board, results, command), encoding="utf-8", errors="backslashreplace")
    csv_frame(board).to_csv(paths[1], index=False, encoding="utf-8", errors="backslashreplace")
    paths[2].write_text(html_page(board, results, command), encoding="utf-8", errors="backslashreplace")
    return paths
