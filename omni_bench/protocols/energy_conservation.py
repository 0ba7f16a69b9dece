"""Energy conservation: the total energy of a short NVE run must not drift.

Per item (one structure, ``loaders/physicality_structures.py``): Maxwell-Boltzmann velocities at
``temperature_K`` (``seed``), net momentum removed (and net rotation, for a molecule), a brief thermalisation
of ``thermalisation_steps`` Langevin steps at ``temperature_K`` (friction ``friction_per_fs``; net momentum
and rotation removed again after it), then ``steps`` velocity-Verlet NVE steps of ``timestep_fs``, all with
ASE. Over the NVE run the total energy per atom is fitted with a straight line against time:

- ``drift_per_ps``: |fitted slope| x 1 ps, the change of total energy per atom over one picosecond of NVE
  (eV/atom; a drift per ps for the run length stated in the task file);
- ``fluctuation``: the standard deviation of the total energy per atom around that line (eV/atom), the
  integration noise of a sound run.

Velocity Verlet conserves a shadow energy of a conservative force field, so a conservative model shows no
drift beyond noise at 1 fs; forces that are not the gradient of the energy, discontinuities, or energies
that depend on something other than the positions make it drift. A run whose energy becomes non-finite fails
its item (the trajectory exploded).
"""

from __future__ import annotations

import numpy as np
from ase import units as ase_units
from ase.md import velocitydistribution
from ase.md.langevin import Langevin
from ase.md.verlet import VelocityVerlet

from ..items import Item, Prediction
from ..store import StoredItem
from ._physicality import ideal_predictions

PARAMS = {
    "temperature_K": 300.0,
    "timestep_fs": 1.0,
    "thermalisation_steps": 100,
    "friction_per_fs": 0.02,
    "steps": 500,
    "seed": 0,
    "structure_role": "structure",
}
QUANTITIES = {"drift_per_ps": "eV/atom", "fluctuation": "eV/atom"}


def compute(item: Item, model, params: dict) -> dict[str, float]:
    for key in ("steps", "thermalisation_steps"):
        if not isinstance(params[key], int) or params[key] < (2 if key == "steps" else 0):
            raise ValueError(f"energy_conservation: params.{key} must be a whole number of steps, got {params[key]!r}")
    atoms = model.attach(item.structures[params["structure_role"]])
    rng = np.random.default_rng(params["seed"])
    thermalise(atoms, params["temperature_K"], rng)
    timestep = params["timestep_fs"] * ase_units.fs
    if params["thermalisation_steps"]:
        friction = params["friction_per_fs"] / ase_units.fs
        Langevin(atoms, timestep, temperature_K=params["temperature_K"], friction=friction, fixcm=False,
                 rng=rng).run(params["thermalisation_steps"])
        still(atoms)
    dyn = VelocityVerlet(atoms, timestep=timestep)
    totals = [total_energy(atoms)]
    for _ in range(params["steps"]):
        dyn.step()
        totals.append(total_energy(atoms))
    times_ps = np.arange(len(totals)) * params["timestep_fs"] * 1e-3
    return drift(times_ps, np.asarray(totals) / len(atoms))


def thermalise(atoms, temperature_K: float, rng: np.random.Generator) -> None:
    """Maxwell-Boltzmann momenta without net momentum (and, for a molecule, without net rotation)."""
    if hasattr(velocitydistribution, "thermalize_momenta"):  # ASE >= 3.29 renamed it
        velocitydistribution.thermalize_momenta(atoms, temperature_K, rng=rng)
    else:
        velocitydistribution.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
    still(atoms)


def still(atoms) -> None:
    """Remove the net momentum (and, for a molecule, the net rotation)."""
    velocitydistribution.Stationary(atoms)
    if not atoms.pbc.any():
        velocitydistribution.ZeroRotation(atoms)


def total_energy(atoms) -> float:
    return float(atoms.get_potential_energy() + atoms.get_kinetic_energy())


def drift(times_ps: np.ndarray, per_atom: np.ndarray) -> dict[str, float]:
    """|slope| of the line fitted to the total energy per atom (eV/atom per ps, so over 1 ps) and the spread
    around it; a non-finite energy raises (the trajectory exploded)."""
    bad = np.flatnonzero(~np.isfinite(per_atom))
    if bad.size:
        raise ValueError(f"total energy became non-finite at NVE step {bad[0]}: the trajectory exploded")
    slope, intercept = np.polyfit(times_ps, per_atom, 1)
    residual = per_atom - (slope * times_ps + intercept)
    return {"drift_per_ps": float(abs(slope)), "fluctuation": float(np.std(residual))}


def derive(items: list[Item], results: dict[str, StoredItem], params: dict) -> list[Prediction]:
    """Each run's drift and fluctuation against 0."""
    return ideal_predictions(items, results, QUANTITIES, dict.fromkeys(QUANTITIES, 0.0))
