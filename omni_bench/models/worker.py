"""Models in their own Python environments: the omni-bench side of a worker process.

A card with ``python: /path/to/bin/python`` or ``environment: NAME`` (made by ``omni-bench env create``)
runs its model in a worker process in that interpreter, so its packages never meet omni-bench's (mace-torch
pins e3nn 0.4.4, sevenn needs e3nn >= 0.5). ``run --isolate`` puts in-process models in a worker of this
interpreter. Either way the worker is a crash boundary: a segfault, an abort, a kill for memory, a hang
(with ``--item-timeout``) or a reply that breaks the protocol (another request's id, a missing key, a wrong
type: a model writing to the socket) fails the item in flight, with the signal, exit code or violation, the
worker is killed, and the next request starts a fresh one. A batch that crashes the worker fails nothing
itself: its structures are computed one at a time (``AbandonBatches``), each failing only for its own crash.

The worker imports only the small ``omni_bench_worker`` package (ASE and numpy, nothing else), loaded from
omni-bench's own installation by path, so the model's environment needs no install step for it and both
sides always run the same protocol. Messages are length-prefixed JSON over a socket pair (``wire.py``):
data, never pickles.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

import omni_bench_worker
from omni_bench_worker import wire

from ..errors import OmniBenchError, StopTask
from ..safe_text import short_repr
from .batched import AbandonBatches
from .card import ModelCard, checkpoint_packages, requirement_name
from .environments import env_python

#: where the worker package lives: the worker loads it from here, by path (nothing else of this
#: installation is on its sys.path)
PACKAGE_DIR = str(Path(omni_bench_worker.__file__).resolve().parent)
BOOTSTRAP = (
    "import importlib.util, sys\n"
    "folder = sys.argv[1]\n"
    "spec = importlib.util.spec_from_file_location('omni_bench_worker', folder + '/__init__.py',"
    " submodule_search_locations=[folder])\n"
    "package = importlib.util.module_from_spec(spec)\n"
    "sys.modules['omni_bench_worker'] = package\n"
    "spec.loader.exec_module(package)\n"
    "sys.exit(package.main(sys.argv[2:]))\n"
)
#: seconds between checks that a busy worker is still alive (and chances for a thread's time limit to act)
POLL_SECONDS = 0.5
#: a worker that crashes on this many single structures before it has answered any request stops the task
#: (the model cannot compute anything here); once it has answered, a crash fails only the item in flight
MAX_CRASHES_BEFORE_AN_ANSWER = 3
#: how much of a dead worker's log its death notice reads (the end of it: a log may be huge)
LOG_TAIL_BYTES = 8192
#: what every worker interpreter needs besides the model's own packages
WORKER_REQUIREMENTS = ("ase", "numpy")


@dataclass(frozen=True)
class Interpreter:
    """Where a model's worker runs: the interpreter, how to name it in messages, and whether it is this very
    interpreter (``--isolate``), whose environment variables (PYTHONPATH) the worker then keeps."""

    python: str
    where: str
    same_as_omni_bench: bool = False


def interpreter_for(card: ModelCard, isolate: bool = False) -> Interpreter | None:
    """The interpreter of the card's worker, None for a model run in this process; a clear error, naming the
    card, the field and the fix, when it does not exist."""
    if card.python:
        python = Path(os.path.expandvars(card.python)).expanduser()
        if not python.is_file():
            raise OmniBenchError(
                f"model {card.name} ({card.source}): field 'python': {python} does not exist; point it at the "
                f"bin/python of an environment with {', '.join([*WORKER_REQUIREMENTS, *card.packages])}, or "
                "use 'environment: NAME' and create it with omni-bench env create NAME")
        return Interpreter(str(python), f"python {python}")
    if card.environment:
        python = env_python(card.environment)
        if not python.is_file():
            raise OmniBenchError(
                f"model {card.name} ({card.source}): field 'environment': environment {card.environment!r} does "
                f"not exist (no {python}); create it with: omni-bench env create {card.environment}")
        return Interpreter(str(python), f"environment {card.environment!r} ({python})")
    if isolate:
        return Interpreter(sys.executable, f"an isolated worker ({sys.executable})", same_as_omni_bench=True)
    return None


@dataclass(frozen=True)
class WorkerEnvironment:
    """What a card's worker interpreter has: checked before any item runs, recorded in the fingerprint."""

    interpreter: Interpreter
    python_version: str
    versions: dict[str, str | None]
    package_dirs: dict[str, str | None]


def worker_environment(card: ModelCard) -> WorkerEnvironment | None:
    """The card's worker environment, checked: the interpreter runs, and has ASE, numpy, the card's
    packages and its weights packages. None for a model run in omni-bench's interpreter."""
    interpreter = interpreter_for(card)
    if interpreter is None:
        return None
    weights = [requirement_name(p) for p in card.weights_packages]
    found = _probe(interpreter.python, (*WORKER_REQUIREMENTS, *card.package_names, *weights),
                   tuple(checkpoint_packages(card)))
    field = "environment" if card.environment else "python"
    for key, names, option in (("packages", [*WORKER_REQUIREMENTS, *card.package_names], ""),
                               ("weights_packages", weights, "--no-deps ")):
        missing = [n for n in names if found["versions"].get(n) is None]
        if missing:
            specs = [s for s in [*WORKER_REQUIREMENTS, *card.packages, *card.weights_packages]
                     if requirement_name(s) in missing]
            fix = (f"omni-bench env create {card.environment}" if card.environment
                   else f"{interpreter.python} -m pip install {option}{' '.join(specs)}")
            raise OmniBenchError(f"model {card.name} ({card.source}): field '{key}': {', '.join(missing)} not "
                                 f"installed in {interpreter.where} (field '{field}'); fix: {fix}")
    return WorkerEnvironment(interpreter, found["python"], found["versions"], found["package_dirs"])


@cache
def _probe(python: str, distributions: tuple[str, ...], packages: tuple[str, ...]) -> dict[str, Any]:
    """Ask the interpreter (once per run) what it has, importing no model package there."""
    request = json.dumps({"distributions": list(distributions), "packages": list(packages)})
    try:
        done = subprocess.run([python, "-c", BOOTSTRAP, PACKAGE_DIR, "probe", request], capture_output=True,
                              text=True, timeout=120, env=_worker_env(same_as_omni_bench=python == sys.executable))
        reply = json.loads(done.stdout) if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        done, reply = None, {"error": f"{type(exc).__name__}: {exc}"}
    if reply is None or "versions" not in reply:
        detail = reply["error"] if reply else (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise OmniBenchError(f"{python} cannot run omni-bench's worker ({detail}); it needs Python >= 3.10 "
                             f"with {' and '.join(WORKER_REQUIREMENTS)}")
    return reply


def _worker_env(same_as_omni_bench: bool) -> dict[str, str]:
    """The worker's environment variables: ours, less the ones that would put this interpreter's packages on a
    foreign interpreter's path."""
    env = dict(os.environ)
    if not same_as_omni_bench:
        for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"):
            env.pop(name, None)
    return env


class WorkerError(RuntimeError):
    """The model raised inside the worker (the worker itself goes on)."""


class WorkerCrashed(RuntimeError):
    """The worker process died (signal, exit) or broke the protocol mid-request; it is killed, and the next
    request starts another."""


#: what a successful reply to each request holds besides ``id`` and ``ok``
_REPLY_FIELDS = {"load": {"device": str, "implemented_properties": list, "batched": (str, type(None))},
                 "calculate": {"results": dict}, "energies": {"energies": list}}


def check_reply(reply: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """``reply`` when it answers ``request`` as the protocol says (its id, ``ok``, and the fields of its kind
    with their types); ``wire.ProtocolError`` naming the first thing that is not. What the numbers mean
    (finite, forces of shape (n, 3)) is checked where every model's results are (``checks.py``)."""
    if type(reply.get("id")) is not int or reply["id"] != request["id"]:
        raise wire.ProtocolError(f"the reply to request {request['id']} carries id {_short(reply.get('id'))}")
    if not isinstance(reply.get("ok"), bool):
        raise wire.ProtocolError(f"'ok' is {_short(reply.get('ok'))}, not true or false")
    fields = _REPLY_FIELDS[request["op"]] if reply["ok"] else {"error": str}
    for name, kind in fields.items():
        if not isinstance(reply.get(name), kind) or isinstance(reply.get(name), bool):
            raise wire.ProtocolError(f"'{name}' is {_short(reply.get(name))}")
    if not reply["ok"]:
        return reply
    if request["op"] == "load" and not all(isinstance(p, str) for p in reply["implemented_properties"]):
        raise wire.ProtocolError("'implemented_properties' holds something other than names")
    if request["op"] == "calculate":
        for name, value in reply["results"].items():
            if not (_is_number(value) or isinstance(value, np.ndarray) and value.dtype.kind in "fi"):
                raise wire.ProtocolError(f"result {_short(name)} is {_short(value)}, not numbers")
    if request["op"] == "energies" and not all(_is_number(e) for e in reply["energies"]):
        raise wire.ProtocolError("'energies' holds something other than numbers")
    return reply


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(value: Any) -> str:
    return f"an array of dtype {value.dtype}" if isinstance(value, np.ndarray) else short_repr(value)


class WorkerProcess:
    """One worker process and its socket: started on first use, restarted after a crash."""

    def __init__(self, interpreter: Interpreter, load: dict[str, Any], label: str):
        self.interpreter, self.load_request, self.label = interpreter, load, label
        self.process: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        self.log = None
        #: the reply to ``load``: device, implemented properties, batched evaluator
        self.loaded: dict[str, Any] = {}
        self.starts = 0
        #: crashes on single structures, and whether any worker of this model has answered a request
        self.crashes = 0
        self.answered = False
        self.requests_sent = 0
        self._finalizer = None

    def start(self) -> None:
        """Start the worker and build the model in it; a model that cannot be built is the user's to fix."""
        ours, theirs = socket.socketpair()
        self.log = tempfile.TemporaryFile(prefix="omni-bench-worker-")
        # the kernel's parent-death signal follows the starting thread: only the main thread lives as long as
        # omni-bench (a Dask thread may end first); the worker watches its parent process either way
        pdeathsig = ["pdeathsig"] if threading.current_thread() is threading.main_thread() else []
        self.process = subprocess.Popen(
            [self.interpreter.python, "-c", BOOTSTRAP, PACKAGE_DIR, str(theirs.fileno()), *pdeathsig],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            env=_worker_env(self.interpreter.same_as_omni_bench), start_new_session=True)
        theirs.close()
        ours.settimeout(POLL_SECONDS)
        self.sock = ours
        self.starts += 1
        self._finalizer = weakref.finalize(self, _stop, self.process, self.sock, self.log)
        try:
            reply = self._exchange(self.load_request)
        except WorkerCrashed as exc:
            reply = {"ok": False, "error": str(exc)}
        if not reply["ok"]:
            self.stop()
            raise OmniBenchError(f"model {self.label}: {self.load_request['factory']}(**{self.load_request['kwargs']})"
                                 f" failed in {self.interpreter.where}: {reply['error']}")
        self.loaded = reply

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """The worker's reply to ``message``; ``WorkerError`` when the model raised, ``WorkerCrashed`` when the
        worker died or broke the protocol (it is killed, and restarts on the next request). A crash counts
        against the model only on a request for one structure: which structure of a batch caused it is not
        known. A model that crashes on a few structures before answering anything stops the task."""
        single = message.get("op") != "energies" or len(message["structures"]) == 1
        try:
            if self.process is not None and self._stale():
                self.stop()  # it wrote out of turn or died while idle: nobody's item, start afresh
            if self.process is None:
                if not self.answered and self.crashes >= MAX_CRASHES_BEFORE_AN_ANSWER:
                    raise StopTask(f"the worker of {self.label} crashed on {self.crashes} structures without "
                                   "answering any")
                self.start()
            reply = self._exchange(message)
        except (WorkerCrashed, OmniBenchError):
            self.stop()
            self.crashes += single
            raise
        except BaseException:  # a time limit or Ctrl-C mid-request: the worker's answer would come out of turn
            self.stop()
            raise
        self.answered = True
        if not reply["ok"]:
            raise WorkerError(reply["error"])
        return reply

    def _stale(self) -> bool:
        """Whether the idle worker has exited or has written something nobody asked for."""
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable) or self.process.poll() is not None

    def _exchange(self, message: dict[str, Any]) -> dict[str, Any]:
        self.requests_sent += 1
        request = {**message, "id": self.requests_sent}
        try:
            wire.send(self.sock, request)
            return check_reply(wire.receive(self.sock, on_idle=self._check_alive), request)
        except wire.ProtocolError as exc:
            self.process.kill()
            raise WorkerCrashed(self._death_notice(f"broke the protocol ({exc}) and was killed")) from None
        except (wire.ConnectionLost, OSError):
            raise WorkerCrashed(self._death_notice()) from None

    def _check_alive(self) -> None:
        if self.process.poll() is not None:
            raise wire.ConnectionLost("worker exited")

    def _death_notice(self, what: str | None = None) -> str:
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        return f"the worker of {self.label} {what or describe_exit(code)} (pid {self.process.pid}){self._log_tail()}"

    def _log_tail(self, lines: int = 6) -> str:
        try:
            size = self.log.seek(0, os.SEEK_END)
            self.log.seek(max(0, size - LOG_TAIL_BYTES))
            tail = self.log.read(LOG_TAIL_BYTES).decode(errors="replace").strip().splitlines()[-lines:]
        except (OSError, ValueError):
            return ""
        return "; its last output: " + " | ".join(tail)[-800:] if tail else ""

    def stop(self) -> None:
        """Kill the worker (if any); the next request starts a new one."""
        if self._finalizer is not None:
            self._finalizer()
        self.process = self.sock = self.log = self._finalizer = None


def _stop(process: subprocess.Popen, sock: socket.socket, log) -> None:
    for action in (sock.close, process.kill, process.wait, log.close):
        try:
            action()
        except (OSError, ValueError):
            pass


def describe_exit(code: int | None) -> str:
    """How a process ended, in words: 'was killed by SIGKILL (...)' or 'exited with code 3'."""
    if code is None:
        return "stopped answering"
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        why = {"SIGKILL": " (killed from outside, e.g. by the out-of-memory killer)",
               "SIGSEGV": " (segmentation fault)", "SIGABRT": " (aborted)", "SIGBUS": " (bus error)"}
        return f"was killed by {name}{why.get(name, '')}"
    return f"exited with code {code}"


class WorkerCalculator(Calculator):
    """An ASE calculator whose model runs in a worker process. ``set()`` parameters (charge and spin for models
    that take them) travel with each request."""

    def __init__(self, process: WorkerProcess):
        super().__init__()
        self.process = process
        if not process.loaded:
            process.start()
        self.implemented_properties = list(process.loaded["implemented_properties"])

    @property
    def device(self) -> str:
        return self.process.loaded["device"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        reply = self.process.request({"op": "calculate", "atoms": wire.atoms_to_message(self.atoms),
                                      "properties": list(properties), "parameters": dict(self.parameters)})
        self.results = reply["results"]

    def energies(self, structures: Sequence) -> list[float]:
        """Energies (eV) of many structures in one request: batched where the worker has an evaluator."""
        reply = self.process.request({"op": "energies", "parameters": dict(self.parameters),
                                      "structures": [wire.atoms_to_message(a) for a in structures]})
        return reply["energies"]


class WorkerBatch:
    """The batched evaluator of a worker model (``models/batched.py``): one request per batch."""

    def __init__(self, calc: WorkerCalculator):
        self.calc = calc
        self.name = f"worker:{calc.process.loaded.get('batched') or 'ase'}"

    def supports(self, atoms) -> bool:
        return True

    def energies(self, structures: Sequence) -> list[float]:
        try:
            return self.calc.energies(structures)
        except (WorkerCrashed, StopTask) as exc:  # which structure killed it is found one item at a time
            raise AbandonBatches(str(exc)) from None
