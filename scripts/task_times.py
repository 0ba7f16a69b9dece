"""Per-task wall times of one model from results folders (``omni-bench run --out``), side by side.

    python scripts/task_times.py --model 7net-0 before=runs/before/out after=runs/after/out

Each column is one folder; a task's time is its results file's ``timing.wall_s`` (what the run spent computing
it, model loading excluded), so the figures are only comparable between runs made alone on the same machine
with every item computed (``items_from_store`` 0, which the table checks).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def wall_times(folder: Path) -> dict[str, float]:
    times = {}
    for path in sorted(folder.glob("*.json")):
        timing = json.loads(path.read_text()).get("timing", {})
        if timing.get("items_from_store"):
            raise SystemExit(f"{path}: {timing['items_from_store']} items came from the store; run with a fresh "
                             "--store for timings")
        times[path.stem] = float(timing["wall_s"])
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("runs", nargs="+", help="LABEL=RESULTS_FOLDER")
    args = parser.parse_args(argv)
    columns = {}
    for run in args.runs:
        label, _, folder = run.partition("=")
        columns[label] = wall_times(Path(folder) / args.model)
    tasks = sorted(set().union(*columns.values()))
    header = ["task", *(f"{label} (s)" for label in columns)]
    if len(columns) == 2:
        header.append("ratio")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    totals = dict.fromkeys(columns, 0.0)
    for task in tasks:
        cells = [task]
        for label, times in columns.items():
            cells.append(f"{times[task]:.1f}" if task in times else "-")
            totals[label] += times.get(task, 0.0)
        if len(columns) == 2:
            first, second = (times.get(task) for times in columns.values())
            cells.append(f"{second / first:.2f}" if first and second else "-")
        print("| " + " | ".join(cells) + " |")
    total_cells = ["**total**", *(f"{totals[label]:.0f}" for label in columns)]
    if len(columns) == 2:
        first, second = totals.values()
        total_cells.append(f"{second / first:.2f}" if first else "-")
    print("| " + " | ".join(total_cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
