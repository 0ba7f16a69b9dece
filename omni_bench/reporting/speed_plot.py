"""The md-speed results as a table and a plot: ns/day against atom count, one line per model and device.

Reads the results files that ``omni-bench run --task md-speed --out DIR`` writes (``<model>/md-speed.json``
and its predictions CSV), so that a report never types a number by hand.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from .load import read_result

TASK = "md-speed"
_COLUMNS = ["model", "device", "device_name", "host", "budget_s", "item_id", "n_atoms", "quantity", "value", "unit",
            "status", "message", "source"]


def results_files(paths: Iterable[str | Path], task: str = TASK) -> list[Path]:
    """``<task>.json`` files: the paths themselves, or found under folders."""
    found: list[Path] = []
    for path in map(Path, paths):
        found += sorted(path.rglob(f"{task}.json")) if path.is_dir() else [path]
    return found


def md_speed_frame(paths: Iterable[str | Path], task: str = TASK) -> pd.DataFrame:
    """One row per (results file, item, quantity): the model, where it ran, its time budget per size
    (``max_seconds_per_size``, None for none), the atom count and the value."""
    frames = []
    for json_path in results_files(paths, task):
        result = read_result(json_path)  # the one reader of results files, with all its checks
        record, predictions = result.record, result.predictions
        env = record.get("environment") or {}
        if predictions.empty:
            continue
        frames.append(pd.DataFrame({
            "model": result.label,
            "device": env.get("device"),
            "device_name": env.get("device_name"),
            "host": env.get("hostname"),
            "budget_s": ((record.get("config") or {}).get("protocol_params") or {}).get("max_seconds_per_size"),
            "item_id": predictions["id"],
            "n_atoms": predictions["group_n_atoms"].astype(int),
            "quantity": predictions["quantity"],
            "value": predictions["predicted"],
            "unit": predictions["unit"],
            "status": predictions["status"],
            "message": predictions["message"],
            "source": str(json_path),
        }))
    if not frames:
        return pd.DataFrame(columns=_COLUMNS)
    return pd.concat(frames, ignore_index=True)[_COLUMNS]


def plot_md_speed(source: pd.DataFrame | Iterable[str | Path], out_png: str | Path,
                  quantity: str = "ns_per_day", title: str = "MD speed (md-speed task)") -> Path:
    """Write a log-log plot of ``quantity`` against atom count, one line per model and device; return the path.

    ``source`` is a frame from ``md_speed_frame`` or results files/folders to read one from. Uses the Agg
    canvas directly, so no display and no global matplotlib backend are touched.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    frame = source if isinstance(source, pd.DataFrame) else md_speed_frame(source)
    rows = frame[(frame["quantity"] == quantity) & (frame["status"] == "ok")]
    if rows.empty:
        raise ValueError(f"no successful {quantity!r} values to plot")
    figure = Figure(figsize=(6.4, 4.4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for (model, device, device_name), line in rows.groupby(["model", "device", "device_name"], sort=True):
        line = line.sort_values("n_atoms")
        axes.plot(line["n_atoms"], line["value"], marker="o", label=f"{model} ({device}: {device_name})")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("atoms")
    axes.set_ylabel(f"{quantity} [{rows['unit'].iloc[0]}]")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_png, dpi=120)
    return out_png
