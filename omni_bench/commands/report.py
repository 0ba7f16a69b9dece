"""``omni-bench report``: one self-contained HTML report with parity plots and a Markdown summary."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from ..arguments import path_argument
from ..errors import OmniBenchError

HELP = "HTML report (parity plots, error distributions, channel matrix, 95% intervals) and a Markdown summary"


def add_selection(parser: argparse.ArgumentParser, what: str = "",
                  model_default: str = "all") -> None:
    """Where results are read and which are chosen: ``report``, ``leaderboard``, ``gate`` and ``export``."""
    parser.add_argument("--results", "-r", action="append", type=path_argument, default=[],
                        help=f"{what}results folder written by 'omni-bench run --out', or a bundle from 'omni-bench "
                             "export' (repeatable; default: omni-bench-results); where two hold the same (model, "
                             "task), the later wins")
    add_prefer(parser)
    parser.add_argument("--model", "-m", action="append", default=[],
                        help=f"model label (7net-mf-0@PBE) or name (all its channels); repeatable; default: "
                             f"{model_default}")
    parser.add_argument("--suite", "-s", action="append", default=[], help="only tasks of this suite (repeatable)")
    parser.add_argument("--task", "-t", action="append", default=[], help="only this task (repeatable)")


def add_common(parser: argparse.ArgumentParser) -> None:
    """Options shared with ``leaderboard``: the selection and the bootstrap."""
    add_selection(parser)
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                        help="bootstrap resamples for the 95%% intervals (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")


def add_prefer(parser: argparse.ArgumentParser) -> None:
    """``--prefer``, for every command that reads ``--results`` folders (report, leaderboard, gate)."""
    parser.add_argument("--prefer", type=path_argument, metavar="FOLDER",
                        help="one of the --results folders whose results win over the others' for the same "
                             "(model, task), whatever the order")


def load_selected(args):
    """The chosen results, checked to be comparable (``reporting.comparable``), or a one-line error saying what
    was looked at."""
    from .. import task_registry
    from ..reporting.comparable import check_comparable
    from ..reporting.load import DEFAULT_RESULTS_DIR, load_results, select

    if args.bootstrap < 1:
        raise OmniBenchError("--bootstrap must be at least 1")
    folders = args.results or [DEFAULT_RESULTS_DIR]
    results = select(load_results(folders, args.prefer), args.model, args.task, args.suite)
    if not results:
        wanted = " ".join([*(f"--model {m}" for m in args.model), *(f"--suite {s}" for s in args.suite),
                           *(f"--task {t}" for t in args.task)])
        raise OmniBenchError(f"no results in {', '.join(map(str, folders))}" + (f" for {wanted}" if wanted else "")
                             + " (write them with: omni-bench run ... --out FOLDER)")
    check_comparable(results, task_registry.all_tasks(args.tasks_dir))
    return results


def command_line(name: str, args) -> str:
    """The command as it could be typed again, rebuilt from the parsed options (for provenance)."""
    words = ["omni-bench", name]
    for flag, values in (("--results", args.results), ("--model", args.model), ("--suite", args.suite),
                         ("--task", args.task)):
        for value in values:
            words += [flag, str(value)]
    if args.prefer:
        words += ["--prefer", str(args.prefer)]
    if args.bootstrap != 1000:
        words += ["--bootstrap", str(args.bootstrap)]
    if args.seed != 0:
        words += ["--seed", str(args.seed)]
    if getattr(args, "out", None):
        words += ["--out", str(args.out)]
    return shlex.join(words)


def output_stem(out: Path, suffixes: tuple[str, ...]) -> Path:
    """``reports/NAME`` from ``reports/NAME`` or ``reports/NAME.html``."""
    return out.with_suffix("") if out.suffix in suffixes else out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser)
    parser.add_argument("--out", "-o", type=path_argument, required=True,
                        help="writes OUT.html and OUT.md (e.g. reports/quick)")
    parser.add_argument("--title", help="report title (default: the output name)")


def run(args) -> int:
    from ..reporting.report import build_report, write_report

    results = load_selected(args)
    stem = output_stem(args.out, (".html", ".md"))
    command = command_line("report", args)
    report = build_report(results, args.title or f"omni-bench report: {stem.name}", args.suite, args.bootstrap,
                          args.seed, command)
    try:
        html_path, md_path = write_report(report, stem)
    except OSError as exc:
        raise OmniBenchError(f"cannot write the report to {stem}: {exc}") from None
    print(f"report: {html_path}\nsummary: {md_path}")
    return 0
