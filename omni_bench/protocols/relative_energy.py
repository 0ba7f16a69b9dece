"""Polymorph energies per H2O relative to one reference polymorph (ice Ih in DMC-ICE13).

Each item is one polymorph; ``compute`` returns its energy per formula unit (``meta['n_formula_units']``,
H2O for ice) and ``derive`` subtracts the energy of the polymorph named in ``meta['relative_to']``. The
reference polymorph itself is computed but not scored (it is zero by construction), and a polymorph whose
reference failed gets no value, with the reason.

The unit is per H2O because omni_bench.units carries the normalisation in the unit and the per-H2O
normalisation cannot be converted to another; a set of other polymorphs would add its own quantity.
"""

from __future__ import annotations

from ase import Atoms

from ..items import Item, Prediction
from ..store import StoredItem, stored_value

PARAMS = {"structure_role": "crystal"}
QUANTITIES = {"energy_per_h2o": "eV/H2O", "relative_energy": "eV/H2O"}


def single_points(item: Item, params: dict) -> list[Atoms]:
    """The structures ``compute`` takes single points of (the runner batches them for models that can)."""
    return [item.structures[params["structure_role"]]]


def compute(item: Item, model, params: dict) -> dict[str, float]:
    n_units = item.meta.get("n_formula_units")
    if not isinstance(n_units, int) or n_units < 1:
        raise ValueError(f"item {item.id} needs meta['n_formula_units'] (a positive integer), got {n_units!r}")
    return {"energy_per_h2o": model.energy(item.structures[params["structure_role"]]) / n_units}


def scored_units(items: list[Item]) -> list[list[str]]:
    """Each scored polymorph needs the polymorph it is relative to."""
    return [[item.meta["relative_to"], item.id] for item in items if "relative_energy" in item.reference]


def derive(items: list[Item], results: dict[str, StoredItem], params: dict) -> list[Prediction]:
    predictions = []
    for item in items:
        if "relative_energy" not in item.reference:
            continue
        base = item.meta["relative_to"]
        own, own_error = stored_value(results, item.id, "energy_per_h2o")
        base_energy, base_error = stored_value(results, base, "energy_per_h2o")
        value, error = None, own_error
        if own_error is None and base_error is not None:
            error = f"reference polymorph {base}: {base_error}"
        elif own_error is None:
            value = own - base_energy
        predictions.append(Prediction(item.id, "relative_energy", value, item.reference["relative_energy"],
                                      item.groups, error))
    return predictions

