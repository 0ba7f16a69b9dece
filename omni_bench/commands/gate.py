"""``omni-bench gate``: fail (exit 1) when results regress against a baseline; for CI."""

from __future__ import annotations

import argparse

from ..arguments import path_argument
from ..errors import OmniBenchError
from .report import add_selection

HELP = "compare results with a baseline using the task files' gate tolerances; exit 1 on a regression"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--baseline", "-b", type=path_argument, required=True,
                        help="baseline: a JSON from --write-baseline, a leaderboard CSV, a results JSON or folder")
    add_selection(parser, "current results: ", "all in the baseline")
    parser.add_argument("--channel", "-c", help="only this channel of a multi-task model")
    parser.add_argument("--junit", type=path_argument, metavar="FILE", help="also write the checks as JUnit XML")
    parser.add_argument("--write-baseline", action="store_true",
                        help="record the current results as the baseline (to --baseline) instead of comparing")


def run(args) -> int:
    from .. import task_registry
    from ..reporting import gate
    from ..reporting.load import DEFAULT_RESULTS_DIR, load_results, select
    from ..reporting.text import plain_table
    from ..safe_text import printable

    folders = args.results or [DEFAULT_RESULTS_DIR]
    current = select(load_results(folders, args.prefer), args.model, args.task, args.suite, args.channel)
    if args.write_baseline:
        if not current:
            raise OmniBenchError(f"no results to record in {', '.join(map(str, folders))}" + _scope(args))
        path = gate.write_baseline(current, args.baseline)
        print(printable(f"baseline: {path} ({len(current)} results: {', '.join(sorted({r.label for r in current}))})"))
        return 0
    specs = task_registry.all_tasks(args.tasks_dir)
    suites = {r.task: r.suites for r in current}  # as recorded, for tasks the task folders no longer have
    suites.update({name: spec.suites for name, spec in specs.items()})
    baseline = [s for s in gate.read_baseline(args.baseline)
                if gate.matches(s, args.model, args.channel) and _in_scope(s.task, suites.get(s.task, []), args)]
    if not baseline:
        who = ", ".join(args.model) + (f" channel {args.channel}" if args.channel else "") or "any model"
        raise OmniBenchError(f"baseline {args.baseline} has no results for {who}" + _scope(args))
    gates = {r.task: r.gate for r in current}  # as recorded, for tasks the task folders no longer have
    gates.update({s.task: specs[s.task].gate for s in baseline if s.task in specs})
    checks = gate.compare(baseline, [gate.snapshot(r) for r in current], gates, {r.key: r for r in current})
    print(plain_table(gate.TABLE_HEADER, gate.table_rows(checks)))
    failed = sum(c.status == gate.FAIL for c in checks)
    if args.junit:
        try:
            args.junit.parent.mkdir(parents=True, exist_ok=True)
            args.junit.write_text(gate.junit_xml(checks), encoding="utf-8")
        except OSError as exc:
            raise OmniBenchError(f"cannot write {args.junit}: {exc}") from None
    print(f"\n{failed} of {len(checks)} checks failed" if failed else f"\nall {len(checks)} checks passed")
    return 1 if failed else 0


def _in_scope(task: str, suites: list[str], args) -> bool:
    """Whether a baseline entry's task is chosen by --task and --suite, as ``load.select`` chooses results."""
    return not (args.task or args.suite) or task in args.task or bool(set(suites) & set(args.suite))


def _scope(args) -> str:
    """' in suite X, task Y' for the filters given, for a message that found nothing."""
    named = [*(f"suite {s}" for s in args.suite), *(f"task {t}" for t in args.task)]
    return f" in {', '.join(named)}" if named else ""
