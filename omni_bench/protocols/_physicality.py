"""What the physicality protocols share: scoring a model's values against their ideal (0 for residuals and
deviations, 1 for a tortuosity), and energies, forces and stress of one structure through the model."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.calculator import PropertyNotImplementedError

from ..items import Item, Prediction, Quantity
from ..store import StoredItem, finite_value

NO_STRESS = "the model computes no stress: stress checks left out"


def ideal_predictions(items: list[Item], results: dict[str, StoredItem], quantities: dict[str, str],
                      ideals: dict[str, float], optional: tuple[str, ...] = ()) -> list[Prediction]:
    """One prediction per item and quantity of ``ideals``, scored against its ideal value (in the quantity's
    unit from ``quantities``), so that ``mae`` is the mean deviation from ideal behaviour and ``max_abs_error``
    the largest. A quantity in ``optional`` that an item did not compute (stress of a molecule) is left out;
    any other missing value is a failed prediction with its reason."""
    predictions = []
    for item in items:
        for quantity, ideal in ideals.items():
            found = finite_value(results, item.id, quantity, quantity in optional)
            if found is not None:
                predictions.append(Prediction(item.id, quantity, found[0], Quantity(ideal, quantities[quantity]),
                                              dict(item.groups), found[1]))
    return predictions


def evaluate(model, atoms: Atoms, stress: bool = False) -> tuple[float, np.ndarray, np.ndarray | None]:
    """Energy (eV), forces (eV/A) and, when asked for a periodic structure, stress (Voigt, eV/A^3) of ``atoms``
    as the model sees it (``model.attach``: charge, spin, a box where the card asks for one, D3); stress None
    (with a note) where the model does not compute it."""
    attached = model.attach(atoms)
    energy = float(attached.get_potential_energy())
    forces = np.array(attached.get_forces(), dtype=float)
    voigt = None
    if stress and atoms.pbc.all():
        try:
            voigt = np.array(attached.get_stress(voigt=True), dtype=float)
        except PropertyNotImplementedError:  # a model without stress: its forces and energies are still checked
            model.notes.add(NO_STRESS)
    return energy, forces, voigt


def voigt_to_matrix(voigt: np.ndarray) -> np.ndarray:
    """ASE's Voigt order (xx, yy, zz, yz, xz, xy) as a symmetric 3x3 matrix."""
    xx, yy, zz, yz, xz, xy = voigt
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
