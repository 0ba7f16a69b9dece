"""Interaction energies whose fragments are shared between complexes: each structure is computed once.

``interaction_energy`` computes a complex and all its fragments inside one item, which is right when every
complex has its own fragments (S22). When many complexes share a fragment (GoldDAC: 12 complexes per bare
framework, 120 per gas molecule) that repeats the fragment's single point for every complex. Here every
structure is an item of its own whose ``compute`` returns its energy, and ``derive`` subtracts: an item with
an ``interaction_energy`` reference is a complex, and ``meta['fragments']`` names the items subtracted from it.
"""

from __future__ import annotations

from ase import Atoms

from ..items import Item, Prediction
from ..store import StoredItem

PARAMS = {"structure_role": "structure"}
QUANTITIES = {"interaction_energy": "eV", "energy": "eV"}


def single_points(item: Item, params: dict) -> list[Atoms]:
    """The structures ``compute`` takes single points of (the runner batches them for models that can)."""
    return [item.structures[params["structure_role"]]]


def compute(item: Item, model, params: dict) -> dict[str, float]:
    role = params["structure_role"]
    if role not in item.structures:
        raise ValueError(f"item {item.id} has no {role!r} structure")
    return {"energy": model.energy(item.structures[role])}


def scored_units(items: list[Item]) -> list[list[str]]:
    """Each complex needs its fragments."""
    return [[item.id, *item.meta["fragments"]] for item in items if "interaction_energy" in item.reference]


def derive(items: list[Item], results: dict[str, StoredItem], params: dict) -> list[Prediction]:
    """Complex minus fragments; None with the reason when the complex or a fragment has no energy."""
    predictions = []
    for item in items:
        reference = item.reference.get("interaction_energy")
        if reference is None:
            continue
        value, problems = 0.0, []
        for sign, part in [(1.0, item.id)] + [(-1.0, f) for f in item.meta["fragments"]]:
            energy, problem = _energy(part, results)
            if problem:
                problems.append(f"{part}: {problem}")
            else:
                value += sign * energy
        predictions.append(Prediction(item.id, "interaction_energy", None if problems else value, reference,
                                      item.groups, "; ".join(problems) or None))
    return predictions


def _energy(item_id: str, results: dict[str, StoredItem]) -> tuple[float, str | None]:
    stored = results.get(item_id)
    if stored is None:
        return 0.0, "not computed (not among the items of this run, e.g. cut by --limit)"
    if stored.status != "ok":
        return 0.0, stored.error or "failed"
    if "energy" not in stored.values:
        return 0.0, "no stored energy"
    return stored.values["energy"], None
