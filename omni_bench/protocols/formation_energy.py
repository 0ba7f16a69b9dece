"""Formation energy per atom from model energies: E_f = E/N - sum_el x_el * mu_el, where mu_el is the
model's energy per atom of the element's reference crystal and x_el the element's atomic fraction.

Items are crystals: compounds and element references alike get one single point (``compute``), and
``derive`` combines them, so each element reference is computed once for all the compounds that use it
(see loaders/wbm.py). Compound items carry their composition in ``meta['composition']``; element items
have ``meta['kind'] == 'element'`` and ``meta['element']``. Single points on the DFT geometries.
Every reference quantity of a compound (uncorrected, MP2020-corrected) is scored against the same model
formation energy: which one a model should match depends on the energies it was trained on.
"""

from __future__ import annotations

from ase import Atoms

from ..items import Item, Prediction

PARAMS = {"structure_role": "crystal"}
QUANTITIES = {"formation_energy": "eV/atom", "formation_energy_mp2020": "eV/atom", "energy_per_atom": "eV/atom"}


def single_points(item: Item, params: dict) -> list[Atoms]:
    """The structures ``compute`` takes single points of (the runner batches them for models that can)."""
    return [item.structures[params["structure_role"]]]


def compute(item: Item, model, params: dict) -> dict[str, float]:
    crystal = item.structures[params["structure_role"]]
    return {"energy_per_atom": model.energy(crystal) / len(crystal)}


def scored_units(items: list[Item]) -> list[list[str]]:
    """Each compound needs the reference crystals of its elements."""
    element_ids = {i.meta["element"]: i.id for i in items if i.meta.get("kind") == "element"}
    return [[item.id, *(element_ids.get(el, f"element/{el}") for el in item.meta["composition"])]
            for item in items if item.meta.get("kind") != "element"]


def derive(items: list[Item], results: dict, params: dict) -> list[Prediction]:
    """Formation energies of the compounds; None where the compound or an element reference failed."""
    element_ids = {i.meta["element"]: i.id for i in items if i.meta.get("kind") == "element"}
    predictions = []
    for item in items:
        if item.meta.get("kind") == "element":
            continue
        composition = item.meta["composition"]
        n_atoms = sum(composition.values())
        value, error = None, None
        needed = [item.id] + [element_ids.get(el, f"element/{el}") for el in composition]
        for structure_id in needed:
            stored = results.get(structure_id)
            if stored is None or stored.status != "ok":
                error = f"{structure_id}: " + ("not computed" if stored is None else str(stored.error))
                break
        if error is None:
            value = results[item.id].values["energy_per_atom"] - sum(
                count / n_atoms * results[element_ids[el]].values["energy_per_atom"]
                for el, count in composition.items())
        for quantity, reference in item.reference.items():
            predictions.append(Prediction(item.id, quantity, value, reference, item.groups, error))
    return predictions
