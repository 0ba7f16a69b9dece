"""``omni-bench leaderboard``: every stored (model, channel) ranked on every task, with 95% intervals."""

from __future__ import annotations

import argparse

from ..arguments import path_argument
from ..errors import OmniBenchError
from .report import add_common, command_line, load_selected, output_stem

HELP = "rank every (model, channel) across tasks with 95% intervals; terminal, Markdown, CSV and HTML"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser)
    parser.add_argument("--out", "-o", type=path_argument,
                        help="also write OUT.md, OUT.csv and OUT.html (e.g. reports/leaderboard)")


def run(args) -> int:
    from ..reporting.leaderboard import annotate, build
    from ..reporting.leaderboard_output import terminal, write_all
    from ..reporting.tables import metric_table

    results = load_selected(args)
    metrics, replicates = metric_table(results, args.bootstrap, args.seed)
    board = annotate(build(metrics, replicates), results)
    print(terminal(board))
    if args.out:
        command = command_line("leaderboard", args)
        try:
            paths = write_all(board, results, output_stem(args.out, (".md", ".csv", ".html")), command)
        except OSError as exc:
            raise OmniBenchError(f"cannot write the leaderboard to {args.out}: {exc}") from None
        print("\nwritten: " + ", ".join(map(str, paths)))
    return 0
