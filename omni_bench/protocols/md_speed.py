"""MD speed: how fast a model runs molecular dynamics, and whether the trajectory stays sane.

Per item (one supercell of a size ladder) the protocol draws Maxwell-Boltzmann velocities at
``temperature_K`` (fixed ``seed``) and runs NVE velocity-Verlet MD with ASE at ``timestep_fs``:
``warmup_steps`` untimed steps (model set-up, compilation, caches), then ``repeats`` timed runs of ``steps``
steps each, one continuous trajectory. On CUDA the device is synchronised before every clock reading.

Reported (median over the repeats for the timings):

- ``ns_per_day``: simulated time per day of wall time;
- ``us_per_atom_step``: wall time per MD step divided by the atom count (``us/step/atom``);
- ``steps_per_second``;
- ``peak_memory``: on CUDA ``torch.cuda.max_memory_allocated`` over the item; on CPU the peak resident set
  of the whole process (VmHWM, reset at the start of the item where Linux allows it, else the peak over
  the process's life, with a note), so it includes the model and the Python runtime;
- ``energy_drift``: |slope| of a straight line fitted to the total energy per atom over all timed steps,
  times their number: the drift over the timed run in meV/atom (over ``steps * repeats * timestep_fs``
  fs). A model that explodes gives a non-finite energy, which fails the item;
- ``n_atoms``, and the context of the measurement: ``load_average`` (1-minute system load when the item
  started; a shared CPU makes timings noisy) and ``torch_threads`` where torch is loaded.

Sizes that cannot be done stop the ladder (``StopTask``: the item is recorded as failed with the reason and
the larger ones as skipped): out of memory, or an estimated timed phase (fastest warm-up step after the
first, times ``steps * repeats``) longer than ``max_seconds_per_size`` (null: no limit).
"""

from __future__ import annotations

import gc
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
from ase import units as ase_units
from ase.md import velocitydistribution
from ase.md.verlet import VelocityVerlet

from ..errors import StopTask
from ..items import Item, Prediction
from ..store import StoredItem, finite_value
from ..units import convert

DEVICE_SPECIFIC = True
PARAMS = {
    "structure_role": "crystal",
    "timestep_fs": 1.0,
    "temperature_K": 300.0,
    "seed": 0,
    "warmup_steps": 3,
    "steps": 10,
    "repeats": 3,
    "max_seconds_per_size": 120.0,
}
QUANTITIES = {
    "ns_per_day": "ns/day",
    "us_per_atom_step": "us/step/atom",
    "steps_per_second": "steps/s",
    "peak_memory": "MB",
    "energy_drift": "meV/atom",
    "n_atoms": "1",
    "load_average": "1",
    "torch_threads": "1",
}
#: context values that a platform may not provide (no getloadavg, no torch): absent is not a failure
OPTIONAL = {"load_average", "torch_threads"}
LIFETIME_PEAK_NOTE = "peak_memory is the process's lifetime peak RSS (VmHWM could not be reset)"


def compute(item: Item, model, params: dict) -> dict[str, float]:
    _check_params(params)
    crystal = item.structures[params["structure_role"]]
    n_atoms = len(crystal)
    context = _context()
    sync = _synchroniser(str(model.device))
    peak = PeakMemory(str(model.device))
    if not peak.reset():
        model.notes.add(LIFETIME_PEAK_NOTE)
    try:
        step_times, energies = _run_md(model, crystal, params, sync)
    except (MemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        gc.collect()
        _empty_cuda_cache(str(model.device))
        raise StopTask(f"out of memory at {n_atoms} atoms ({type(exc).__name__}: {str(exc)[:200]})") from exc
    peak_mb = peak.read_mb()
    seconds_per_step = statistics.median(step_times) / params["steps"]
    steps_per_second = 1.0 / seconds_per_step
    return {
        "ns_per_day": convert(steps_per_second * params["timestep_fs"], "fs/s", "ns/day"),
        "us_per_atom_step": convert(seconds_per_step / n_atoms, "s/step/atom", "us/step/atom"),
        "steps_per_second": steps_per_second,
        "peak_memory": peak_mb,
        "energy_drift": energy_drift(energies, n_atoms),
        "n_atoms": float(n_atoms),
        **context,
    }


def _run_md(model, crystal, params: dict, sync: Callable[[], None]) -> tuple[list[float], list[float]]:
    """Warm up (stopping the ladder when the size is over budget), then time ``repeats`` runs.
    Returns the wall time of each timed run and the total energy (eV) before and after every timed step."""
    atoms = model.attach(crystal)
    _thermalise(atoms, params["temperature_K"], np.random.default_rng(params["seed"]))
    velocitydistribution.Stationary(atoms)
    dyn = VelocityVerlet(atoms, timestep=params["timestep_fs"] * ase_units.fs)
    warmup: list[float] = []
    for _ in range(params["warmup_steps"]):
        sync()
        start = time.perf_counter()
        dyn.step()
        sync()
        warmup.append(time.perf_counter() - start)
        if len(warmup) >= min(2, params["warmup_steps"]):
            _check_budget(warmup, len(atoms), params)
    energies = [_total_energy(atoms)]
    run_times = []
    for _ in range(params["repeats"]):
        sync()
        start = time.perf_counter()
        for _ in range(params["steps"]):
            dyn.step()
            energies.append(_total_energy(atoms))
        sync()
        run_times.append(time.perf_counter() - start)
    return run_times, energies


def _thermalise(atoms, temperature_K: float, rng: np.random.Generator) -> None:
    """Maxwell-Boltzmann momenta; ASE 3.29 renamed the function, and omni-bench accepts ASE >= 3.23."""
    if hasattr(velocitydistribution, "thermalize_momenta"):
        velocitydistribution.thermalize_momenta(atoms, temperature_K, rng=rng)
    else:
        velocitydistribution.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)


def _check_budget(warmup: list[float], n_atoms: int, params: dict) -> None:
    """Stop the ladder when the timed phase would take longer than the budget. The first warm-up step
    carries one-off set-up costs, so the estimate uses the fastest step after it (when there is one)."""
    budget = params["max_seconds_per_size"]
    if budget is None:
        return
    per_step = min(warmup[1:]) if len(warmup) > 1 else warmup[0]
    estimate = per_step * params["steps"] * params["repeats"]
    if estimate > budget:
        raise StopTask(f"{n_atoms} atoms: about {estimate:.0f} s for {params['repeats']} x {params['steps']} timed "
                       f"steps ({per_step:.3g} s per warm-up step) is over max_seconds_per_size={budget:g}")


def _total_energy(atoms) -> float:
    return float(atoms.get_potential_energy() + atoms.get_kinetic_energy())


def energy_drift(energies: list[float], n_atoms: int) -> float:
    """|fitted slope| x number of steps of the total energy per atom, in meV/atom; non-finite energies
    (a model that exploded) raise."""
    per_atom = np.asarray(energies, dtype=float) / n_atoms
    bad = np.flatnonzero(~np.isfinite(per_atom))
    if bad.size:
        raise ValueError(f"total energy became non-finite at timed step {bad[0]}: the trajectory exploded")
    slope = np.polyfit(np.arange(len(per_atom)), per_atom, 1)[0]
    return convert(abs(slope) * (len(per_atom) - 1), "eV/atom", "meV/atom")


def is_out_of_memory(exc: BaseException) -> bool:
    """MemoryError, torch.cuda.OutOfMemoryError, or torch's CPU allocator failing."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def _check_params(params: dict) -> None:
    for key in ("steps", "repeats", "warmup_steps"):
        if not isinstance(params[key], int) or params[key] < 1:
            raise ValueError(f"md_speed: params.{key} must be a positive integer, got {params[key]!r}")
    budget = params["max_seconds_per_size"]
    if budget is not None and not (isinstance(budget, (int, float)) and budget > 0):
        raise ValueError(f"md_speed: params.max_seconds_per_size must be a positive number or null, got {budget!r}")


def _context() -> dict[str, float]:
    context = {}
    if hasattr(os, "getloadavg"):
        context["load_average"] = float(os.getloadavg()[0])
    torch = sys.modules.get("torch")
    if torch is not None:
        context["torch_threads"] = float(torch.get_num_threads())
    return context


def _synchroniser(device: str) -> Callable[[], None]:
    """A function that waits for queued GPU work, so that the clock measures it; a no-op on CPU."""
    if not device.startswith("cuda"):
        return lambda: None
    import torch

    return lambda: torch.cuda.synchronize(device)


def _empty_cuda_cache(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


class PeakMemory:
    """Peak memory over a block of work: torch's allocator on CUDA, the process's resident set on CPU."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.device = device

    def reset(self) -> bool:
        """Start a new peak; False when only the lifetime peak can be read (no /proc/self/clear_refs)."""
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
            return True
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")  # Linux: reset VmHWM, the peak resident set size
            return _vm_hwm_kib() is not None
        except OSError:
            return False

    def read_mb(self) -> float:
        if self.cuda:
            import torch

            return convert(torch.cuda.max_memory_allocated(self.device), "B", "MB")
        kib = _vm_hwm_kib()
        if kib is not None:
            return convert(kib, "KiB", "MB")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
        return convert(peak, "B" if sys.platform == "darwin" else "KiB", "MB")


def _vm_hwm_kib() -> float | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1])  # reported in kB, which the kernel means as KiB
    except OSError:
        pass
    return None


def derive(items: list[Item], results: dict[str, StoredItem], params: dict) -> list[Prediction]:
    """Every quantity of every size, without a reference, grouped by ``n_atoms`` so that metrics can
    report each size (``group_by: n_atoms``) and the largest size reached (``max`` of ``n_atoms``)."""
    predictions = []
    for item in items:
        for quantity in QUANTITIES:
            found = finite_value(results, item.id, quantity, quantity in OPTIONAL)
            if found is not None:
                predictions.append(Prediction(item.id, quantity, found[0], None, dict(item.groups), found[1]))
    return predictions
