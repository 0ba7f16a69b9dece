"""The ``omni-bench`` command. Listing reads YAML only; model packages load when a run needs them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .errors import OmniBenchError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omni-bench", description=__doc__)
    parser.add_argument("--version", action="version", version=f"omni-bench {__version__}")
    parser.add_argument("--tasks-dir", action="append", type=Path, default=[],
                        help="extra folder of task files (repeatable; also OMNI_BENCH_TASKS)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="evaluate models on tasks; cached and resumable")
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
    run.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    run.add_argument("--item-timeout", type=float, metavar="SECONDS",
                     help="record an item as failed when it takes longer than this")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")

    data_cmd = sub.add_parser("data", help="reference datasets: list, verify, fetch")
    data_sub = data_cmd.add_subparsers(dest="data_command", required=True)
    for name, text in (("list", "datasets, sizes, and whether present and verified"),
                       ("verify", "sha256 of every file; non-zero exit if any is missing or corrupted"),
                       ("fetch", "download datasets from the mirror, resuming and verifying")):
        p = data_sub.add_parser(name, help=text)
        p.add_argument("names", nargs="*" if name != "fetch" else "+", metavar="DATASET")
        p.add_argument("--data-dir", help="reference data root (default: $OMNI_BENCH_DATA, then the user cache)")
        if name == "fetch":
            p.add_argument("--mirror", help="URL or local folder holding the datasets (default: $OMNI_BENCH_MIRROR)")

    listing = sub.add_parser("list", help="list tasks, suites or models (imports no model code)")
    listing.add_argument("what", choices=["tasks", "suites", "models"])
    listing.add_argument("--data-dir", help="reference data root, for item counts of data-backed tasks")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            return _list(args)
        if args.command == "data":
            return _data(args)
        return _run(args)
    except OmniBenchError as exc:
        print(f"omni-bench: error: {exc}", file=sys.stderr)
        return 2


def _list(args) -> int:
    from . import task_registry

    if args.what == "tasks":
        for spec in task_registry.all_tasks(args.tasks_dir).values():
            print(f"{spec.name:<20} v{spec.version}  {','.join(spec.suites):<28} {spec.level_of_theory}")
    elif args.what == "suites":
        counts = _item_counts(task_registry.all_tasks(args.tasks_dir), args.data_dir)
        for suite, names in task_registry.suites(args.tasks_dir).items():
            print(f"{suite:<20} {', '.join(f'{n} ({counts[n]})' for n in names)}")
    else:
        from .models.registry import builtin_cards, find_card, plugin_names

        for name in sorted(builtin_cards()):
            card = find_card(name)
            channels = f"channels: {', '.join(card.channels)}" if card.channels else card.level_of_theory
            print(f"{name:<16} {channels}")
        for name in plugin_names():
            print(f"{name:<16} (plug-in)")
    return 0


def _data(args) -> int:
    from . import data, datasets
    from .fetch import fetch_dataset, resolve_mirror

    root, origin = data.resolve_data_root(args.data_dir)
    chosen = [datasets.get(n) for n in args.names] or list(datasets.registry().values())
    if args.data_command == "fetch":
        mirror = resolve_mirror(args.mirror)
        failed = 0
        for dataset in chosen:
            print(f"{dataset.name}: fetching {len(dataset.files)} files ({dataset.size / 1e6:.1f} MB) into {root}")
            report = fetch_dataset(dataset, root, mirror)
            failed += len(report.failed)
            print(f"{dataset.name}: {len(report.fetched)} fetched, {len(report.already_present)} already "
                  f"present, {len(report.failed)} failed" + (f", extracted {len(report.extracted)} archives"
                                                           if report.extracted else ""))
        return 1 if failed else 0
    print(f"data root: {root} ({origin})")
    problems = 0
    for dataset in chosen:
        state = datasets.status(root, dataset) if root.is_dir() else {"missing": [f.path for f in dataset.files]}
        bad = {k: v for k, v in state.items() if k != "ok" and v}
        problems += sum(len(v) for v in bad.values())
        verdict = "verified" if not bad else ", ".join(f"{len(v)} {k}" for k, v in bad.items())
        print(f"{dataset.name:<34} {len(dataset.files):>5} files {dataset.size / 1e6:>7.2f} MB  {verdict}")
        if args.data_command == "verify":
            for kind, paths in bad.items():
                for path in paths:
                    print(f"  {kind}: {path}")
    return 1 if problems and args.data_command == "verify" else 0


def _item_counts(tasks: dict, data_dir: str | None) -> dict[str, str]:
    """Items per task, read through the loaders; '?' where the reference data is not there."""
    from . import data, plugins

    root, origin = data.resolve_data_root(data_dir)
    counts = {}
    for name, spec in tasks.items():
        try:
            files = data.task_files(spec, root, origin)
            counts[name] = str(len(plugins.load("loader", spec.loader).load(files, spec.loader_params)))
        except OmniBenchError:
            counts[name] = "?: data missing"
    return counts


def _run(args) -> int:
    from . import data, task_registry
    from .models.registry import resolve_models
    from .runner import RunOptions, run
    from .store import ResultStore

    if not args.suite and not args.task:
        raise OmniBenchError("choose what to run with --suite or --task (see: omni-bench list suites)")
    if args.limit is not None and args.limit < 1:
        raise OmniBenchError("--limit must be at least 1")
    tasks = task_registry.select(args.task, args.suite, args.tasks_dir)
    variants = resolve_models(args.model, args.channel, args.model_arg)
    root, origin = data.resolve_data_root(args.data_dir)
    store = ResultStore(args.store)
    options = RunOptions(store=store, out_dir=args.out, data_root=root, data_origin=origin, device=args.device,
                         limit=args.limit, rerun=args.rerun, progress=not args.no_progress,
                         item_timeout=args.item_timeout)
    try:
        outcomes = run(variants, tasks, options)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished items are saved in {store.path}; run the same command to resume",
              file=sys.stderr)
        return 130
    finally:
        store.close()
    print(format_table(outcomes))
    print(f"\nresults: {args.out.resolve()}   store: {store.path}")
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


if __name__ == "__main__":
    sys.exit(main())
