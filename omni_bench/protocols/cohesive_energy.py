"""Cohesive energy per atom, E_atom - E_bulk/N, both computed with the model (single points).

Why this quantity: every code and every model has its own energy zero (pseudopotentials, per-element
reference energies a network learns), so a model's absolute energy per atom, or a difference of energies
of different elements, cannot be compared with DFT numbers. The cohesive energy subtracts the same
element's isolated atom computed by the same model, so the zero cancels element by element. The price:
the model must describe an isolated atom, which models trained only on crystals (MPtrj) never saw.
"""

from __future__ import annotations

from ase import Atoms

from ..items import Item

PARAMS = {"bulk_role": "bulk", "atom_role": "atom"}
QUANTITIES = {"cohesive_energy": "eV/atom", "bulk_energy_per_atom": "eV/atom", "atom_energy": "eV/atom"}


def single_points(item: Item, params: dict) -> list[Atoms]:
    """The structures ``compute`` takes single points of (the runner batches them for models that can)."""
    return [item.structures[params["bulk_role"]], item.structures[params["atom_role"]]]


def compute(item: Item, model, params: dict) -> dict[str, float]:
    bulk, atom = item.structures[params["bulk_role"]], item.structures[params["atom_role"]]
    if len(atom) != 1:
        raise ValueError(f"item {item.id}: the {params['atom_role']!r} structure must hold one atom, not {len(atom)}")
    bulk_energy = model.energy(bulk) / len(bulk)
    atom_energy = model.energy(atom)
    return {"cohesive_energy": atom_energy - bulk_energy, "bulk_energy_per_atom": bulk_energy,
            "atom_energy": atom_energy}
