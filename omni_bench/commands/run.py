"""``omni-bench run``: evaluate models on tasks; cached and resumable."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .. import executors
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
    run.add_argument("--limit", type=int, help="run only the first N items of each task")
    run.add_argument("--rerun", action="store_true", help="recompute items that are already stored")
    run.add_argument("--store", type=Path, help="SQLite result store (default: in the user cache folder)")
    run.add_argument("--out", type=Path, default=Path("omni-bench-results"),
                     help="folder for results JSON and predictions CSV (default: %(default)s)")
    run.add_argument("--data-dir", help="reference data root (default: $OMNI_BENCH_DATA, then the user cache)")
    add_fetch_argument(run)
    run.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    run.add_argument("--item-timeout", type=float, metavar="SECONDS",
                     help="record an item as failed when it takes longer than this")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--isolate", action="store_true",
                     help="run in-process models in a worker process: a segfault, abort or kill for memory fails "
                          "the item in flight instead of the run (models with their own environment always are)")
    run.add_argument("--threads", type=int, metavar="N",
                     help="CPU threads for the model (torch and OpenMP); default: the libraries' choice, usually "
                          "every core, which is slower than 1 on a machine that is busy with other work")
    add_batch_arguments(run)
    executors.add_arguments(run)


def add_fetch_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fetch", action="store_true",
                        help="first download the reference data the tasks need and the data root lacks, from "
                             "their upstream sources or $OMNI_BENCH_MIRROR (also: 'fetch: auto' in the user config)")


def ensure_data(tasks, root: Path, origin: str, args: argparse.Namespace) -> None:
    """Stop with the fetch command when data is missing, or fetch it first (``--fetch``, ``fetch: auto``)."""
    from .. import user_config
    from ..fetch import FetchSettings, ensure_task_data, resolve_source

    fetch = args.fetch or user_config.load()["fetch"] == "auto"
    ensure_task_data(tasks, root, origin, fetch,
                     FetchSettings(source=resolve_source(None), progress=not args.no_progress),
                     log=lambda text: print(text, file=sys.stderr))


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
    from ..runner import RunOptions
    from ..store import ResultStore

    if not args.suite and not args.task:
        raise OmniBenchError("choose what to run with --suite or --task (see: omni-bench list suites)")
    if args.limit is not None and args.limit < 1:
        raise OmniBenchError("--limit must be at least 1")
    settings = executors.settings_from_args(args)
    if args.threads is not None:
        limit_threads(args.threads)
    tasks = task_registry.select(args.task, args.suite, args.tasks_dir)
    variants = resolve_models(args.model, args.channel, args.model_arg, isolate=args.isolate)
    root, origin = data.resolve_data_root(args.data_dir)
    ensure_data(tasks, root, origin, args)
    store = ResultStore(args.store)
    options = RunOptions(store=store, out_dir=args.out, data_root=root, data_origin=origin, device=args.device,
                         limit=args.limit, rerun=args.rerun, progress=not args.no_progress,
                         item_timeout=args.item_timeout, batch_atoms=batch_atoms_from_args(args))
    return execute(variants, tasks, options, settings, "command")


def limit_threads(threads: int) -> None:
    """Cap the model's CPU threads: OpenMP reads the variable when a library starts it, torch is told now."""
    if threads < 1:
        raise OmniBenchError(f"--threads must be at least 1, not {threads}")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def execute(variants, tasks, options, settings, what: str) -> int:
    """Run, close the store whatever happens, and print the results table; 130 when interrupted."""
    try:
        outcomes = executors.run(variants, tasks, options, settings)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished items are saved in {options.store.path}; run the same {what} to resume",
              file=sys.stderr)
        return 130
    finally:
        options.store.close()
    print(format_table(outcomes))
    print(f"\nresults: {options.out_dir.resolve()}   store: {options.store.path}")
    return 0


def format_table(outcomes) -> str:
    rows = [("model", "task", "n", "failed", "metrics")]
    for o in outcomes:
        shown = "  ".join(f"{name}={_fmt(m['value'])} {m['unit']}" for name, m in o.metrics.items())
        rows.append((o.model, o.task, str(o.n_items), str(o.n_failed), shown))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4] for r in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return f"{value:.4g}" if value == value else "nan"


