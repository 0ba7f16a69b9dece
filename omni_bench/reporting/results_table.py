"""The sortable, filterable results table of a report or leaderboard: one row per (model variant, task) on
the task's headline metric, with its interval, unit, rank and warnings. Sorting and filtering run in the
page (``static/results_table.js``) and keep their state in the URL."""

from __future__ import annotations

from importlib.resources import files

import numpy as np
import pandas as pd

from .bootstrap import LEVEL
from .leaderboard import failed_text, row_rank
from .text import fmt_ci, html_text

#: (data key, header, sort type) of each column; the key names the column in the URL (``#sort=norm&dir=desc``)
COLUMNS = [("model", "model", "text"), ("channel", "channel", "text"), ("task", "task", "text"),
           ("suites", "suites", "text"), ("metric", "headline metric (unit)", "text"),
           ("value", f"value on common items [{LEVEL:.0%} CI]", "number"), ("rank", "rank", "number"),
           ("norm", "normalised error (/ task scale)", "number"), ("n", "n scored", "number"),
           ("failed", "failed items", "number"), ("warnings", "warnings", "count")]
#: (data key, label) of each filter; a row matches when its value (or one of its '|'-separated values) is chosen
FILTERS = [("suite", "suite"), ("task", "task"), ("family", "model family"), ("channel", "channel"),
           ("warning", "warning")]
NO_CHANNEL = "(none)"


def script() -> str:
    return "<script>" + files("omni_bench.reporting").joinpath("static/results_table.js").read_text() + "</script>"


def _attr(text) -> str:
    return html_text(text)


def _cell(text, css: str = "") -> str:
    return f'<td class="{css}">{text}</td>' if css else f"<td>{text}</td>"


def _warnings_cell(warnings) -> str:
    marks = [f'<span class="warn warn-{w.kind}" title="{_attr(w.detail)}">{html_text(w.short)}</span>'
             for w in warnings]
    return _cell(" ".join(marks))


def _metric_with_unit(r: pd.Series) -> str:
    return r["metric"] if r["unit"] in ("", "1") else f"{r['metric']} ({r['unit']})"


def _row(r: pd.Series) -> str:
    channel = r["channel"] or NO_CHANNEL
    data = {"suite": "|".join(r["suites"]), "task": r["task"], "family": r["family"], "channel": channel,
            "warning": "|".join(sorted({w.kind for w in r["warnings"]}))}
    attrs = " ".join(f'data-{key}="{_attr(value)}"' for key, value in data.items())
    cells = [
        _cell(html_text(r["label"])), _cell(html_text(channel)), _cell(html_text(r["task"])),
        _cell(html_text(", ".join(r["suites"]))), _cell(html_text(_metric_with_unit(r))),
        _cell(html_text(fmt_ci(r["value"], r["ci_low"], r["ci_high"])), css="num"),
        _cell(row_rank(r)),
        _cell("n/a" if not np.isfinite(r["norm"]) else f"{r['norm']:.3g}", css="num"),
        _cell(str(r["n"]), css="num"),
        _cell(html_text(failed_text(r["task_n_failed"], r.get("failure_kinds"))), css="num"),
        _warnings_cell(r["warnings"]),
    ]
    return f"<tr {attrs}>{''.join(cells)}</tr>"


def _select(key: str, label: str, values: list[str]) -> str:
    options = '<option value="">all</option>' + "".join(
        f'<option value="{_attr(v)}">{html_text(v)}</option>' for v in values)
    return f'<label>{html_text(label)} <select data-filter="{key}" id="filter-{key}">{options}</select></label>'


def results_table(tasks: pd.DataFrame) -> str:
    """``tasks``: the leaderboard's per-(label, task) rows, annotated (family, suites, warnings)."""
    values = {
        "suite": sorted({s for suites in tasks["suites"] for s in suites}),
        "task": sorted(set(tasks["task"])),
        "family": sorted(set(tasks["family"])),
        "channel": sorted({c or NO_CHANNEL for c in tasks["channel"]}),
        "warning": sorted({w.kind for ws in tasks["warnings"] for w in ws}),
    }
    controls = " ".join(_select(key, label, values[key]) for key, label in FILTERS)
    head = "".join(f'<th data-key="{key}" data-type="{kind}">{html_text(title)}</th>'
                   for key, title, kind in COLUMNS)
    ordered = tasks.sort_values(["task", "error", "label"], na_position="last")
    body = "".join(_row(r) for _, r in ordered.iterrows())
    return (f'<div class="filters">{controls} <span id="results-count" class="note"></span></div>'
            '<p class="note">Click a column header to sort (again to reverse). Filters and sorting are kept in '
            "the address, so a link opens the same view. Hover a warning for its reason.</p>"
            f'<div class="scroll"><table id="results" class="results"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")
