"""Calculators for tests: real EMT underneath, with a delay, a NaN, an exception, a crash or a scale on top.
Cards and commands name them as ``fake_models:FACTORY`` (tests/ is on the path)."""

from __future__ import annotations

import time

from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT


class _Wrapped(Calculator):
    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, delay: float = 0.0, nan_for: str = "", raise_for: str = ""):
        super().__init__()
        self.inner, self.delay, self.nan_for, self.raise_for = EMT(), delay, nan_for, raise_for

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        time.sleep(self.delay)
        formula = self.atoms.get_chemical_formula()
        if self.raise_for and formula == self.raise_for:
            raise RuntimeError(f"planted failure on {formula}")
        self.inner.calculate(self.atoms, properties, system_changes)
        self.results = dict(self.inner.results)
        if self.nan_for and formula == self.nan_for:
            self.results["energy"] = float("nan")


def slow_emt(delay: float = 0.05) -> Calculator:
    return _Wrapped(delay=delay)


def faulty_emt(nan_for: str = "", raise_for: str = "") -> Calculator:
    return _Wrapped(nan_for=nan_for, raise_for=raise_for)


class _Hanging(_Wrapped):
    def __init__(self, hang_for: str):
        super().__init__()
        self.hang_for = hang_for

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        if atoms is not None and atoms.get_chemical_formula() == self.hang_for:
            time.sleep(3600)
        super().calculate(atoms, properties, system_changes)


def hanging_emt(hang_for: str) -> Calculator:
    """EMT that never returns for one formula: the run must record a timeout and go on."""
    return _Hanging(hang_for)


def hanging_on_cu32() -> Calculator:
    """``hanging_emt`` for the 32-atom copper cell, for commands that take no model arguments."""
    return _Hanging("Cu32")


class _Logging(_Wrapped):
    """EMT that appends a line per computed structure to a file: tests count how often each was computed."""

    def __init__(self, log: str, delay: float):
        super().__init__(delay=delay)
        self.log = log

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        with open(self.log, "a") as out:
            out.write(f"{self.atoms.get_chemical_formula()} {self.atoms.positions.sum():.10f}\n")


def logging_emt(log: str, delay: float = 0.0) -> Calculator:
    return _Logging(log, delay)


class _Crashing(_Wrapped):
    def __init__(self, crash_for: str, how: str):
        super().__init__()
        self.crash_for, self.how = crash_for, how

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        if atoms is not None and atoms.get_chemical_formula() == self.crash_for:
            import ctypes
            import os
            import signal

            if self.how == "segfault":
                ctypes.string_at(0)  # reads address 0: SIGSEGV, the way a bug in compiled model code dies
            os.kill(os.getpid(), signal.SIGABRT)
        super().calculate(atoms, properties, system_changes)


def crashing_emt(crash_for: str, how: str = "segfault") -> Calculator:
    """EMT whose process dies (segfault or abort) on one formula: only a worker process survives that."""
    return _Crashing(crash_for, how)


class _ScaledEMT(Calculator):
    """EMT with energies, forces and stress multiplied by ``scale``: a second, worse "model" in a blink,
    with optional planted failures on one formula."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, scale: float, raise_for: str = ""):
        super().__init__()
        self.inner, self.scale, self.raise_for = EMT(), scale, raise_for

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if self.raise_for and self.atoms.get_chemical_formula() == self.raise_for:
            raise RuntimeError(f"planted failure on {self.raise_for}")
        self.inner.calculate(self.atoms, properties, system_changes)
        self.results = {k: v * self.scale for k, v in self.inner.results.items()}


#: the channels of the two-channel test card (helpers.TWO_CHANNEL_CARD)
_SCALES = {"exact": 1.0, "scaled": 1.3}


def scaled_emt(scale: float = 1.0, channel: str | None = None, raise_for: str = "") -> Calculator:
    """Factory for the test model cards (channel ``exact`` or ``scaled``, or an explicit scale)."""
    return _ScaledEMT(_SCALES[channel] if channel else scale, raise_for)


class _SocketWriting(_Wrapped):
    """EMT that, on one formula, writes a frame of its own to every socket of its process (a worker's socket
    to omni-bench, found as a model could find it) before answering: a well-formed reply holding its energy
    but no request id (``frame="reply"``), or valid JSON that is not an object (``frame="list"``)."""

    def __init__(self, write_for: str, frame: str):
        super().__init__()
        self.write_for, self.frame = write_for, frame

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if self.atoms.get_chemical_formula() != self.write_for:
            return
        import json
        import os
        import stat
        import struct

        message = {"ok": True, "results": {"energy": self.results["energy"]}} if self.frame == "reply" else [1, 2]
        payload = json.dumps(message).encode()
        for name in os.listdir("/proc/self/fd"):
            try:
                if stat.S_ISSOCK(os.fstat(int(name)).st_mode):
                    os.write(int(name), struct.pack("!Q", len(payload)) + payload)
            except OSError:
                pass


def socket_writing_emt(write_for: str, frame: str = "reply") -> Calculator:
    return _SocketWriting(write_for, frame)


class _CrashingOn(_Wrapped):
    """EMT whose process aborts on any of several formulas (comma-separated)."""

    def __init__(self, formulas: str):
        super().__init__()
        self.formulas = set(formulas.split(","))

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        if atoms is not None and atoms.get_chemical_formula() in self.formulas:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGABRT)
        super().calculate(atoms, properties, system_changes)


def crashing_on(formulas: str) -> Calculator:
    return _CrashingOn(formulas)


class _WrongResults(_Wrapped):
    """EMT that returns forces with ``extra_rows`` rows too many (zeros, which look converged to an
    optimiser), a stress of the wrong shape, or a string as its energy."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, wrong: str, extra_rows: int = 1):
        super().__init__()
        self.wrong, self.extra_rows = wrong, extra_rows

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        import numpy as np

        super().calculate(atoms, properties, system_changes)
        if self.wrong == "forces":
            self.results["forces"] = np.zeros((len(self.atoms) + self.extra_rows, 3))
        elif self.wrong == "stress":
            self.results["stress"] = np.zeros(5)
        elif self.wrong == "energy":
            self.results["energy"] = "-1.0"


def wrong_results_emt(wrong: str = "forces", extra_rows: int = 1) -> Calculator:
    return _WrongResults(wrong, extra_rows)


class _Signalling(_Wrapped):
    """EMT that writes its process id to ``pid_file`` and, on one formula, sends ``signal_name`` to its parent
    (omni-bench, when it runs in a worker), then goes on computing slowly."""

    def __init__(self, pid_file: str, signal_for: str, signal_name: str):
        super().__init__()
        self.pid_file, self.signal_for, self.signal_name = pid_file, signal_for, signal_name

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        import os
        import signal

        with open(self.pid_file, "w") as out:
            out.write(str(os.getpid()))
        if atoms is not None and atoms.get_chemical_formula() == self.signal_for:
            os.kill(os.getppid(), getattr(signal, self.signal_name))
            time.sleep(5)
        super().calculate(atoms, properties, system_changes)


def signalling_emt(pid_file: str, signal_for: str, signal_name: str = "SIGTERM") -> Calculator:
    return _Signalling(pid_file, signal_for, signal_name)
