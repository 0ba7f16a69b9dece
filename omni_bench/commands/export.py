"""``omni-bench export``: results of chosen models and tasks as one bundle, to join a leaderboard elsewhere."""

from __future__ import annotations

import argparse

from ..arguments import path_argument

HELP = "write chosen results (JSON and predictions) into one .tar.gz bundle that leaderboard, report and gate read"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .report import add_selection

    add_selection(parser)
    parser.add_argument("--out", "-o", type=path_argument, required=True, help="the bundle to write (NAME.tar.gz)")


def run(args) -> int:
    from ..errors import OmniBenchError
    from ..reporting.bundle import export
    from ..reporting.load import DEFAULT_RESULTS_DIR, load_results, select

    folders = args.results or [DEFAULT_RESULTS_DIR]
    results = select(load_results(folders, args.prefer), args.model, args.task, args.suite)
    if not results:
        raise OmniBenchError(f"export: no results in {', '.join(map(str, folders))} for the chosen models and tasks")
    try:
        path = export(results, args.out)
    except OSError as exc:
        raise OmniBenchError(f"export: cannot write {args.out}: {exc}") from None
    incomplete = sorted(f"{r.label} on {r.task}" for r in results if r.limit is not None)
    print(f"{path}: {len(results)} results of {len({r.label for r in results})} model variants on "
          f"{len({r.task for r in results})} tasks")
    if incomplete:
        print("note: run with --limit (not the whole task): " + ", ".join(incomplete))
    return 0
