"""The ``omni-bench`` command: one sub-command per module in ``omni_bench.commands``."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from . import commands
from .arguments import path_argument
from .errors import OmniBenchError
from .safe_text import printable
from .version import __version__


def _command_modules() -> dict:
    return {info.name: importlib.import_module(f"{commands.__name__}.{info.name}")
            for info in pkgutil.iter_modules(commands.__path__) if not info.name.startswith("_")}


class _OneLineParser(argparse.ArgumentParser):
    """A mistake on the command line is one line (exit 2), as every other input error is."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {printable(message)} (see {self.prog} --help)\n")


def _parser(modules: dict) -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="omni-bench", description="Cross-domain benchmarks for universal machine-learning interatomic potentials.")
    parser.add_argument("--version", action="version", version=f"omni-bench {__version__}")
    parser.add_argument("--tasks-dir", action="append", type=path_argument, default=[],
                        help="extra folder of task files (repeatable; also OMNI_BENCH_TASKS)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in modules.items():
        # argparse %-formats help strings (not descriptions): a literal '95%' must reach it as '95%%'
        module.add_arguments(sub.add_parser(name, help=module.HELP.replace("%", "%%"), description=module.HELP))
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: handled as Ctrl-C is, so that ``finally`` blocks stop the model workers and close the
    store (every finished item is already committed) before omni-bench exits."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def _terminate_like_ctrl_c() -> Iterator[None]:
    """SIGTERM and SIGHUP raise ``Terminated`` once; a second one acts as it would have without omni-bench.
    Only the main thread can set handlers (tests and libraries may call ``main`` elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = [name for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    previous = {name: signal.getsignal(getattr(signal, name)) for name in names}

    def restore() -> None:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)

    def interrupt(signum, frame):
        restore()
        raise Terminated(signum)

    for name in names:
        signal.signal(getattr(signal, name), interrupt)
    try:
        yield
    finally:
        restore()


def main(argv: list[str] | None = None) -> int:
    modules = _command_modules()
    args = _parser(modules).parse_args(argv)
    try:
        with _terminate_like_ctrl_c():
            return modules[args.command].run(args)
    except OmniBenchError as exc:
        print(f"omni-bench: error: {printable(exc)}", file=sys.stderr)  # names from files: no escape sequences
        return 2
    except OSError as exc:  # a folder that cannot be made, a file that cannot be written: the user's to fix
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"omni-bench: error: {printable(where)}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except Terminated as exc:
        print(f"omni-bench: stopped by {exc}", file=sys.stderr)
        return 128 + exc.signum
    except BrokenPipeError:  # output piped into a reader that stopped (| head): nothing left to say
        sys.stderr.close()
        return 141


if __name__ == "__main__":
    sys.exit(main())
