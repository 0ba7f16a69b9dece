"""Lattice energy of a molecular crystal: E_solid / n_molecules - E_molecule, single points on given geometries.

Negative means bound. The molecule count comes from ``item.meta['n_molecules']`` (the loader checks it
against the compositions), so a cell with Z molecules is never confused with the primitive formula.
"""

from __future__ import annotations

from ase import Atoms

from ..items import Item

PARAMS = {"solid_role": "solid", "molecule_role": "molecule"}
QUANTITIES = {"lattice_energy": "eV/molecule"}


def single_points(item: Item, params: dict) -> list[Atoms]:
    """The structures ``compute`` takes single points of (the runner batches them for models that can)."""
    return [item.structures[params["solid_role"]], item.structures[params["molecule_role"]]]


def compute(item: Item, model, params: dict) -> dict[str, float]:
    n_molecules = item.meta.get("n_molecules")
    if not isinstance(n_molecules, int) or n_molecules < 1:
        raise ValueError(f"item {item.id} needs meta['n_molecules'] (a positive integer), got {n_molecules!r}")
    solid = model.energy(item.structures[params["solid_role"]])
    molecule = model.energy(item.structures[params["molecule_role"]])
    return {"lattice_energy": solid / n_molecules - molecule}
