"""Figures of the physicality suite for the per-run report: the dimer curves of the ``diatomics`` task, one
panel per pair of elements, one line per model variant (each channel its own line).

The curves come from the predictions CSV alone: the protocol writes every point as an unscored
``curve_energy`` row (id ``A-B@r``, E(r) minus the isolated atoms, in eV), so a report draws them without
recomputing anything. ``task_figures(task, results, look)`` is the one entry point the report calls per task;
it returns nothing for a task whose predictions have no such rows. Under the figure, each model's pairs with an
element it does not cover (``not_covered`` rows) are listed by name.
"""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from ase.data import atomic_numbers, covalent_radii
from plotly.subplots import make_subplots

from . import figures
from .load import TaskResult

QUANTITY = "curve_energy"
NOT_COVERED = "not_covered"
COLUMNS = 6
PANEL_HEIGHT = 190
#: the energy axis shows the well and the start of the wall: from below the deepest point to this far above 0
Y_ABOVE = 5.0


def curve_frame(results: list[TaskResult]) -> pd.DataFrame:
    """One row per computed point: label, pair, r (A), energy (eV, against the isolated atoms)."""
    frames = []
    for result in results:
        rows = result.predictions[(result.predictions["quantity"] == QUANTITY)
                                  & (result.predictions["status"] == "ok")]
        if rows.empty:
            continue
        parts = rows["id"].astype(str).str.rpartition("@")
        frames.append(pd.DataFrame({"label": result.label, "pair": parts[0].to_numpy(),
                                    "r": pd.to_numeric(parts[2], errors="coerce").to_numpy(float),
                                    "energy": rows["predicted"].to_numpy(float)}))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["label", "pair", "r", "energy"])
    return frame[np.isfinite(frame["r"].astype(float)) & np.isfinite(frame["energy"].astype(float))]


def diatomics_figure(frame: pd.DataFrame, look: dict[str, figures.Style]) -> go.Figure:
    """A grid of panels, one per pair (in the task's order), E(r) of every label in its report colour; each
    panel's energy axis spans the deepest well in MLIP Arena's range (``bonding_start``) to ``Y_ABOVE`` eV, so
    a hole at short range runs off the bottom of the panel (hovering shows its values)."""
    if frame.empty:
        raise ValueError("no dimer curve to plot (no successful curve_energy rows)")
    pairs = list(dict.fromkeys(frame["pair"]))
    rows = math.ceil(len(pairs) / COLUMNS)
    fig = make_subplots(rows=rows, cols=COLUMNS, subplot_titles=pairs, horizontal_spacing=0.04,
                        vertical_spacing=min(0.08, 0.3 / rows))
    for k, pair in enumerate(pairs):
        row, col = k // COLUMNS + 1, k % COLUMNS + 1
        panel = frame[frame["pair"] == pair]
        for label, curve in panel.groupby("label", sort=True):
            curve = curve.sort_values("r")
            style = look.get(label, figures.Style("#444444", "circle"))
            hover = f"{label}<br>{pair} r=%{{x:.3f}} A<br>E=%{{y:.4g}} eV<extra></extra>"
            fig.add_trace(go.Scatter(x=curve["r"], y=curve["energy"], mode="lines", name=label, legendgroup=label,
                                     showlegend=k == 0, line={"color": style.colour, "width": 1.5},
                                     hovertemplate=hover), row=row, col=col)
        low = min(float(panel.loc[panel["r"] >= bonding_start(pair), "energy"].min()), 0.0)
        fig.update_yaxes(range=[low - 0.5 - 0.1 * abs(low), Y_ABOVE], row=row, col=col)
        fig.update_xaxes(range=[0.0, float(panel["r"].max()) * 1.02], row=row, col=col)
    fig.update_layout(template="none", height=PANEL_HEIGHT * rows + 120, title={
        "text": "Dimer curves: E(r) - E(isolated atoms) [eV] against r [A]", "x": 0.0, "xanchor": "left"},
        legend={"orientation": "h", "y": -0.03}, margin={"l": 40, "r": 10, "t": 70, "b": 40})
    fig.update_annotations(font_size=11)
    return fig


def bonding_start(pair: str) -> float:
    """0.9 x the mean covalent radius of the pair (MLIP Arena's shortest distance), 0 for an unknown name."""
    symbols = pair.split("-")
    if len(symbols) != 2 or not all(s in atomic_numbers for s in symbols):
        return 0.0
    return 0.9 * float(np.mean([covalent_radii[atomic_numbers[s]] for s in symbols]))


def task_figures(task: str, results: list[TaskResult], look: dict[str, figures.Style]) -> list[str]:
    """The HTML the report adds under a task's section: the dimer curves where its predictions hold curve
    points (``diatomics``'s do), else nothing."""
    frame = curve_frame(results)
    if frame.empty:
        return []
    parts = ["<h3>Dimer curves</h3>", figures.figure_html(diatomics_figure(frame, look), f"curves-{task}")]
    uncovered = not_covered(results)
    if uncovered:
        lines = "".join(f"<li>{html.escape(label)}: {len(pairs)} ({html.escape(', '.join(pairs))})</li>"
                        for label, pairs in uncovered.items())
        parts.append("<p>Pairs with an element the model does not cover (not computed, not failed):</p>"
                     f"<ul>{lines}</ul>")
    return parts


def not_covered(results: list[TaskResult]) -> dict[str, list[str]]:
    """{label: the pairs it does not cover}, for the labels with any."""
    out = {}
    for result in results:
        rows = result.predictions[(result.predictions["quantity"] == NOT_COVERED)
                                  & (result.predictions["status"] == "ok")]
        pairs = [str(pair) for pair, flag in zip(rows["id"], rows["predicted"], strict=True) if flag > 0]
        if pairs:
            out[result.label] = pairs
    return out
