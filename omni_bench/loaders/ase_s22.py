"""S22 non-covalent dimers shipped with ASE (``ase.collections.s22``), with CCSD(T) interaction energies."""

from __future__ import annotations

from pathlib import Path

from ..items import Item, Quantity

PARAMS: dict = {}


def load(files: dict[str, Path], params: dict) -> list[Item]:
    from ase.collections import s22
    from ase.data.s22 import data as s22_data

    items = []
    for name in s22.names:
        dimer = s22[name]
        n_first = s22_data[name]["dimer atoms"][0]
        items.append(Item(
            id=name,
            structures={"complex": dimer, "monomer_1": dimer[:n_first], "monomer_2": dimer[n_first:]},
            # ase stores the CCSD(T)/CBS interaction energy in eV (negative = bound).
            reference={"interaction_energy": Quantity(s22.data[name]["cc_energy"], "eV")},
        ))
    return items
