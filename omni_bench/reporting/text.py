"""Plain-text, Markdown and HTML building blocks shared by reports, the leaderboard and the gate. Text from
results files goes through ``printable`` in every one of them (and is HTML-escaped in Markdown and HTML)."""

from __future__ import annotations

import html
import json
import math
import shlex
from collections import defaultdict

from ..safe_text import printable
from .load import TaskResult


def fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def fmt_ci(value: float, low: float, high: float, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    if low is None or not math.isfinite(low):
        return f"{value:.{digits}g}"
    return f"{value:.{digits}g} [{low:.{digits}g}, {high:.{digits}g}]"


def plain_table(header: list[str], rows: list[list[str]]) -> str:
    """An aligned text table for the terminal, every cell ``printable``."""
    header, rows = [printable(h) for h in header], [[printable(c) for c in r] for r in rows]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("-" * len(lines[0]))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def md_text(text) -> str:
    """Text in Markdown on one line: ``printable``, with HTML's special characters as entities, so that a label
    in a results file cannot put raw HTML into a page that renders the Markdown."""
    return html.escape(printable(str(text).replace("\n", " ")), quote=False)


def html_text(text) -> str:
    """Text in HTML: ``printable`` (a line break is a space, as HTML shows it), with markup escaped."""
    return html.escape(printable(str(text).replace("\n", " ")))


def _md_cell(text) -> str:
    return md_text(text).replace("|", "\\|")


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def script_json(value) -> str:
    """``value`` as JSON to embed in a ``<script type="application/json">``: every '<', '>' and '&' escaped
    (the same JSON string), so no name in it can end the element or open another."""
    text = json.dumps(value, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def html_table(header: list[str], rows: list[list[str]], css_class: str = "") -> str:
    head = "".join(f"<th>{html_text(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html_text(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1, h2, h3 { font-weight: 600; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } tbody tr:nth-child(even) { background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.results th { cursor: pointer; user-select: none; position: sticky; top: 0; }
table.results th[aria-sort="ascending"]::after { content: " \\25B2"; }
table.results th[aria-sort="descending"]::after { content: " \\25BC"; }
.scroll { max-height: 80vh; overflow: auto; }
.filters { display: flex; flex-wrap: wrap; gap: .4em 1.2em; align-items: center; margin: .6em 0; font-size: 14px; }
.warn { display: inline-block; border-radius: 3px; padding: 0 4px; margin: 1px; font-size: 12px; cursor: help;
        background: #fff3cd; border: 1px solid #e0c46c; }
.warn-in-domain { background: #e2e3ff; border-color: #8c8fd6; }
.warn-failed { background: #f8d7da; border-color: #d9959b; }
.figure { margin: 1em 0; } pre { white-space: pre-wrap; overflow-wrap: anywhere; }
table.results td:nth-child(-n+3) { white-space: nowrap; } table.results td:last-child { min-width: 11em; }
.note { color: #555; font-size: 13px; } code { background: #f3f3f3; padding: 0 3px; }
"""


def page(title: str, body: str, head: str = "", tail: str = "") -> str:
    """One self-contained page; ``head`` and ``tail`` are inline scripts (plotly.js, the table's script).
    The Content-Security-Policy allows inline code only: a report makes no network request."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data: blob:; "
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
            f"<title>{html_text(title)}</title><style>{STYLE}</style>{head}</head>\n<body>\n{body}\n{tail}"
            "\n</body></html>\n")


def run_commands(results: list[TaskResult]) -> list[str]:
    """The ``omni-bench run`` commands that reproduce the results, one per (label, settings)."""
    grouped: dict[tuple, list[str]] = defaultdict(list)
    for r in results:
        config = r.record.get("config") or {}
        grouped[(r.label, config.get("limit"), config.get("device", "auto"))].append(r.task)
    commands = []
    for (label, limit, device), tasks in sorted(grouped.items(), key=lambda kv: str(kv[0])):
        words = ["omni-bench", "run", "--model", label]
        for task in sorted(tasks):
            words += ["--task", task]
        if limit is not None:
            words += ["--limit", str(limit)]
        if device not in (None, "auto"):
            words += ["--device", str(device)]
        commands.append(shlex.join(words))
    return commands


def versions(results: list[TaskResult]) -> list[list[str]]:
    """Per label: fingerprint, checkpoint hash, model packages, omni-bench and Python versions, device."""
    seen: dict[str, list[str]] = {}
    for r in results:
        if r.label in seen:
            continue
        fp = r.record["model"].get("fingerprint") or {}
        env = r.record.get("environment") or {}
        packages = {**(env.get("packages") or {}), **(fp.get("packages") or {})}
        seen[r.label] = [
            r.label, r.fingerprint_id, (fp.get("checkpoint_sha256") or "-")[:16],
            ", ".join(f"{k} {v}" for k, v in sorted(packages.items())),
            str(r.record.get("omni_bench_version", "?")), str(env.get("python", "?")),
            str(env.get("device_name") or env.get("device") or "?"),
        ]
    return [seen[k] for k in sorted(seen)]


VERSION_HEADER = ["model", "fingerprint", "checkpoint sha256", "packages", "omni-bench", "python", "device"]
