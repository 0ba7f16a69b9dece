"""Elemental crystals of the Delta test shipped with ASE (``ase.collections.dcdft``), with WIEN2k PBE EOS."""

from __future__ import annotations

from pathlib import Path

from ..errors import OmniBenchError
from ..items import Item, Quantity

PARAMS = {"elements": None}


def load(files: dict[str, Path], params: dict) -> list[Item]:
    from ase.collections import dcdft

    elements = params.get("elements") or dcdft.names
    missing = [e for e in elements if not dcdft.has(e)]
    if missing:
        raise OmniBenchError(f"dataset.params.elements: {', '.join(missing)} not in ase.collections.dcdft")
    items = []
    for element in elements:
        ref = dcdft.data[element]
        crystal = dcdft[element]
        # Centre the E(V) grid on the reference volume, as the Delta test does.
        scale = (ref["wien2k_volume"] * len(crystal) / crystal.get_volume()) ** (1 / 3)
        crystal.set_cell(crystal.cell * scale, scale_atoms=True)
        items.append(Item(
            id=element,
            structures={"crystal": crystal},
            reference={
                "volume": Quantity(ref["wien2k_volume"], "A^3/atom"),
                "bulk_modulus": Quantity(ref["wien2k_B"], "GPa"),
                "bulk_modulus_derivative": Quantity(ref["wien2k_Bp"], "1"),
            },
        ))
    return items
