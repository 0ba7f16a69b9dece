"""Extensivity: the energy of a periodic supercell must be the cell's energy times the number of cells.

Per item (a crystal, e.g. a Delta-test element from ``loaders/ase_dcdft.py``) the cell and its ``repeat`` x
``repeat`` x ``repeat`` supercell are single points; ``extensivity_residual`` = (E(supercell) - repeat^3 E(cell))
/ N(supercell), in eV per atom. Exact for any model whose energy is a sum of atomic terms computed with correct
periodic neighbour lists; a residual shows a neighbour list that misses images of a small cell, a readout that
is not a sum, or a cell-size-dependent term.
"""

from __future__ import annotations

from ase import Atoms

from ..items import Item, Prediction
from ..store import StoredItem
from ._physicality import ideal_predictions

PARAMS = {"repeat": 2, "structure_role": "crystal"}
QUANTITIES = {"extensivity_residual": "eV/atom"}


def single_points(item: Item, params: dict) -> list[Atoms]:
    repeat = params["repeat"]
    if not isinstance(repeat, int) or repeat < 2:
        raise ValueError(f"extensivity: params.repeat must be an integer of at least 2, got {repeat!r}")
    cell = item.structures[params["structure_role"]]
    if not cell.pbc.all():
        raise ValueError(f"item {item.id}: extensivity needs a structure periodic in all three directions")
    return [cell, cell.repeat(repeat)]


def compute(item: Item, model, params: dict) -> dict[str, float]:
    cell, supercell = single_points(item, params)
    n_cells = params["repeat"] ** 3
    residual = (model.energy(supercell) - n_cells * model.energy(cell)) / len(supercell)
    return {"extensivity_residual": residual}


def derive(items: list[Item], results: dict[str, StoredItem], params: dict) -> list[Prediction]:
    """Each crystal's residual against 0 (its equation-of-state references are not scored here)."""
    return ideal_predictions(items, results, QUANTITIES, {"extensivity_residual": 0.0})
