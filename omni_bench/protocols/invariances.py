"""Invariances: a rotated, translated or permuted structure must give the same energy, forces that rotate and
permute with it, and a stress that rotates with it.

Per item (one structure, ``loaders/physicality_structures.py``) the model's energy, forces and (periodic
structures) stress are computed on the structure and on three copies, each with its own random draw from
``seed``: turned by a uniformly random rotation (positions and cell), moved by a random translation of up to
``translation`` A along each axis (wrapped into the cell where periodic), and with its atoms in a random
order. Reported, the largest deviation over the three:

- ``energy_deviation``: |E' - E| / N, in eV/atom;
- ``force_deviation``: the largest |F'_i - R F_pi| over atoms and components, in eV/A (R the rotation, p the
  permutation);
- ``stress_deviation``: the largest |sigma' - R sigma R^T| over components, in eV/A^3 (periodic structures only).

A model built to be invariant and equivariant gives float noise (1e-6 eV/atom, 1e-5 eV/A in float32); a model
that learned the symmetries from augmented data, or a bug in a neighbour list or a cell convention, gives more.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from scipy.spatial.transform import Rotation

from ..items import Item, Prediction
from ..store import StoredItem
from ._physicality import evaluate, ideal_predictions, voigt_to_matrix

PARAMS = {"seed": 0, "translation": 5.0, "structure_role": "structure"}
QUANTITIES = {"energy_deviation": "eV/atom", "force_deviation": "eV/A", "stress_deviation": "eV/A^3"}


def transformed(atoms: Atoms, params: dict) -> list[tuple[str, Atoms, np.ndarray, np.ndarray]]:
    """(name, transformed copy, rotation, permutation) for the rotation, the translation and the permutation:
    the copy's forces should be ``forces[permutation] @ rotation.T``."""
    rng = np.random.default_rng(params["seed"])
    n = len(atoms)
    identity, in_order = np.eye(3), np.arange(n)
    rotation = Rotation.random(random_state=rng).as_matrix()
    turned = atoms.copy()
    turned.positions = atoms.positions @ rotation.T
    if atoms.pbc.any():
        turned.set_cell(atoms.cell.array @ rotation.T, scale_atoms=False)
    moved = atoms.copy()
    moved.positions = atoms.positions + rng.uniform(-1, 1, size=3) * params["translation"]
    if atoms.pbc.all():
        moved.wrap()
    order = rng.permutation(n)
    shuffled = atoms[order]
    shuffled.info = dict(atoms.info)
    return [("rotation", turned, rotation, in_order), ("translation", moved, identity, in_order),
            ("permutation", shuffled, identity, order)]


def compute(item: Item, model, params: dict) -> dict[str, float]:
    atoms = item.structures[params["structure_role"]]
    periodic = bool(atoms.pbc.all())
    energy, forces, stress = evaluate(model, atoms, stress=periodic)
    worst = {"energy_deviation": 0.0, "force_deviation": 0.0}
    if stress is not None:
        worst["stress_deviation"] = 0.0
    for _, copy, rotation, order in transformed(atoms, params):
        e, f, s = evaluate(model, copy, stress=stress is not None)
        worst["energy_deviation"] = max(worst["energy_deviation"], abs(e - energy) / len(atoms))
        worst["force_deviation"] = max(worst["force_deviation"],
                                       float(np.max(np.abs(f - forces[order] @ rotation.T))))
        if stress is not None and s is not None:
            expected = rotation @ voigt_to_matrix(stress) @ rotation.T
            worst["stress_deviation"] = max(worst["stress_deviation"],
                                            float(np.max(np.abs(voigt_to_matrix(s) - expected))))
    return worst


def derive(items: list[Item], results: dict[str, StoredItem], params: dict) -> list[Prediction]:
    """Each structure's deviations against 0; molecules have no stress."""
    return ideal_predictions(items, results, QUANTITIES, dict.fromkeys(QUANTITIES, 0.0),
                             optional=("stress_deviation",))
