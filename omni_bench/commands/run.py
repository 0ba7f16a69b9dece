"""``omni-bench run``: evaluate models on tasks; cached and resumable."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
from pathlib import Path

from .. import executors
from ..arguments import path_argument
from ..errors import OmniBenchError

HELP = "evaluate models on tasks; cached and resumable"


def add_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument("--model", "-m", action="append", required=True,
                     help="built-in name, NAME@CHANNEL, NAME+d3, a model-card YAML, a plug-in name, or "
                          "package.module:factory (repeatable)")
    run.add_argument("--channel", "-c", action="append", default=[],
                     help="channel of a multi-task model, or 'all' (repeatable)")
    run.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                     help="keyword argument for the model factory (repeatable)")
    run.add_argument("--suite", "-s", action="append", default=[], help="suite to run (repeatable)")
    run.add_argument("--task", "-t", action="append", default=[], help="task to run (repeatable)")
    run.add_argument("--limit", type=int, help="run only the first N scored units of each task: N items, or the "
                     "first N reactions, complexes or landscapes with the items they need")
    run.add_argument("--rerun", action="store_true", help="recompute items that are already stored")
    run.add_argument("--store", type=path_argument, help="SQLite result store (default: in the user cache folder)")
    run.add_argument("--out", type=path_argument, default=Path("omni-bench-results"),
                     help="folder for results JSON and predictions CSV (default: %(default)s)")
    run.add_argument("--data-dir", type=path_argument,
                     help="reference data root (default: $OMNI_BENCH_DATA, then the user cache)")
    add_fetch_argument(run)
    run.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    run.add_argument("--item-timeout", type=float, metavar="SECONDS",
                     help="record an item as failed when it takes longer than this")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--isolate", action="store_true",
                     help="run in-process models in a worker process: a segfault, abort or kill for memory fails "
                          "the item in flight instead of the run (models with their own environment always are)")
    run.add_argument("--threads", type=int, metavar="N",
                     help="CPU threads for the model (torch and OpenMP); default: the cores this process may use "
                          "less those other work keeps busy (the 1-minute load average), at least 1, or "
                          "$OMP_NUM_THREADS where set; the run says which when the first model loads")
    add_safety_arguments(run)
    add_batch_arguments(run)
    executors.add_arguments(run)


def add_fetch_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fetch", action="store_true",
                        help="first download the reference data the tasks need and the data root lacks, from "
                             "their upstream sources or $OMNI_BENCH_MIRROR, and the weights a model card downloads "
                             "($OMNI_BENCH_WEIGHTS_MIRROR) (also: 'fetch: auto' in the user config)")


def ensure_data(tasks, root: Path, origin: str, args: argparse.Namespace) -> None:
    """Stop with the fetch command when data is missing, or fetch it first (``--fetch``, ``fetch: auto``)."""
    from .. import user_config
    from ..fetch import FetchSettings, ensure_task_data, resolve_source

    fetch = args.fetch or user_config.load()["fetch"] == "auto"
    ensure_task_data(tasks, root, origin, fetch,
                     FetchSettings(source=resolve_source(None), progress=not args.no_progress),
                     log=lambda text: print(text, file=sys.stderr))


def ensure_weights(variants, args: argparse.Namespace) -> None:
    """Stop with how to get a model's weights when a card's download is missing, or fetch it (``--fetch``,
    ``fetch: auto``); a checkpoint that differs from its pin is refused (``models/weights.py``)."""
    from .. import user_config
    from ..models.weights import ensure_weights as ensure

    ensure([v.card for v in variants], args.fetch or user_config.load()["fetch"] == "auto",
           progress=not args.no_progress, log=lambda text: print(text, file=sys.stderr))


def add_safety_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``run`` and ``sweep`` that lift a safeguard: each names what it lets happen."""
    parser.add_argument("--trust-code", action="store_true",
                        help="let model cards and sweep files name factories other than omni-bench's calculator "
                             "factories and its plug-ins', pass a factory arguments it does not declare, load "
                             "checkpoints whose pickle could run code, and let a cluster config or sweep file "
                             "put shell commands in batch scripts or choose the Dask scheduler (recorded in the "
                             "results JSON); only for files you trust")
    parser.add_argument("--replace-complete", action="store_true",
                        help="let a --limit run replace a complete results file in --out")


def add_batch_arguments(parser: argparse.ArgumentParser, default_text: str = "") -> None:
    """The batched single-point options shared by ``run`` and ``sweep``."""
    from ..models.batched import CPU_BATCH_ATOMS, GPU_BATCH_ATOMS

    group = parser.add_argument_group("batched single points")
    group.add_argument("--batch-atoms", type=int, metavar="N",
                       help="atoms per batch when a model computes many single points at once (sevenn, CHGNet; "
                            f"others use their ASE calculator); 0: off (default: {default_text}{CPU_BATCH_ATOMS} "
                            f"on CPU, {GPU_BATCH_ATOMS} on GPU)")
    group.add_argument("--no-batch", action="store_true",
                       help="every energy through the model's ASE calculator, one structure at a time")


def batch_atoms_from_args(args: argparse.Namespace, from_file: int | None = None) -> int | None:
    """The batch budget: ``--no-batch`` (0), else ``--batch-atoms``, else the sweep file's, else None (the
    default for the model's device)."""
    if args.no_batch:
        if args.batch_atoms:
            raise OmniBenchError("--no-batch turns batching off; drop --batch-atoms or --no-batch")
        return 0
    value = args.batch_atoms if args.batch_atoms is not None else from_file
    if value is not None and value < 0:
        raise OmniBenchError(f"--batch-atoms must be 0 (off) or a positive number of atoms, not {value}")
    return value


def run(args) -> int:
    from .. import data, task_registry
    from ..models.registry import resolve_models
    from ..run.options import RunOptions
    from ..store import ResultStore

    if not args.suite and not args.task:
        raise OmniBenchError("choose what to run with --suite or --task (see: omni-bench list suites)")
    if args.limit is not None and args.limit < 1:
        raise OmniBenchError("--limit must be at least 1")
    settings = executors.settings_from_args(args)
    tasks = task_registry.select(args.task, args.suite, args.tasks_dir)
    variants = resolve_models(args.model, args.channel, args.model_arg, isolate=args.isolate,
                              trust_code=args.trust_code)
    root, origin = data.resolve_data_root(args.data_dir)
    ensure_data(tasks, root, origin, args)
    ensure_weights(variants, args)
    header = []
    if settings.name == "serial":  # Dask workers get one thread each from their nanny
        threads, why = choose_threads(args.threads)
        limit_threads(threads)
        header.append(f"threads: {threads} ({why})")
    store = ResultStore(args.store)
    options = RunOptions(store=store, out_dir=args.out, data_root=root, data_origin=origin, device=args.device,
                         limit=args.limit, rerun=args.rerun, progress=not args.no_progress,
                         item_timeout=args.item_timeout, batch_atoms=batch_atoms_from_args(args),
                         replace_complete=args.replace_complete, header=header)
    return execute(variants, tasks, options, settings, "command")


def choose_threads(requested: int | None, cores: int | None = None, load: float | None = None) -> tuple[int, str]:
    """(threads for the model, why): ``--threads``, else ``OMP_NUM_THREADS``, else the usable cores less those
    other work keeps busy (a torch run beside another job on all cores took 4x the CPU time and 8x the wall
    time of the same run alone)."""
    if requested is not None:
        return requested, "--threads"
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"]), "OMP_NUM_THREADS"
    cores = cores or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    load = os.getloadavg()[0] if load is None and hasattr(os, "getloadavg") else (load or 0.0)
    free = max(1, min(cores, cores - round(load)))
    busy = f", {cores - free} kept busy by other work (1-minute load {load:.1f})" if free < cores else ""
    return free, f"of {cores} usable cores{busy}; --threads N to choose"


def limit_threads(threads: int) -> None:
    """Cap the model's CPU threads: OpenMP reads the variable when a library starts it, torch is told now."""
    if threads < 1:
        raise OmniBenchError(f"--threads must be at least 1, not {threads}")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def describe_channels(variants) -> list[str]:
    """One line per multi-task model variant: which channel runs, whether it is the card's default, and the
    others (a newcomer must not get PBE from '--model omni' without a word)."""
    lines = []
    for variant in variants:
        card = variant.card
        if not card.is_multichannel:
            continue
        others = ", ".join(c for c in card.channels if c != variant.channel)
        default = ", the model's default" if variant.channel == card.default_channel else ""
        lines.append(f"{card.name}: channel {variant.channel}{default} (others: {others}; choose with "
                     f"{card.name}@CHANNEL, --channel, or --channel all)")
    return list(dict.fromkeys(lines))


def execute(variants, tasks, options, settings, what: str) -> int:
    """Run, close the store whatever happens, and print the results table; 128 + the signal number when
    interrupted (130 for Ctrl-C)."""
    for line in describe_channels(variants):
        print(line, file=sys.stderr)
    try:
        outcomes = executors.run(variants, tasks, options, settings)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (cli.Terminated, with its signal number)
        print(f"\ninterrupted: finished items are saved in {options.store.path}; run the same {what} to resume",
              file=sys.stderr)
        return 128 + getattr(exc, "signum", signal.SIGINT)
    finally:
        options.store.close()
    print(format_table(outcomes))
    print(f"\nresults: {options.out_dir.resolve()}   store: {options.store.path}")
    return 0


def format_table(outcomes, width: int | None = None) -> str:
    """The results table: what was computed (items) and scored, failures, the items whose charge or spin the
    model could not take, the reference convention where a task has several, and every metric, wrapped to
    the terminal's ``width``."""
    from ..taskspec import describe_counts

    width = width or shutil.get_terminal_size((120, 24)).columns
    columns = [("model", lambda o: o.model), ("task", lambda o: o.task),
               ("items, scored", lambda o: describe_counts(o.n_items, o.item_name, o.n_scored, o.scored_name)),
               ("failed", lambda o: str(o.n_failed))]
    if any(o.charge_spin_dropped for o in outcomes):
        columns.append(("charge/spin not passed", lambda o: str(o.charge_spin_dropped)))
    if any(o.reference_convention for o in outcomes):
        columns.append(("reference", lambda o: o.reference_convention or "-"))
    rows = [[name for name, _ in columns]] + [[cell(o) for _, cell in columns] for o in outcomes]
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    lines = []
    for row, outcome in zip(rows, [None, *outcomes], strict=True):
        head = "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + "  "
        lines += _wrapped(head, ["metrics"] if outcome is None else
                          [f"{name}={_fmt(m['value'])}{_unit(m['unit'])}" for name, m in outcome.metrics.items()],
                          width)
    lines.insert(1, "-" * min(width, max(len(line) for line in lines)))
    return "\n".join(lines)


def _wrapped(head: str, cells: list[str], width: int) -> list[str]:
    """``head`` then the cells, continued on lines indented under the first cell when ``width`` is reached."""
    lines, line = [], head
    for cell in cells:
        if line.strip() and len(line) + len(cell) > width and line != head:
            lines.append(line.rstrip())
            line = " " * len(head)
        line += cell + "  "
    lines.append(line.rstrip())
    return lines


def _unit(unit: str) -> str:
    return "" if unit in ("1", "") else f" {unit}"


def _fmt(value: float) -> str:
    return f"{value:.4g}" if value == value else "nan"


