"""Figures for reports, drawn with matplotlib's Agg backend and returned as PNG bytes to embed."""

from __future__ import annotations

import io
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # reports are written on headless machines; no display is ever opened

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from .. import units  # noqa: E402
from ..errors import OmniBenchError  # noqa: E402
from .bootstrap import Interval  # noqa: E402

_NORMALISATIONS = ("/atom", "/molecule", "/H2O", "")
DPI = 110


def png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def accuracy_band(quantity: str, unit: str) -> tuple[float, str] | None:
    """Half-width of the chemical-accuracy band in ``unit``: 0.1 eV for adsorption energies, 1 kcal/mol for
    other energies (per atom, molecule or H2O when the unit is); None for volumes, moduli and the like."""
    if quantity.startswith("adsorption_energy"):
        reference = ("eV", 0.1)
    else:
        reference = ("kcal/mol", 1.0)
    for suffix in _NORMALISATIONS:
        if unit.endswith(suffix):
            try:
                width = units.convert(reference[1], reference[0] + suffix, unit)
            except OmniBenchError:
                continue
            return width, f"±{reference[1]:g} {reference[0]}{suffix}"
    return None


@dataclass
class ParityPanel:
    """One model's points on one quantity, with the statistics printed in its corner."""

    label: str
    rows: pd.DataFrame  # scored rows (status ok)
    n_failed: int
    mae: Interval
    rmse: Interval
    r2: Interval


def _ci(interval: Interval, digits: str = ".3g") -> str:
    if not interval.finite:
        return "n/a"
    return f"{interval.value:{digits}} [{interval.low:{digits}}, {interval.high:{digits}}]"


def parity_figure(title: str, quantity: str, unit: str, panels: list[ParityPanel]) -> bytes:
    """Prediction against reference, one panel per model, with y = x and the chemical-accuracy band."""
    columns = min(len(panels), 3)
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 4.2 * rows), squeeze=False)
    band = accuracy_band(quantity, unit)
    values = np.concatenate([np.r_[p.rows["predicted"].to_numpy(float), p.rows["reference"].to_numpy(float)]
                             for p in panels] + [np.zeros(0)])
    values = values[np.isfinite(values)]
    low, high = (values.min(), values.max()) if len(values) else (0.0, 1.0)
    pad = 0.05 * (high - low or 1.0)
    low, high = low - pad, high + pad
    for ax, panel in zip(axes.flat, panels, strict=False):
        line = np.array([low, high])
        if band:
            ax.fill_between(line, line - band[0], line + band[0], color="tab:green", alpha=0.18, lw=0,
                            label=band[1])
        ax.plot(line, line, color="0.3", lw=1, label="y = x")
        ax.scatter(panel.rows["reference"], panel.rows["predicted"], s=14, alpha=0.75, color="tab:blue",
                   edgecolor="none")
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_aspect("equal")
        ax.set_title(panel.label, fontsize=10)
        ax.set_xlabel(f"reference {quantity} ({unit})", fontsize=8)
        ax.set_ylabel(f"predicted ({unit})", fontsize=8)
        ax.tick_params(labelsize=7)
        text = (f"n = {len(panel.rows)}, failed = {panel.n_failed}\nMAE {_ci(panel.mae)}\n"
                f"RMSE {_ci(panel.rmse)}\nR² {_ci(panel.r2, '.3f')}")
        ax.text(0.03, 0.97, text, transform=ax.transAxes, va="top", fontsize=7,
                bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "0.8"})
        ax.legend(loc="lower right", fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=11)
    return png(fig)


def error_distribution_figure(title: str, panels: list[tuple[str, str, dict[str, np.ndarray]]]) -> bytes:
    """Signed errors per model as violins, one axis per task (its unit): (task, unit, {label: errors})."""
    columns = min(len(panels), 3)
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.6 * rows), squeeze=False)
    for ax, (task, unit, errors) in zip(axes.flat, panels, strict=False):
        labels = list(errors)
        for position, label in enumerate(labels, start=1):
            data = errors[label][np.isfinite(errors[label])]
            if len(data) >= 3 and np.ptp(data) > 0:
                parts = ax.violinplot(data, positions=[position], showmedians=True, widths=0.8)
                for body in parts["bodies"]:
                    body.set_alpha(0.5)
            ax.scatter(np.full(len(data), position) + np.linspace(-0.12, 0.12, len(data)), data, s=5,
                       color="0.25", alpha=0.5, zorder=3)
        ax.axhline(0.0, color="0.4", lw=0.8)
        ax.set_xticks(range(1, len(labels) + 1))
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(f"error ({unit})", fontsize=8)
        ax.set_title(task, fontsize=10)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return png(fig)


def normalised_figure(title: str, frame: pd.DataFrame) -> bytes:
    """Bars of each task's normalised error per model with interval error bars.

    ``frame`` has columns task, label, norm, norm_low, norm_high (NaN where a model has no result)."""
    tasks = list(dict.fromkeys(frame["task"]))
    labels = list(dict.fromkeys(frame["label"]))
    width = 0.8 / max(len(labels), 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(tasks) * max(1, len(labels)) ** 0.5 + 2), 3.8))
    for i, label in enumerate(labels):
        mine = frame[frame["label"] == label].set_index("task").reindex(tasks)
        x = np.arange(len(tasks)) + (i - (len(labels) - 1) / 2) * width
        norm = mine["norm"].to_numpy(float)
        yerr = np.vstack([norm - mine["norm_low"].to_numpy(float), mine["norm_high"].to_numpy(float) - norm])
        ax.bar(x, norm, width, label=label, yerr=np.clip(np.nan_to_num(yerr), 0, None), capsize=2,
               error_kw={"lw": 0.8})
    ax.set_xticks(np.arange(len(tasks)))
    ax.set_xticklabels(tasks, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("error / largest among models", fontsize=8)
    top = np.nanmax(np.r_[frame["norm_high"].to_numpy(float), 1.0])
    ax.set_ylim(0, 1.08 * top)
    ax.axhline(1.0, color="0.5", lw=0.6, ls="--")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title, fontsize=11)
    return png(fig)


def channel_heatmap(title: str, values: pd.DataFrame, best: dict[str, str], text: pd.DataFrame) -> bytes:
    """Channels (rows) against tasks (columns): colour is the error normalised per task, the best channel
    of each task is framed. ``values`` holds the normalised errors, ``text`` the numbers printed in cells."""
    fig, ax = plt.subplots(figsize=(1.3 * values.shape[1] + 2.5, 0.6 * values.shape[0] + 1.8))
    shown = np.ma.masked_invalid(values.to_numpy(float))
    cmap = plt.get_cmap("viridis").with_extremes(bad="0.85")
    image = ax.imshow(shown, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    for r, channel in enumerate(values.index):
        for c, task in enumerate(values.columns):
            ax.text(c, r, text.loc[channel, task], ha="center", va="center", fontsize=7,
                    color="white" if np.isfinite(values.iloc[r, c]) and values.iloc[r, c] < 0.6 else "black")
            if best.get(task) == channel:
                ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red", lw=2.2))
    ax.set_xticks(range(values.shape[1]))
    ax.set_xticklabels(values.columns, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(values.shape[0]))
    ax.set_yticklabels(values.index, fontsize=8)
    fig.colorbar(image, ax=ax, label="error / largest channel", shrink=0.8)
    ax.set_title(title + " (red frame: best channel)", fontsize=10)
    return png(fig)
