"""Interactive figures for reports and the leaderboard, drawn with plotly and embedded as HTML fragments.

Why plotly: it renders in the browser from a single script that a page embeds once (``plotly_script``), so
a report stays one file that opens offline, and hover, zoom and legend toggling come for free. The script is
embedded gzipped (1.5 of its 4.8 MB) and unpacked by the browser's own DecompressionStream, which keeps the
leaderboard page under 5 MB; each figure is its JSON, drawn once plotly.js is unpacked. The figures
here only arrange data; every number they show comes from the caller (the metric table's bootstrap result),
so a plot and a table never disagree.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from .. import units
from ..errors import OmniBenchError
from .text import script_json

#: 24 colours, pairwise far apart (CIE76 distance >= 20) and dark enough to read on white; more labels
#: than colours reuse them with another marker symbol (tests/test_reporting.py checks both).
PALETTE: tuple[str, ...] = tuple(qualitative.Dark24)
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross")
FONT = {"family": "system-ui, -apple-system, 'Segoe UI', sans-serif", "size": 13, "color": "#222"}
AXIS_TITLE_SIZE = 14
TICK_SIZE = 12
MIN_VIOLIN = 10  # fewer points than this are drawn as points: a violin of 5 points is a shapeless blob
NORMALISED_HEADROOM = 1.1  # the normalised chart's axis ends this far above its largest value
TASKS_PER_ROW = 6
BAND_COLOUR = "rgba(44, 160, 44, 0.30)"
BAND_EDGE = "rgba(30, 120, 30, 0.9)"
_NORMALISATIONS = ("/atom", "/molecule", "/H2O", "")


@dataclass(frozen=True)
class Style:
    colour: str
    symbol: str


def styles(labels) -> dict[str, Style]:
    """A fixed colour (and, past the palette, a marker symbol) per label, in sorted order, so a label looks
    the same in every figure of a page."""
    ordered = sorted(set(labels))
    return {label: Style(PALETTE[i % len(PALETTE)], SYMBOLS[(i // len(PALETTE)) % len(SYMBOLS)])
            for i, label in enumerate(ordered)}


@cache
def _plotly_gzip_base64() -> str:
    return base64.b64encode(gzip.compress(get_plotlyjs().encode(), 9, mtime=0)).decode("ascii")


#: unpacks plotly.js (a script element with inline text: allowed by the page's CSP, which forbids eval and
#: fetch), then draws every figure from its JSON; a browser without DecompressionStream says so in each figure
_DRAW = """
window.plotlyReady = (async function () {
  const figures = () => Array.from(document.querySelectorAll("script[data-plotly-figure]"));
  if (document.readyState === "loading") await new Promise((r) => document.addEventListener("DOMContentLoaded", r));
  if (typeof DecompressionStream === "undefined") {
    for (const f of figures()) document.getElementById(f.dataset.plotlyFigure).textContent =
      "This browser cannot unpack the figures (it lacks DecompressionStream); the tables hold every number.";
    return null;
  }
  const packed = Uint8Array.from(atob(document.getElementById("plotly-js-gzip").textContent.trim()),
                                 (c) => c.charCodeAt(0));
  const source = await new Response(new Blob([packed]).stream().pipeThrough(new DecompressionStream("gzip"))).text();
  const script = document.createElement("script");
  script.textContent = source;
  document.head.appendChild(script);
  for (const f of figures()) {
    const figure = JSON.parse(f.textContent);
    await Plotly.newPlot(f.dataset.plotlyFigure, figure.data, figure.layout, figure.config);
  }
  return window.Plotly;
})();
"""


def plotly_script() -> str:
    """plotly.js, inlined once per page (gzipped, base64) with the code that unpacks it and draws the page's
    figures: no CDN, no network."""
    return (f'<script type="application/octet-stream" id="plotly-js-gzip">{_plotly_gzip_base64()}</script>'
            f"<script>{_DRAW}</script>")


def figure_html(fig: go.Figure, div_id: str) -> str:
    """The figure as a ``<div>`` and its JSON, drawn once plotly.js is unpacked (``plotly_script``)."""
    figure = {**json.loads(fig.to_json()), "config": {"displaylogo": False, "responsive": True}}
    text = script_json(figure)
    height = fig.layout.height or 450
    return (f'<div class="figure"><div id="{div_id}" class="plotly-graph-div" style="height:{height}px; '
            f'width:100%;"></div><script type="application/json" data-plotly-figure="{div_id}">{text}</script>'
            "</div>")


def _style_layout(fig: go.Figure, title: str, height: int, **layout) -> go.Figure:
    fig.update_layout(template="none", title={"text": title, "font": {"size": 16}, "x": 0.0, "xanchor": "left"},
                      font=FONT, height=height, autosize=True, paper_bgcolor="white", plot_bgcolor="white",
                      hoverlabel={"font": {"size": 13}}, **layout)
    axis = {"title_font": {"size": AXIS_TITLE_SIZE}, "tickfont": {"size": TICK_SIZE}, "showgrid": True,
            "gridcolor": "#e6e6e6", "zeroline": False, "linecolor": "#888", "showline": True, "automargin": True}
    fig.update_xaxes(**axis)
    fig.update_yaxes(**axis)
    fig.update_annotations(font_size=14)  # subplot titles
    return fig


def accuracy_band(quantity: str, unit: str) -> tuple[float, str] | None:
    """Half-width of the chemical-accuracy band in ``unit``: 0.1 eV for adsorption energies, 1 kcal/mol for
    other energies (per atom, molecule or H2O when the unit is); None for volumes, moduli and the like."""
    reference = ("eV", 0.1) if quantity.startswith("adsorption_energy") else ("kcal/mol", 1.0)
    for suffix in _NORMALISATIONS:
        if unit.endswith(suffix):
            try:
                width = units.convert(reference[1], reference[0] + suffix, unit)
            except OmniBenchError:
                continue
            return width, f"±{reference[1]:g} {reference[0]}{suffix}"
    return None


def _grid(n: int, columns: int) -> tuple[int, int]:
    columns = max(1, min(n, columns))
    return -(-n // columns), columns


def _cell(index: int, columns: int) -> tuple[int, int]:
    return index // columns + 1, index % columns + 1


def parity_figure(title: str, quantity: str, unit: str, panels: dict[str, pd.DataFrame],
                  look: dict[str, Style]) -> go.Figure:
    """Prediction against reference, one panel per model (``panels``: label -> scored rows with id,
    reference, predicted), with y = x and the chemical-accuracy band. Statistics go in a table under the
    figure, not in an inset, so no point is hidden; hovering a point names the item."""
    rows, columns = _grid(len(panels), 3)
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=list(panels), horizontal_spacing=0.08,
                        vertical_spacing=0.5 / rows if rows > 1 else 0.1)
    values = np.concatenate([np.r_[p["predicted"].to_numpy(float), p["reference"].to_numpy(float)]
                             for p in panels.values()] + [np.zeros(0)])
    values = values[np.isfinite(values)]
    low, high = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
    pad = 0.05 * (high - low or 1.0)
    low, high = low - pad, high + pad
    band = accuracy_band(quantity, unit)
    for index, (label, frame) in enumerate(panels.items()):
        row, col = _cell(index, columns)
        if band:
            w = band[0]
            fig.add_trace(go.Scatter(x=[low, high, high, low, low], y=[low - w, high - w, high + w, low + w, low - w],
                                     fill="toself", fillcolor=BAND_COLOUR, line={"color": BAND_EDGE, "width": 1},
                                     mode="lines", name=band[1], hoverinfo="skip"), row=row, col=col)
        fig.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines", line={"color": "#555", "width": 1},
                                 name="y = x", hoverinfo="skip"),
                      row=row, col=col)
        error = frame["predicted"].to_numpy(float) - frame["reference"].to_numpy(float)
        style = look[label]
        fig.add_trace(go.Scatter(
            x=frame["reference"].to_numpy(float), y=frame["predicted"].to_numpy(float), mode="markers",
            name=label,
            marker={"color": style.colour, "symbol": style.symbol, "size": 7, "opacity": 0.8},
            customdata=np.column_stack([frame["id"].astype(str).to_numpy(), error]),
            hovertemplate=(f"<b>%{{customdata[0]}}</b><br>reference %{{x:.4g}} {unit}<br>predicted %{{y:.4g}} "
                           f"{unit}<br>error %{{customdata[1]:+.3g}} {unit}<extra>{label}</extra>")),
            row=row, col=col)
        fig.update_xaxes(title_text=f"reference ({unit})", range=[low, high], constrain="domain", row=row, col=col)
        fig.update_yaxes(title_text=f"predicted ({unit})", range=[low, high], constrain="domain", row=row, col=col,
                         scaleanchor=f"x{index + 1 if index else ''}", scaleratio=1)
    key = f"line: y = x; green band: {band[1]}" if band else "line: y = x"
    return _style_layout(fig, f"{title}<br><sub>{key}</sub>", 140 + 440 * rows, showlegend=False)


def error_distribution_figure(title: str, panels: list[tuple[str, str, float | None, dict[str, pd.DataFrame]]],
                              look: dict[str, Style]) -> go.Figure:
    """Signed errors per model, one axis per task (task, unit, accuracy half-width, {label: rows with id and
    error}): a violin with its points from ``MIN_VIOLIN`` points on, the bare points below that."""
    rows, columns = _grid(len(panels), 2)
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=[p[0] for p in panels], horizontal_spacing=0.1,
                        vertical_spacing=0.4 / rows if rows > 1 else 0.1)
    for index, (_task, unit, band, errors) in enumerate(panels):
        row, col = _cell(index, columns)
        labels = list(errors)
        for position, label in enumerate(labels):
            frame = errors[label]
            data = frame["error"].to_numpy(float)
            ok = np.isfinite(data)
            data, ids = data[ok], frame["id"].astype(str).to_numpy()[ok]
            style = look[label]
            common = {"name": label, "customdata": ids,
                      "hovertemplate": f"<b>%{{customdata}}</b><br>error %{{y:+.3g}} {unit}<extra>{label}</extra>"}
            if len(data) >= MIN_VIOLIN:
                fig.add_trace(go.Violin(x=np.full(len(data), position), y=data, points="all", jitter=0.35,
                                        pointpos=0, line={"color": style.colour, "width": 1.5},
                                        fillcolor="rgba(0,0,0,0)", meanline_visible=True, width=0.8,
                                        marker={"color": style.colour, "size": 4, "opacity": 0.6},
                                        hoveron="points", **common), row=row, col=col)
            else:
                jitter = np.linspace(-0.15, 0.15, len(data)) if len(data) > 1 else np.zeros(len(data))
                fig.add_trace(go.Scatter(x=position + jitter, y=data, mode="markers",
                                         marker={"color": style.colour, "symbol": style.symbol, "size": 8},
                                         **common), row=row, col=col)
        if band:
            fig.add_hrect(y0=-band, y1=band, fillcolor=BAND_COLOUR, line_width=0, layer="below", row=row, col=col)
        fig.add_hline(y=0.0, line={"color": "#555", "width": 1}, row=row, col=col)
        fig.update_xaxes(tickvals=list(range(len(labels))), ticktext=labels, tickangle=-30 if len(labels) > 3 else 0,
                         range=[-0.6, len(labels) - 0.4], showgrid=False, title_text="model", row=row, col=col)
        fig.update_yaxes(title_text=f"error ({unit})", row=row, col=col)
    note = " (green: chemical accuracy)" if any(p[2] for p in panels) else ""
    return _style_layout(fig, title + note, 140 + 360 * rows, showlegend=False)


def normalised_figure(title: str, frame: pd.DataFrame, look: dict[str, Style]) -> go.Figure:
    """Each task's headline error divided by its fixed scale (``leaderboard.normalised_error``), with interval
    error bars, in rows of ``TASKS_PER_ROW`` tasks. ``frame``: task, label, norm, norm_low, norm_high, value,
    ci_low, ci_high, unit."""
    tasks = sorted(set(frame["task"]))
    labels = sorted(set(frame["label"]))
    chunks = [tasks[i:i + TASKS_PER_ROW] for i in range(0, len(tasks), TASKS_PER_ROW)] or [[]]
    top = float(np.nanmax(np.r_[frame["norm_high"].to_numpy(float), 1.0]))
    cap = max(1.05, NORMALISED_HEADROOM * float(np.nanmax(np.r_[frame["norm"].to_numpy(float), 0.0])))
    fig = make_subplots(rows=len(chunks), cols=1, vertical_spacing=0.35 / len(chunks))
    for row, chunk in enumerate(chunks, start=1):
        for label in labels:
            mine = frame[frame["label"] == label].set_index("task").reindex(chunk)
            norm = mine["norm"].to_numpy(float)
            fig.add_trace(go.Bar(
                x=chunk, y=norm, name=label, legendgroup=label, showlegend=row == 1, offsetgroup=label,
                marker_color=look[label].colour,
                error_y={"type": "data", "symmetric": False, "thickness": 1.2, "width": 2,
                         "array": np.clip(np.nan_to_num(mine["norm_high"].to_numpy(float) - norm), 0, None),
                         "arrayminus": np.clip(np.nan_to_num(norm - mine["norm_low"].to_numpy(float)), 0, None)},
                hovertext=[_bar_hover(r) for _, r in mine.reset_index().iterrows()],
                hovertemplate=f"<b>{label}</b> on %{{x}}<br>%{{hovertext}}<extra></extra>"),
                row=row, col=1)
        fig.add_hline(y=1.0, line={"color": "#888", "width": 1, "dash": "dash"}, row=row, col=1)
        fig.update_yaxes(title_text="error / task scale", range=[0, cap], row=row, col=1)
        fig.update_xaxes(title_text="task", row=row, col=1)
    if top > cap:
        title += f" (intervals above {cap:.2g} are cut; hover for them)"
    return _style_layout(fig, title, 160 + 330 * len(chunks), barmode="group", bargap=0.2,
                         legend={"orientation": "h", "x": 0.0, "y": 1.0, "yanchor": "bottom",
                                 "font": {"size": 12}},
                         margin={"t": 90 + 22 * math.ceil(len(labels) / 6)})


def channel_figure(title: str, normalised: pd.DataFrame, text: pd.DataFrame, hover: pd.DataFrame,
                   best: dict[str, str]) -> go.Figure:
    """Channels (rows) against tasks (columns); colour is the error relative to the worst channel of the
    task, the best channel of each task is starred and framed; hover gives the value and its interval."""
    channels, tasks = list(normalised.index), list(normalised.columns)
    shown = text.copy()
    for task, channel in best.items():
        shown.loc[channel, task] = "★ " + str(shown.loc[channel, task])
    fig = go.Figure(go.Heatmap(
        z=normalised.to_numpy(float), x=tasks, y=channels, text=shown.to_numpy(), texttemplate="%{text}",
        textfont={"size": 12}, customdata=hover.to_numpy(), zmin=0.0, zmax=1.0, colorscale="Viridis",
        colorbar={"title": {"text": "error / worst channel", "side": "right"}, "thickness": 14},
        hovertemplate="%{y} on %{x}<br>%{customdata}<extra></extra>", xgap=2, ygap=2))
    for task, channel in best.items():
        c, r = tasks.index(task), channels.index(channel)
        fig.add_shape(type="rect", x0=c - 0.5, x1=c + 0.5, y0=r - 0.5, y1=r + 0.5,
                      line={"color": "#d62728", "width": 3})
    fig.update_yaxes(autorange="reversed", title_text="channel")
    fig.update_xaxes(title_text="task", tickangle=-30 if len(tasks) > 4 else 0)
    return _style_layout(fig, title + " (★ and red frame: best channel per task)", 250 + 48 * len(channels))


def _bar_hover(r: pd.Series) -> str:
    """Hover text of one bar, formatted here so the page carries a short string, not six full floats."""
    if not np.isfinite(r["norm"]):
        return "no result"
    interval = f" [{r['norm_low']:.2f}, {r['norm_high']:.2f}]" if np.isfinite(r["norm_low"]) else ""
    return f"normalised {r['norm']:.2f}{interval}<br>{_interval_text(r)}"


def _interval_text(r: pd.Series) -> str:
    if not np.isfinite(r["value"]):
        return "no result"
    interval = f" [{r['ci_low']:.3g}, {r['ci_high']:.3g}]" if np.isfinite(r["ci_low"]) else ""
    unit = "" if r["unit"] in ("", "1") else f" {r['unit']}"
    return f"{r['metric']} {r['value']:.3g}{interval}{unit}"


def channel_matrices(tasks: pd.DataFrame) -> list[tuple[str, go.Figure]]:
    """For every model with several channels among ``tasks`` (the leaderboard's headline rows): its
    channels against the tasks, the best channel of each task marked."""
    rows = tasks[tasks["channel"].fillna("").astype(bool)]
    family = rows["model"] + np.where(rows["d3"].astype(bool), "+d3", "")
    out = []
    for name, mine in rows.groupby(family, sort=True):
        if mine["label"].nunique() < 2:
            continue
        errors = mine.pivot(index="channel", columns="task", values="error")
        normalised = errors / errors.max(axis=0).replace(0, np.nan)
        text = mine.pivot(index="channel", columns="task", values="value").map(
            lambda v: f"{v:.3g}" if np.isfinite(v) else "n/a").reindex_like(errors).fillna("n/a")
        hover = mine.assign(hover=mine.apply(_interval_text, axis=1)).pivot(
            index="channel", columns="task", values="hover").reindex_like(errors).fillna("no result")
        best = {task: errors[task].idxmin() for task in errors.columns if errors[task].notna().any()}
        out.append((str(name), channel_figure(f"{name}: headline error per channel and task", normalised, text,
                                              hover, best)))
    return out
