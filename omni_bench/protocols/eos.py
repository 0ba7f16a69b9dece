"""Equation of state: energies on a volume grid around the reference cell, fitted with ase.eos.

The grid is the reference volume scaled by 1 +/- ``volume_strain`` in ``points`` steps (isotropic, atoms
in fractional positions), as in the Delta test. V0, B0 and B' come from the fit; a minimum outside the
grid is a failure, because extrapolated V0 and B0 are not measurements.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.eos import EquationOfState

from ..items import Item

PARAMS = {"points": 7, "volume_strain": 0.06, "eos": "birchmurnaghan", "structure_role": "crystal"}
QUANTITIES = {"volume": "A^3/atom", "bulk_modulus": "eV/A^3", "bulk_modulus_derivative": "1",
              "energy_per_atom": "eV/atom"}


def strained_cells(crystal: Atoms, params: dict) -> list[Atoms]:
    """The volume grid: the crystal scaled isotropically, atoms kept at their fractional positions."""
    cells = []
    for scale in np.linspace(1 - params["volume_strain"], 1 + params["volume_strain"], params["points"]):
        strained = crystal.copy()
        strained.set_cell(crystal.cell * scale ** (1 / 3), scale_atoms=True)
        cells.append(strained)
    return cells


def single_points(item: Item, params: dict) -> list[Atoms]:
    """The structures ``compute`` takes single points of (the runner batches them for models that can)."""
    return strained_cells(item.structures[params["structure_role"]], params)


def compute(item: Item, model, params: dict) -> dict[str, float]:
    crystal = item.structures[params["structure_role"]]
    n_atoms = len(crystal)
    volumes, energies = [], []
    for strained in strained_cells(crystal, params):
        volumes.append(strained.get_volume() / n_atoms)
        energies.append(model.energy(strained) / n_atoms)
    eos = EquationOfState(volumes, energies, eos=params["eos"])
    v0, e0, b0 = eos.fit(warn=False)
    if not min(volumes) <= v0 <= max(volumes):
        raise ValueError(f"E(V) minimum at {v0:.3f} A^3/atom lies outside the sampled range "
                         f"{min(volumes):.3f}-{max(volumes):.3f}")
    b1 = float(eos.eos_parameters[2]) if params["eos"] == "birchmurnaghan" else float("nan")
    return {"volume": float(v0), "bulk_modulus": float(b0), "bulk_modulus_derivative": b1,
            "energy_per_atom": float(e0)}
