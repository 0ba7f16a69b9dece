"""Write reports/speed.md from md-speed results files and a pytest-benchmark JSON; no number is typed by hand.

    python scripts/speed_report.py --results reports/speed/results \
        --benchmark reports/speed/benchmark.json reports/speed/benchmark-cpu-time.json \
        --out reports/speed.md --plot reports/speed/ns_per_day.png
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import pandas as pd
import yaml

from omni_bench.reporting.speed_plot import TASK, md_speed_frame, plot_md_speed

REPO = Path(__file__).resolve().parent.parent
COLUMNS = [  # (quantity, header)
    ("ns_per_day", "ns/day"), ("us_per_atom_step", "us/atom/step"), ("steps_per_second", "steps/s"),
    ("peak_memory", "peak memory (MB)"), ("energy_drift", "drift (meV/atom)"), ("load_average", "load avg"),
    ("torch_threads", "torch threads"),
]
LIMIT_RATIO_7NET0 = 1.05
LIMIT_MS_PER_ITEM_TRIVIAL = 2.0


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return f"{value:.3g}"


def _rel(path: Path, start: Path) -> str:
    return os.path.relpath(Path(path).resolve(), start.resolve())


def md_speed_section(frame: pd.DataFrame, plot: Path | None, report_dir: Path) -> list[str]:
    lines = ["## md-speed", ""]
    if frame.empty:
        return lines + ["No md-speed results were given.", ""]
    runs = frame[["model", "device", "device_name", "host"]].drop_duplicates()
    for run in runs.itertuples(index=False):
        lines.append(f"- {run.model} on {run.device} ({run.device_name}), host {run.host}")
    if not frame["device"].str.startswith("cuda").any():
        lines += ["", "**GPU numbers are not measured yet**: every result below ran on a CPU. The same task file "
                  "runs on a GPU with `--device cuda`, where the ladder is meant to go on until memory runs out."]
    loads = frame[(frame["quantity"] == "load_average") & (frame["status"] == "ok")]["value"]
    cpus = os.cpu_count() or 1
    if not loads.empty and loads.max() > cpus:
        lines += ["", f"The machine was shared with other jobs while measuring: the 1-minute load average reached "
                  f"{loads.max():.1f} on {cpus} CPUs (column 'load avg'). Absolute timings are noisy and pessimistic; "
                  "compare models only within rows of similar load."]
    header = ["model", "device", "budget (s)", "atoms", *[h for _, h in COLUMNS]]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    ok = frame[frame["status"] == "ok"]
    index = ["model", "device", "n_atoms", "source"]
    table = ok.pivot_table(index=index, columns="quantity", values="value", aggfunc="first")
    budgets = ok.groupby(index)["budget_s"].first()
    for key, row in table.sort_index().iterrows():
        model, device, n_atoms, _ = key
        cells = [_fmt(row.get(q)) for q, _ in COLUMNS]
        lines.append(f"| {model} | {device} | {_fmt(budgets[key])} | {n_atoms} | " + " | ".join(cells) + " |")
    lines += ["", "Largest size reached and why the ladder stopped:", ""]
    for (model, device, source), rows in frame.groupby(["model", "device", "source"], sort=True):
        done = rows[(rows["status"] == "ok") & (rows["quantity"] == "n_atoms")]["n_atoms"]
        stopped = rows[(rows["status"] == "failed") & ~rows["message"].fillna("").str.startswith("skipped")]
        reason = "; ".join(dict.fromkeys(f"{r.item_id}: {r.message}" for r in stopped.itertuples())) or "all sizes done"
        ladder = ", ".join(str(n) for n in sorted(rows["n_atoms"].unique()))
        largest = int(done.max()) if not done.empty else "none"
        lines.append(f"- {model} ({device}, budget {_fmt(rows['budget_s'].iloc[0])} s, ladder {ladder}; "
                     f"`{_rel(Path(source), report_dir)}`): largest size {largest} atoms; {reason}")
    lines += _modified_task_notes(frame, report_dir)
    if plot is not None:
        lines += ["", f"![ns/day against atom count]({_rel(plot, report_dir)})"]
    return lines + [""]


def _modified_task_notes(frame: pd.DataFrame, report_dir: Path) -> list[str]:
    """Say which results came from a modified copy of the shipped task file, and what was changed."""
    shipped_path = REPO / "tasks" / f"{TASK}.yaml"
    if not shipped_path.is_file():
        return []
    shipped = yaml.safe_load(shipped_path.read_text())
    notes = []
    for source in sorted(frame["source"].unique()):
        config = json.loads(Path(source).read_text())["task"]["config"]
        changed = [f"{section}.params.{key}: {value!r} (shipped: {shipped[section].get('params', {}).get(key)!r})"
                   for section in ("dataset", "protocol")
                   for key, value in (config[section].get("params") or {}).items()
                   if value != shipped[section].get("params", {}).get(key)]
        if changed:
            notes.append(f"- `{_rel(Path(source), report_dir)}` ran a copy of tasks/{TASK}.yaml passed with "
                         f"`--tasks-dir`, changed: {'; '.join(changed)}")
    return ["", "Runs with changed settings:", "", *notes] if notes else []


def overhead_section(benchmark_files: list[Path]) -> list[str]:
    lines = ["## Harness overhead: s22 through the runner against a bare loop of calculator calls", ""]
    if not benchmark_files:
        return lines + ["No benchmark file was given.", ""]
    lines += ["Both compute the same 66 single points (22 dimers, 3 structures each) with the same calculator "
              "object. Bare loop and runner alternate round by round, so both see the same load; the limits are "
              "checked on the median of the per-round pairs. 'Overhead per item' is (runner - bare loop) / 22 and "
              "so includes the fixed cost of a task run (loading the items, fingerprint, writing results), "
              "spread over the items; the marginal cost of one more item is given below it. On a machine shared "
              "with other jobs the CPU-time run (`--benchmark-timer time.process_time`) is the steadier one: wall "
              "time also counts the time other jobs take the CPU away.", ""]
    for path in benchmark_files:
        lines += _benchmark_file(path)
    return lines


def _benchmark_file(path: Path) -> list[str]:
    data = json.loads(path.read_text())
    benches = data["benchmarks"]
    timer = benches[0]["options"]["timer"] if benches else "?"
    cpu = data["machine_info"].get("cpu", {}).get("brand_raw", "unknown CPU")
    lines = [f"### `{path.name}`: timer `{timer}`, {data.get('datetime', '')[:19]}, {cpu}", "",
             "| model | rounds | bare loop median (s) | runner median (s) | median ratio | overhead per item (ms) "
             "| limit | within limit |", "|---|---|---|---|---|---|---|---|"]
    bare_ms_per_item = None
    for b in benches:
        info = b["extra_info"]
        if info.get("kind") != "runner_vs_bare":
            continue
        trivial = "7net-0" not in info["model"]
        limit = f"<= {LIMIT_MS_PER_ITEM_TRIVIAL:g} ms/item" if trivial else f"ratio <= {LIMIT_RATIO_7NET0:g}"
        within = (info["median_overhead_ms_per_item"] <= LIMIT_MS_PER_ITEM_TRIVIAL if trivial
                  else info["median_ratio"] <= LIMIT_RATIO_7NET0)
        name = "no-op calculator" if trivial else info["model"]
        if trivial:
            bare_ms_per_item = 1e3 * statistics.median(info["bare_seconds"]) / info["items"]
        lines.append(f"| {name} | {len(info['runner_seconds'])} | {_fmt(statistics.median(info['bare_seconds']))} "
                     f"| {_fmt(statistics.median(info['runner_seconds']))} | {info['median_ratio']:.3f} "
                     f"| {info['median_overhead_ms_per_item']:.2f} | {limit} | {'yes' if within else 'NO'} |")
    lines += ["", "Where the runner's time goes (no-op calculator; median of rounds):", "",
              "| measurement | median (ms) |", "|---|---|"]
    runner = {}
    for b in benches:
        info, median_ms = b["extra_info"], 1e3 * b["stats"]["median"]
        if info.get("kind") == "runner":
            runner[(info["items"], info["progress"])] = median_ms
            bar = "with progress bar" if info["progress"] else "no progress bar"
            lines.append(f"| run_serial, {info['items']} item(s), {bar} | {median_ms:.2f} |")
        elif info.get("kind") == "store_put":
            lines.append(f"| one store commit (ResultStore.put, after every item) | {median_ms:.3f} |")
        elif info.get("kind") == "fingerprint":
            lines.append(f"| fingerprint of {info['model']} (hashes the checkpoint; once per model and run) "
                         f"| {median_ms:.2f} |")
    if (1, False) in runner and (22, False) in runner:
        per_item = (runner[(22, False)] - runner[(1, False)]) / 21
        lines += ["", f"Fixed cost of a task run (1 item): {runner[(1, False)]:.1f} ms. Marginal cost of one more "
                  f"item, runner and no-op calculator together ((22 items - 1 item) / 21): {per_item:.2f} ms"
                  + (f", of which the bare loop takes {bare_ms_per_item:.2f} ms: the runner's own cost per item is "
                     f"about {per_item - bare_ms_per_item:.2f} ms." if bare_ms_per_item is not None else ".")]
    if (22, False) in runner and (22, True) in runner:
        lines.append(f"Progress bar: {(runner[(22, True)] - runner[(22, False)]) / 22:+.3f} ms per item.")
    return lines + [""]


def device_run_dirs(speed_dir: Path) -> list[Path]:
    """The GPU pack's run folders that scripts/device_report.py wrote under ``speed_dir``."""
    return sorted(p.parent for p in speed_dir.glob("*/pack-1.json"))


def device_runs_section(run_dirs: list[Path], report_dir: Path) -> list[str]:
    """What each GPU pack run measured beyond the md-speed table: the machine, versions and commands, the
    batched single-point ratios and the GPU training of omni."""
    if not run_dirs:
        return []
    lines = ["## GPU pack runs", "",
             "Made by `scripts/device_pack.sh` in a GPU window and `scripts/device_report.py` (README, 'GPU pack'). "
             "Their md-speed rows are in the table above (device `cuda`; models named `-cueq` ran with sevenn's "
             "`enable_cueq`, cuEquivariance kernels), on copies of the task file with the changes listed there.", ""]
    for run in run_dirs:
        packs = [json.loads(p.read_text()) for p in sorted(run.glob("pack-*.json"))]
        env = next(p["environment"] for p in packs if "environment" in p)
        gpu = env.get("gpu") or {}
        versions = ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v != "not installed")
        lines += [f"### `{_rel(run, report_dir)}`: {gpu.get('name', env['device'])}", "",
                  f"- GPU: {gpu.get('name', 'none')}, {gpu.get('memory_gib', '?')} GiB, {gpu.get('multiprocessors')} "
                  f"SMs, compute capability {gpu.get('capability')}, driver {gpu.get('driver')}; host CPU {env['cpu']} "
                  f"({env['cpu_count']} cores)" if gpu else f"- device: {env['device']} (no GPU: a dry run)",
                  f"- software: Python {env['python']}, torch {env['torch']} (CUDA {env['torch_cuda']}), {versions}",
                  f"- started {env['started_at']}, git {env.get('git') or 'unknown'}"]
        for number, pack in enumerate(packs, start=1):
            settings = " ".join(f"{k}={v}" for k, v in pack["command"]["env"].items())
            parts = "; ".join(f"{name} {r['status']} ({r['seconds']:.0f} s" + (f", {r['message']})" if r["message"]
                                                                              else ")")
                              for name, r in pack["parts"].items())
            lines.append(f"- call {number}: `{settings + ' ' if settings else ''}scripts/device_pack.sh`: {parts}")
        for tag in ("md-speed", "md-speed-cueq"):
            if (run / tag / "runs.json").is_file():
                runs = json.loads((run / tag / "runs.json").read_text())
                lines.append(f"- {tag} runs: " + "; ".join(
                    f"{' '.join(Path(m).stem for m in r['models'])} {r['status']}"
                    + (f" in {r['seconds']} s, budget {r['budget_s']} s per size" if "seconds" in r else "")
                    + (f" ({r['message']})" if r.get("message") else "") for r in runs))
        lines += [""] + _batched_lines(run / "batched.json") + _training_lines(run / "train" / "comparison.json")
    return lines


def _batched_lines(path: Path) -> list[str]:
    if not path.is_file():
        return []
    lines = ["#### Batched single points against the per-structure ASE loop", "",
             "Energies of the same structures through the model's ASE calculator one by one, and through the batched "
             "path (`omni_bench/models/batched.py`, default batch size for the device), alternating round by round "
             "after the untimed warm-up rounds, as `benchmarks/test_batched_speed.py` does; every round compares the "
             "two paths structure by structure (largest difference in the last column). Structures: the single "
             "points of the first items of each task named. The ratio is the median of the per-round ratios.", "",
             "| model | set (task: items) | structures | atoms | warm-up + timed rounds | ASE loop median (s) "
             "| batched median (s) | batched/ASE | speed-up | max abs diff (meV/atom) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    entries = json.loads(path.read_text())["entries"]
    for e in entries:
        tasks = ", ".join(f"{t}: {'all' if n is None else n}" for t, n in e["tasks"])
        lines.append(f"| {e['model']} | {e['set']} ({tasks}) | {e['n_structures']} | {e['n_atoms']} "
                     f"| {e['warmup_rounds']} + {e['rounds']} "
                     f"| {_fmt(statistics.median(e['ase_seconds']))} | {_fmt(statistics.median(e['batched_seconds']))} "
                     f"| {e['median_ratio_batched_to_ase']:.3f} | {e['speedup']:.2f}x "
                     f"| {_fmt(1e3 * e['max_abs_diff_eV_per_atom'])} |")
    gpu = [e for e in entries if e["device"].startswith("cuda") and e["set"] == "molecules"]
    if gpu:
        verdicts = ", ".join(f"{e['model']} {e['speedup']:.2f}x ({'met' if e['speedup'] >= 3 else 'NOT met'})"
                             for e in gpu)
        lines += ["", f"Target on a GPU: the batched path at least 3x faster than the ASE loop on molecules: "
                      f"{verdicts}."]
    return lines + [""]


def _training_lines(path: Path) -> list[str]:
    if not path.is_file():
        return []
    verdict = json.loads(path.read_text())
    lines = ["#### GPU training of omni", "",
             f"{verdict['epochs']} epochs in {verdict['wall_s_training']} s on {verdict['hardware']}; validation "
             "errors (meV/atom for energies, meV/A for forces) against the shipped omni (`reference_model/"
             "model_card.yaml`):", "", "| validation error | shipped omni | GPU run | GPU / shipped |",
             "|---|---|---|---|"]
    for key, shipped in verdict["shipped"].items():
        new = verdict["new"].get(key)
        ratio = verdict["ratios"].get(key)
        lines.append(f"| {key.removeprefix('val_')} | {_fmt(shipped)} | {_fmt(new)} | "
                     f"{'-' if ratio is None else f'{ratio:.3f}'} |")
    outcome = (f"a candidate: `{verdict['candidate']}`" if verdict.get("better")
               else "not a candidate")
    return lines + ["", f"Rule: {verdict['rule']}. Outcome: {outcome} ({verdict['reason']}).", ""]


def render(frame: pd.DataFrame, benchmark_files: list[Path], plot: Path | None, report_dir: Path,
           results: list[Path], device_runs: list[Path] | None = None) -> str:
    sources = ", ".join(f"`{_rel(p, report_dir)}`" for p in [*results, *benchmark_files]) or "none"
    lines = [
        "# Speed: MD throughput and harness overhead",
        "",
        "Generated by `scripts/speed_report.py` from results files; do not edit by hand. Sources: " + sources + ".",
        "",
        "## Reproduce",
        "",
        "```sh",
        "OMP_NUM_THREADS=1 omni-bench run --model 7net-0 --model chgnet --task md-speed --device cpu \\",
        "    --store /tmp/speed.sqlite --out reports/speed/results --no-progress",
        "OMP_NUM_THREADS=1 python -m pytest benchmarks/ --benchmark-only --benchmark-json=reports/speed/benchmark.json",
        "OMP_NUM_THREADS=1 python -m pytest benchmarks/ --benchmark-only --benchmark-timer time.process_time \\",
        "    --benchmark-json=reports/speed/benchmark-cpu-time.json",
        "python scripts/speed_report.py --results reports/speed/results \\",
        "    --benchmark reports/speed/benchmark.json reports/speed/benchmark-cpu-time.json \\",
        "    --out reports/speed.md --plot reports/speed/ns_per_day.png",
        "```",
        "",
        "On a GPU use `--device cuda`; results are stored per device and host, so CPU and GPU runs do not mix. The "
        "GPU rows come from the GPU pack (`scripts/device_pack.sh`, then `python scripts/device_report.py FOLDER...`"
        ", README 'GPU pack'); this script finds its run folders under `reports/speed/` by itself.",
        "",
        "md-speed runs NVE velocity-Verlet MD (1 fs, 300 K) on diamond Si supercells of growing size, with untimed "
        "warm-up steps and three timed runs per size (median reported). The ladder stops at the first size that "
        "runs out of memory or whose timed phase, estimated from its warm-up steps, exceeds "
        "`max_seconds_per_size`. Peak memory is the process's peak resident set on CPU (model and Python "
        "included) and `torch.cuda.max_memory_allocated` on GPU; the drift is the fitted change of the total "
        "energy per atom over the timed run (30 fs by default).",
        "",
    ]
    lines += md_speed_section(frame, plot, report_dir)
    lines += device_runs_section(device_runs or [], report_dir)
    lines += overhead_section(benchmark_files)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", nargs="*", type=Path, default=[REPO / "reports" / "speed" / "results"],
                        help="md-speed results JSON files or folders holding them")
    parser.add_argument("--benchmark", nargs="*", type=Path, default=[],
                        help="pytest-benchmark JSON files of benchmarks/ (e.g. one wall-clock, one CPU-time run)")
    parser.add_argument("--task", default=TASK, help="task name of the results files (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "speed.md")
    parser.add_argument("--plot", type=Path, help="also write the ns/day plot here (PNG), linked from the report")
    parser.add_argument("--device-runs", nargs="*", type=Path, default=None,
                        help="GPU pack run folders (default: those under reports/speed/); their md-speed results "
                             "join --results")
    args = parser.parse_args(argv)
    device_runs = device_run_dirs(REPO / "reports" / "speed") if args.device_runs is None else args.device_runs
    results = [p for p in [*args.results, *[run / tag for run in device_runs for tag in ("md-speed", "md-speed-cueq")]]
               if p.exists()]
    frame = md_speed_frame(results, task=args.task)
    plot = None
    if args.plot is not None and not frame[(frame["quantity"] == "ns_per_day") & (frame["status"] == "ok")].empty:
        plot = plot_md_speed(frame, args.plot)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(frame, args.benchmark, plot, args.out.parent, results, device_runs))
    print(f"wrote {args.out}" + (f" and {plot}" if plot else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
