"""Torsion profiles: single points along a dihedral scan, scored as energies relative to the profile's minimum
and as the profile's barrier height.

``compute`` returns the model's absolute energy of every geometry (``energy@<role>``, eV); ``derive`` turns
model and reference energies into relative energies (one entry per angle, id ``<profile>@<role>``) and one
barrier per profile with the same code, so both sides always follow the same definition.

Each profile is referenced to its own minimum, as in Behara et al. (OpenFF 2024). ``barrier`` chooses the
barrier definition: ``max_minus_min`` (highest minus lowest point) or ``adjacent_extrema``, the paper's
largest energy difference between neighbouring stationary points of the periodic profile (smaller than
``max_minus_min`` when the global minimum and maximum are separated by another well, as in 12 of the 59
reference profiles).

``large_barrier_error`` is 1 for a profile whose barrier is off by more than 1 kcal/mol and 0 otherwise, a
flag with no reference: its sum is the count of such profiles that LAMBench reports for TorsionNet500.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
from ase import Atoms

from .. import units
from ..items import Item, Prediction, Quantity
from ..store import StoredItem

PARAMS = {"barrier": "max_minus_min"}
QUANTITIES = {"relative_energy": "eV", "barrier_height": "eV", "large_barrier_error": "1"}
BARRIER_DEFINITIONS = ("max_minus_min", "adjacent_extrema")
#: the barrier error above which ``large_barrier_error`` flags a profile (LAMBench's threshold)
LARGE_BARRIER_ERROR = (1.0, "kcal/mol")
_PREFIX = "energy@"


def single_points(item: Item, params: dict) -> list[Atoms]:
    """The structures ``compute`` takes single points of (the runner batches them for models that can)."""
    return list(item.structures.values())


def compute(item: Item, model, params: dict) -> dict[str, float]:
    if params["barrier"] not in BARRIER_DEFINITIONS:  # fail on the first item, not after the whole run
        raise ValueError(f"unknown barrier definition {params['barrier']!r}; choose one of {BARRIER_DEFINITIONS}")
    return {f"{_PREFIX}{role}": model.energy(atoms) for role, atoms in item.structures.items()}


def relative_energies(energies: np.ndarray) -> np.ndarray:
    return energies - energies.min()


def barrier_height(energies: np.ndarray, angles_deg: np.ndarray, definition: str) -> float:
    """Barrier of one profile sampled on a full, evenly spaced periodic grid of ``angles_deg``."""
    if definition == "max_minus_min":
        return float(energies.max() - energies.min())
    if definition != "adjacent_extrema":
        raise ValueError(f"unknown barrier definition {definition!r}; choose one of {BARRIER_DEFINITIONS}")
    # Pad periodically by three points on each side so that extrema at the ends of the grid are found.
    order = np.argsort(angles_deg)
    e = energies[order]
    padded = np.concatenate([e[-3:], e, e[:3]])
    slopes = np.sign(np.diff(padded))
    turning = [i + 1 for i in range(len(slopes) - 1) if slopes[i] != slopes[i + 1]]
    if len(turning) < 2:
        return float(e.max() - e.min())
    return float(max(abs(padded[a] - padded[b]) for a, b in pairwise(turning)))


def derive(items: list[Item], results: dict[str, StoredItem], params: dict) -> list[Prediction]:
    predictions = []
    for item in items:
        roles = list(item.structures)
        angles = np.array(item.meta["angles"], dtype=float)
        ref_unit = item.reference[f"{_PREFIX}{roles[0]}"].unit
        ref = np.array([item.reference[f"{_PREFIX}{r}"].value for r in roles])
        model, error = _model_energies(roles, results.get(item.id))
        ref_rel = relative_energies(ref)
        model_rel = relative_energies(model) if model is not None else None
        for i, r in enumerate(roles):
            predictions.append(Prediction(
                f"{item.id}@{r}", "relative_energy", None if model_rel is None else float(model_rel[i]),
                Quantity(float(ref_rel[i]), ref_unit), item.groups, error))
        ref_barrier = barrier_height(ref_rel, angles, params["barrier"])
        model_barrier = None if model_rel is None else barrier_height(model_rel, angles, params["barrier"])
        predictions.append(Prediction(item.id, "barrier_height", model_barrier, Quantity(ref_barrier, ref_unit),
                                      item.groups, error))
        flag = None
        if model_barrier is not None:
            barrier_error = model_barrier - units.convert(ref_barrier, ref_unit, QUANTITIES["barrier_height"])
            flag = float(abs(barrier_error) > units.convert(*LARGE_BARRIER_ERROR, QUANTITIES["barrier_height"]))
        predictions.append(Prediction(item.id, "large_barrier_error", flag, None, item.groups, error))
    return predictions


def _model_energies(roles: list[str], stored: StoredItem | None) -> tuple[np.ndarray | None, str | None]:
    if stored is None:
        return None, "not computed"
    if stored.status != "ok":
        return None, stored.error
    missing = [r for r in roles if f"{_PREFIX}{r}" not in stored.values]
    if missing:
        return None, f"protocol did not return energies for {', '.join(missing)}"
    return np.array([stored.values[f"{_PREFIX}{r}"] for r in roles]), None
