"""Separability: two fragments moved far apart must have the energy of the two fragments alone.

Per item (a complex of two fragments, e.g. an S22 dimer from ``loaders/ase_s22.py``) the second fragment is
moved rigidly away from the first, along the line through their centroids, until no atom of one is closer than
``separation`` to any atom of the other. ``separability_residual`` = E(A...B) - E(A) - E(B), each a single point
in eV. A model made of local terms gives 0 up to float noise; the physical interaction left at 15 A between
S22 monomers (dipole-dipole and dispersion tails) is well below 1 meV. A model whose energy is not a sum over
the parts (a global normalisation, a readout over the whole structure, charges spread over both fragments)
gives a residual.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from ..items import Item, Prediction
from ..store import StoredItem
from ._physicality import ideal_predictions

PARAMS = {"separation": 15.0, "fragments": ["monomer_1", "monomer_2"]}
QUANTITIES = {"separability_residual": "eV"}


def separated(first: Atoms, second: Atoms, separation: float) -> Atoms:
    """``first`` plus ``second`` moved along the centroid-to-centroid line until the closest pair of atoms of
    the two is ``separation`` apart (to 1e-6 A), as one non-periodic structure."""
    if separation <= 0:
        raise ValueError(f"separability: params.separation must be positive, got {separation!r}")
    direction = second.positions.mean(axis=0) - first.positions.mean(axis=0)
    norm = np.linalg.norm(direction)
    direction = direction / norm if norm > 1e-8 else np.array([0.0, 0.0, 1.0])
    shift = 0.0
    for _ in range(200):  # moving by the gap raises the closest distance by at most the gap: it converges
        moved = second.positions + shift * direction
        closest = np.min(np.linalg.norm(first.positions[:, None, :] - moved[None, :, :], axis=-1))
        if closest >= separation - 1e-6:
            break
        shift += separation - closest
    pair = first.copy()
    far = second.copy()
    far.positions = second.positions + shift * direction
    pair += far
    pair.pbc = False
    pair.cell = None
    pair.info = {**second.info, **first.info}
    return pair


def _fragments(item: Item, params: dict) -> tuple[Atoms, Atoms]:
    roles = params["fragments"]
    if len(roles) != 2 or any(role not in item.structures for role in roles):
        raise ValueError(f"item {item.id} needs the two fragment structures {roles!r}")
    return item.structures[roles[0]], item.structures[roles[1]]


def single_points(item: Item, params: dict) -> list[Atoms]:
    first, second = _fragments(item, params)
    return [separated(first, second, params["separation"]), first, second]


def compute(item: Item, model, params: dict) -> dict[str, float]:
    pair, first, second = single_points(item, params)
    return {"separability_residual": model.energy(pair) - model.energy(first) - model.energy(second)}


def derive(items: list[Item], results: dict[str, StoredItem], params: dict) -> list[Prediction]:
    """Each pair's residual against 0 (the item's own reference interaction energy is not scored here)."""
    return ideal_predictions(items, results, QUANTITIES, {"separability_residual": 0.0})
