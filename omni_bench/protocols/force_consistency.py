"""Force and stress consistency: forces must be minus the gradient of the energy, stress its strain derivative.

Per item (one structure, ``loaders/physicality_structures.py``) ``components`` atom coordinates, drawn at
random (``seed``; all of them for a small structure), are each moved by -2, -1, +1 and +2 ``step`` A, and the
force is compared with minus the five-point central difference of the model's own energies (exact to
O(step^4)). For a periodic structure each of the six strain components is applied the same way in units of
``strain_step`` (atoms in fractional positions; an off-diagonal strain on both symmetric entries, as ASE's
``Calculator.calculate_numerical_stress`` applies it) and the stress compared with dE/d(strain) / V.
Reported:

- ``force_error``: the largest |F - F_fd| over the checked components, in eV/A;
- ``stress_error``: the largest |sigma - sigma_fd| over the six components, in eV/A^3 (periodic only).

With step 0.01 A the five-point difference is exact to well below 1 meV/A, so what remains for a conservative
model is float32 energy noise over 12 step (about 1e-3 eV/A for a few tens of atoms); a model whose forces come
from their own output head, not from the gradient of its energy, typically misses by tens of meV/A.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from ..items import Item, Prediction
from ..store import StoredItem
from ._physicality import evaluate, ideal_predictions, voigt_to_matrix

PARAMS = {"step": 0.01, "strain_step": 1e-3, "components": 12, "seed": 0, "structure_role": "structure"}
QUANTITIES = {"force_error": "eV/A", "stress_error": "eV/A^3"}
#: ASE's Voigt order
VOIGT = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
#: displacements, in steps, of the five-point central difference (the centre has weight 0)
STENCIL = (2, 1, -1, -2)


def chosen_components(atoms: Atoms, params: dict) -> list[tuple[int, int]]:
    """(atom, axis) of the coordinates checked: ``components`` of them at random, in a fixed order."""
    n = 3 * len(atoms)
    picks = np.random.default_rng(params["seed"]).choice(n, size=min(int(params["components"]), n), replace=False)
    return [(int(p) // 3, int(p) % 3) for p in sorted(picks)]


def displaced(atoms: Atoms, atom: int, axis: int, delta: float) -> Atoms:
    moved = atoms.copy()
    moved.positions[atom, axis] += delta
    return moved


def strained(atoms: Atoms, i: int, j: int, delta: float) -> Atoms:
    """``atoms`` with the cell deformed by the symmetric strain e_ij = e_ji = delta, atoms in fractional positions."""
    deformation = np.eye(3)
    deformation[i, j] += delta
    if i != j:
        deformation[j, i] += delta
    moved = atoms.copy()
    moved.set_cell(atoms.cell.array @ deformation, scale_atoms=True)
    return moved


def single_points(item: Item, params: dict) -> list[Atoms]:
    atoms = item.structures[params["structure_role"]]
    if params["step"] <= 0 or params["strain_step"] <= 0:
        raise ValueError("force_consistency: params.step and params.strain_step must be positive")
    points = [displaced(atoms, a, x, k * params["step"]) for a, x in chosen_components(atoms, params)
              for k in STENCIL]
    if atoms.pbc.all():
        points += [strained(atoms, i, j, k * params["strain_step"]) for i, j in VOIGT for k in STENCIL]
    return points


def compute(item: Item, model, params: dict) -> dict[str, float]:
    atoms = item.structures[params["structure_role"]]
    periodic = bool(atoms.pbc.all())
    energies = iter([model.energy(point) for point in single_points(item, params)])
    _, forces, stress = evaluate(model, atoms, stress=periodic)
    force_error = 0.0
    for a, x in chosen_components(atoms, params):
        numerical = -derivative([next(energies) for _ in STENCIL], params["step"])
        force_error = max(force_error, abs(forces[a, x] - numerical))
    values = {"force_error": force_error}
    if stress is not None:
        volume = atoms.get_volume()
        analytic = voigt_to_matrix(stress)
        stress_error = 0.0
        for i, j in VOIGT:
            # an off-diagonal strain moves both symmetric entries: dE = 2 sigma_ij V de (ASE divides by 4 d V)
            numerical = derivative([next(energies) for _ in STENCIL], params["strain_step"]) / volume
            stress_error = max(stress_error, abs(analytic[i, j] - (numerical if i == j else numerical / 2)))
        values["stress_error"] = stress_error
    return values


def derivative(energies: list[float], step: float) -> float:
    """dE/dx from E at x + k step for k in ``STENCIL``: the five-point central difference, exact to O(step^4)."""
    plus2, plus1, minus1, minus2 = energies
    return (-plus2 + 8 * plus1 - 8 * minus1 + minus2) / (12 * step)


def derive(items: list[Item], results: dict[str, StoredItem], params: dict) -> list[Prediction]:
    """Each structure's largest errors against 0; molecules have no stress."""
    return ideal_predictions(items, results, QUANTITIES, dict.fromkeys(QUANTITIES, 0.0), optional=("stress_error",))
