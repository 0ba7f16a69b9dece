"""Separability: two fragments moved far apart must have the energy of the two fragments alone.

Per item (two fragments, ``loaders/separability_pairs.py``) the second fragment is moved rigidly away from the
first and ``separability_residual`` = E(A...B) - E(A) - E(B), each a single point in eV:

- molecules (no periodic direction, e.g. an S22 dimer): along the line through their centroids, until no atom
  of one is closer than ``separation`` to any atom of the other; all three alone in space;
- a slab and its adsorbate (periodic in the surface plane): along the surface normal (a x b), until the
  adsorbate's lowest atom is ``separation`` above the slab's highest, and the third cell vector is replaced
  by the normal times the height that leaves ``separation`` of vacuum between the adsorbate and the slab's
  periodic image above it too. The pair, the slab alone and the adsorbate alone are computed in that same
  cell, so the lateral images (the adsorbate's neighbours in the plane, the slab's own periodicity) are the
  same in all three and cancel: the residual is the slab-adsorbate interaction across ``separation`` alone.

A model made of local terms gives 0 up to float noise; the physical interaction left at 15 A between S22
monomers (dipole-dipole and dispersion tails) is well below 1 meV. A model whose energy is not a sum over the
parts (a global normalisation, a readout over the whole structure, charges spread over both fragments) gives
a residual.
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


def separated_from_surface(slab: Atoms, adsorbate: Atoms, separation: float) -> tuple[Atoms, Atoms, Atoms]:
    """The adsorbate moved along the surface normal to ``separation`` above the slab's top atom, in a cell
    whose third vector is the normal times the height that leaves ``separation`` between the adsorbate and
    the slab's periodic image above it: (pair, slab, adsorbate), all three in that cell."""
    if separation <= 0:
        raise ValueError(f"separability: params.separation must be positive, got {separation!r}")
    if not (slab.pbc[:2].all() and np.allclose(slab.cell.array, adsorbate.cell.array)):
        raise ValueError("separability: a periodic pair needs a slab periodic along its first two cell vectors "
                         "and both fragments in the same cell")
    normal = np.cross(slab.cell[0], slab.cell[1])
    normal /= np.linalg.norm(normal)
    if adsorbate.positions.mean(axis=0) @ normal < slab.positions.mean(axis=0) @ normal:
        normal = -normal  # the adsorbate sits on the side the normal points to
    slab_heights, adsorbate_heights = slab.positions @ normal, adsorbate.positions @ normal
    shift = separation - (adsorbate_heights.min() - slab_heights.max())
    height = adsorbate_heights.max() + shift - slab_heights.min() + separation
    cell = np.array([slab.cell[0], slab.cell[1], normal * height])
    pieces = []
    for part, offset in ((slab, 0.0), (adsorbate, shift)):
        moved = part.copy()
        moved.set_cell(cell, scale_atoms=False)
        moved.positions = part.positions + offset * normal
        moved.pbc = True
        pieces.append(moved)
    pair = pieces[0].copy()
    pair += pieces[1]
    pair.info = {**adsorbate.info, **slab.info}
    return pair, pieces[0], pieces[1]


def _fragments(item: Item, params: dict) -> tuple[Atoms, Atoms]:
    roles = params["fragments"]
    if len(roles) != 2 or any(role not in item.structures for role in roles):
        raise ValueError(f"item {item.id} needs the two fragment structures {roles!r}")
    return item.structures[roles[0]], item.structures[roles[1]]


def single_points(item: Item, params: dict) -> list[Atoms]:
    """[the separated pair, the first fragment, the second fragment]: periodic fragments (a slab and its
    adsorbate) in the enlarged cell, molecules alone in space."""
    first, second = _fragments(item, params)
    if first.pbc.any() or second.pbc.any():
        return list(separated_from_surface(first, second, params["separation"]))
    return [separated(first, second, params["separation"]), first, second]


def compute(item: Item, model, params: dict) -> dict[str, float]:
    pair, first, second = single_points(item, params)
    return {"separability_residual": model.energy(pair) - model.energy(first) - model.energy(second)}


def derive(items: list[Item], results: dict[str, StoredItem], params: dict) -> list[Prediction]:
    """Each pair's residual against 0 (the item's own reference interaction energy is not scored here)."""
    return ideal_predictions(items, results, QUANTITIES, {"separability_residual": 0.0})
