"""The ``omni-bench`` command: one sub-command per module in ``omni_bench.commands``."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

from . import __version__, commands
from .errors import OmniBenchError


def _command_modules() -> dict:
    return {info.name: importlib.import_module(f"{commands.__name__}.{info.name}")
            for info in pkgutil.iter_modules(commands.__path__) if not info.name.startswith("_")}


def _parser(modules: dict) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omni-bench", description="Cross-domain benchmarks for universal machine-learning interatomic potentials.")
    parser.add_argument("--version", action="version", version=f"omni-bench {__version__}")
    parser.add_argument("--tasks-dir", action="append", type=Path, default=[],
                        help="extra folder of task files (repeatable; also OMNI_BENCH_TASKS)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in modules.items():
        # argparse %-formats help strings (not descriptions): a literal '95%' must reach it as '95%%'
        module.add_arguments(sub.add_parser(name, help=module.HELP.replace("%", "%%"), description=module.HELP))
    return parser


def main(argv: list[str] | None = None) -> int:
    modules = _command_modules()
    args = _parser(modules).parse_args(argv)
    try:
        return modules[args.command].run(args)
    except OmniBenchError as exc:
        print(f"omni-bench: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into a reader that stopped (| head): nothing left to say
        sys.stderr.close()
        return 141


if __name__ == "__main__":
    sys.exit(main())
