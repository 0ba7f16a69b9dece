"""Interaction energy: the complex minus its fragments, each a single point on the given geometry."""

from __future__ import annotations

from ase import Atoms

from ..items import Item

PARAMS = {"complex_role": "complex"}
QUANTITIES = {"interaction_energy": "eV"}


def single_points(item: Item, params: dict) -> list[Atoms]:
    """The structures ``compute`` takes single points of (the runner batches them for models that can)."""
    return list(item.structures.values())


def compute(item: Item, model, params: dict) -> dict[str, float]:
    complex_role = params["complex_role"]
    if complex_role not in item.structures or len(item.structures) < 2:
        raise ValueError(f"item {item.id} needs a {complex_role!r} structure and at least one fragment")
    energy = model.energy(item.structures[complex_role])
    for role, fragment in item.structures.items():
        if role != complex_role:
            energy -= model.energy(fragment)
    return {"interaction_energy": energy}
