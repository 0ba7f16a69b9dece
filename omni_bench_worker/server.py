"""The worker process: builds one model's ASE calculator and answers requests for it until told to stop.

Started by omni-bench as ``python -c BOOTSTRAP PACKAGE_DIR FD [pdeathsig]`` in the model's interpreter (see
``omni_bench/models/worker.py``), with one end of a socket pair as file descriptor FD. Requests and replies
are ``wire`` messages: ``load`` (factory and arguments), ``calculate`` (one structure, the properties
wanted), ``energies`` (many structures, in a batch where the model has a batched evaluator), ``close``.
Every reply carries its request's ``id``. A request that raises gets the error as its reply and the worker
goes on; only a crash of the process (a segfault, an abort, a kill for memory) ends it, and omni-bench
starts a new one.

The worker dies with omni-bench: the kernel kills it when the thread that started it ends (``pdeathsig``,
Linux, asked for by omni-bench when its main thread starts the worker), and a watcher thread ends it when
its parent process is gone (every platform, and threads that may end before their process).

``python -c BOOTSTRAP PACKAGE_DIR probe JSON`` runs ``probe.py`` instead.
"""

from __future__ import annotations

import ctypes
import importlib
import inspect
import os
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Any

import numpy as np
from ase.calculators.calculator import all_properties

from . import omni_bench_module, wire

resolve_device = omni_bench_module("devices").resolve_device


#: seconds between the watcher's checks that omni-bench is still the worker's parent
PARENT_CHECK_SECONDS = 0.5
_PR_SET_PDEATHSIG = 1


def serve_fd(fd: int, pdeathsig: bool = False) -> int:
    die_with_parent(pdeathsig)
    return serve(private_socket(fd))


def die_with_parent(pdeathsig: bool) -> None:
    """End this process when omni-bench's ends, however it ends (SIGKILL included)."""
    parent = os.getppid()
    if pdeathsig and sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
        except (OSError, AttributeError):  # no prctl here: the watcher alone
            pass
    threading.Thread(target=_watch_parent, args=(parent,), name="omni-bench-parent-watcher", daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(1)  # orphaned (re-parented): nobody is left to read the answers


def private_socket(fd: int) -> socket.socket:
    """The socket of FD moved to a descriptor that neither the command line nor the model was told about, so
    a model writing to 'the socket it was started with' cannot reach it (and omni-bench checks every reply's
    id besides)."""
    sock = socket.socket(fileno=os.dup(fd))
    os.close(fd)
    del sys.argv[1:]
    return sock


def serve(sock: socket.socket) -> int:
    os.dup2(2, 1)  # whatever the model prints goes to the worker's log, like its warnings
    sys.stdout = sys.stderr
    worker = Worker()
    while True:
        try:
            request = wire.receive(sock)
        except wire.ConnectionLost:  # omni-bench has gone: nothing left to answer
            return 0
        except wire.ProtocolError as exc:  # not omni-bench talking: stop rather than guess
            print(f"omni-bench worker: {exc}", file=sys.stderr)
            return 1
        if request.get("op") == "close":
            return 0
        try:
            reply = {"ok": True, **worker.handle(request)}
        except Exception as exc:  # the model failed on this request: tell omni-bench and carry on
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        reply["id"] = request.get("id")
        try:
            wire.send(sock, reply)
        except OSError:
            return 0


class Worker:
    """One model's calculator, and its batched evaluator where one exists."""

    def __init__(self):
        self.calc = None
        self.batch = None
        self.parameters: dict[str, Any] = {}

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "load":
            return self.load(request)
        if self.calc is None:
            raise RuntimeError(f"{op!r} before 'load'")
        if op == "calculate":
            return self.calculate(request)
        if op == "energies":
            return self.energies(request)
        raise ValueError(f"unknown request {op!r}")

    def load(self, request: dict[str, Any]) -> dict[str, Any]:
        factory = import_factory(request["factory"])
        device = resolve_device(request.get("device", "auto"))
        self.calc = factory(**with_device(factory, dict(request.get("kwargs") or {}), device))
        self.batch = batched_evaluator(self.calc)
        return {"device": device, "pid": os.getpid(), "batched": self.batch.name if self.batch else None,
                "implemented_properties": list(getattr(self.calc, "implemented_properties", []))}

    def _set(self, parameters: dict[str, Any]) -> None:
        if parameters and parameters != self.parameters:
            self.calc.set(**parameters)
            self.parameters = dict(parameters)

    def calculate(self, request: dict[str, Any]) -> dict[str, Any]:
        atoms = wire.atoms_from_message(request["atoms"])
        self._set(request.get("parameters") or {})
        self.calc.reset()  # every request is a new structure: omni-bench keeps the results of the last one itself
        for name in request.get("properties") or ["energy"]:
            self.calc.get_property(name, atoms)
        return {"results": exportable(self.calc.results)}

    def energies(self, request: dict[str, Any]) -> dict[str, Any]:
        structures = [wire.atoms_from_message(m) for m in request["structures"]]
        self._set(request.get("parameters") or {})
        if self.batch is not None:
            values = self.batch.energies(structures)
        else:
            values = []
            for atoms in structures:
                self.calc.reset()
                values.append(self.calc.get_potential_energy(atoms))
        return {"energies": [float(v) for v in values]}


def exportable(results: dict[str, Any]) -> dict[str, Any]:
    """The calculator's results that ASE knows by name, as floats and float arrays."""
    out = {}
    for name, value in results.items():
        if name not in all_properties:
            continue
        value = np.asarray(value)
        if value.dtype.kind in "fiub":
            out[name] = float(value) if value.ndim == 0 else value.astype(np.float64)
    return out


def import_factory(spec: str):
    """``package.module:function`` -> the function; errors name the spec and the interpreter."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"cannot import {module_name!r} for model factory {spec!r} in {sys.executable}: "
                          f"{exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise AttributeError(f"module {module_name!r} has no {attr!r} (model factory {spec!r})") from None


def with_device(factory, kwargs: dict[str, Any], device: str) -> dict[str, Any]:
    """``kwargs`` plus ``device`` when the factory takes it (by name or through ``**kwargs``)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return kwargs
    if "device" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs.setdefault("device", device)
    return kwargs


def batched_evaluator(calc):
    """omni-bench's batched evaluator for this calculator where this interpreter has omni-bench (a model run
    with ``--isolate``), else this package's own (MACE), else None: energies then go one by one."""
    try:
        from omni_bench.models.batched import evaluator_for
    except ImportError:
        evaluator_for = None
    if evaluator_for is not None:
        found = evaluator_for(calc)
        if found is not None:
            return found
    from .batched import evaluator_for as own_evaluator_for

    return own_evaluator_for(calc)
