"""The leaderboard page's own weights: the reader sets a weight per domain and per task, and the page ranks
the models again, offline, by the same rules as the Overall table (``leaderboard._domains`` and
``_overall``): a domain score is the weighted mean normalised error of the domain's tasks a model has, the
overall score the weighted mean of its domain scores, and ranks come from paired tests of the overall scores
at ``PAIR_LEVEL`` among models with the same domains. The page carries each (model, task)'s normalised error
and its bootstrap replicates (float32) so the tests can be redone in the browser (``static/weights.js``);
with every weight 1 it gives the Overall table. The weights live in the URL (``#w.molecules=2&t.s22=0``)."""

from __future__ import annotations

import base64
from importlib.resources import files

import numpy as np

from ..taskspec import DOMAINS
from .bootstrap import LEVEL
from .leaderboard import PAIR_LEVEL, Leaderboard
from .text import html_text, script_json


def data(board: Leaderboard) -> dict | None:
    """What the page's script reads: domains, tasks with their domain, labels, and per (label, task) cell its
    normalised error with its replicates (one little-endian float32 block, cell after cell)."""
    rows = board.tasks[np.isfinite(board.tasks["norm"].to_numpy(float)) & board.tasks["domain"].notna()]
    if rows["label"].nunique() < 2:
        return None
    domains = [d for d in DOMAINS if d in set(rows["domain"])]
    tasks = sorted({(r["task"], r["domain"]) for _, r in rows.iterrows()},
                   key=lambda t: (domains.index(t[1]), t[0]))
    labels = sorted(set(rows["label"]))
    task_index = {task: i for i, (task, _) in enumerate(tasks)}
    cells, blocks = [], []
    for _, r in rows.sort_values(["label", "task"]).iterrows():
        cells.append([labels.index(r["label"]), task_index[r["task"]], float(r["norm"])])
        blocks.append(np.asarray(board.replicates[(r["label"], r["task"])], dtype="<f4"))
    return {"level": PAIR_LEVEL, "interval": LEVEL, "domains": domains, "tasks": [list(t) for t in tasks],
            "labels": labels, "cells": cells, "n": len(blocks[0]),
            "replicates": base64.b64encode(np.concatenate(blocks).tobytes()).decode("ascii")}


def _input(kind: str, name: str) -> str:
    return (f'<label>{html_text(name)} <input type="number" min="0" step="0.5" value="1" '
            f'data-weight="{kind}" data-name="{html_text(name)}"></label>')


def section(board: Leaderboard) -> list[str]:
    """The weights' controls, the re-ranked table the script fills, the data and the script."""
    found = data(board)
    if found is None:
        return []
    domain_inputs = " ".join(_input("domain", d) for d in found["domains"])
    task_lines = "".join(
        f"<p><b>{html_text(domain)}</b>: " + " ".join(_input("task", t) for t, d in found["tasks"] if d == domain)
        + "</p>" for domain in found["domains"])
    payload = script_json(found)
    script = files("omni_bench.reporting").joinpath("static/weights.js").read_text()
    return [
        "<h2>Your weights</h2>",
        '<p class="note">Set how much each domain, and each task within its domain, counts: the table below '
        "ranks the models again in the page by the Overall table's rules (weighted means of normalised errors, "
        "paired tests of the weighted overall scores at the same level, among models with the same domains; a "
        "weight of 0 leaves a domain or task out). With every weight 1 it is the Overall table. The weights are "
        "kept in the address, so a link opens the same ranking.</p>",
        f'<div id="weights"><p>Domains: {domain_inputs} <button type="button" id="weights-reset">all 1</button>'
        f"</p><details><summary>Tasks</summary>{task_lines}</details></div>",
        '<table id="weighted" class="results"><thead><tr><th>rank (range)</th><th>model</th>'
        f"<th>weighted score [{LEVEL:.0%} CI]</th><th>domains</th></tr></thead><tbody></tbody></table>",
        f'<script type="application/json" id="weights-data">{payload}</script>',
        f"<script>{script}</script>",
    ]
