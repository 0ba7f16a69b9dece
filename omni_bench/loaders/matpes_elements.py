"""MatPES elemental references (matcalc's MatPES-PBE / MatPES-r2SCAN element refs): for each element its
ground-state crystal at that level and the isolated atom, with the DFT cohesive energy.

Each item holds two structures: ``bulk`` (the crystal) and ``atom`` (one atom in the data's ~15 A box).
The reference is the cohesive energy as a positive binding energy per atom, E_atom - E_bulk/N (eV/atom),
i.e. minus the data's ``cohesive_energy_per_atom`` (= energy_per_atom - energy_atomic). The atom's spin
multiplicity comes from its DFT magnetic moment, rounded to the nearest value with the parity of the
electron count: the MatPES atoms are not always in their Hund's-rule state (N has 1.9 rather than 3
unpaired electrons), and a model that takes spin should see the state the reference describes.
Stored DFT energies go to ``atoms.info['ref_energy:<functional>']`` (eV) for the tabulated model.
"""

from __future__ import annotations

from pathlib import Path

from ase import Atoms

from ..errors import OmniBenchError
from ..items import Item, Quantity
from ._structure_dicts import atoms_from_structure_dict, read_json_gz

PARAMS = {"elements": None}


def load(files: dict[str, Path], params: dict) -> list[Item]:
    if len(files) != 1:
        raise OmniBenchError(f"loader matpes_elements takes one element-reference file, got {len(files)}")
    path = next(iter(files.values()))
    data = read_json_gz(path)
    elements = params.get("elements") or sorted(data)
    missing = [e for e in elements if e not in data]
    if missing:
        raise OmniBenchError(f"dataset.params.elements: {', '.join(missing)} not in {path.name}")
    items = []
    for element in elements:
        entry = data[element]
        where = f"{path}: element {element}"
        try:
            functional = str(entry["functional"])
            bulk_energy, atom_energy = float(entry["energy"]), float(entry["energy_atomic"])
            cohesive = float(entry["cohesive_energy_per_atom"])
            bulk = atoms_from_structure_dict(entry["structure"], f"{where}, structure")
            atom = atoms_from_structure_dict(entry["structure_atomic"], f"{where}, structure_atomic")
            magmom = float(entry["structure_atomic"]["sites"][0].get("properties", {}).get("magmom", 0.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise OmniBenchError(f"{where}: missing or bad field ({type(exc).__name__}: {exc})") from None
        if set(bulk.get_chemical_symbols()) != {element} or atom.get_chemical_symbols() != [element]:
            raise OmniBenchError(f"{where}: structures are not of element {element}")
        if abs(bulk_energy / len(bulk) - atom_energy - cohesive) > 1e-4:
            raise OmniBenchError(f"{where}: cohesive_energy_per_atom is not energy/nsites - energy_atomic")
        key = f"ref_energy:{functional}"
        bulk.info.update({key: bulk_energy, "charge": 0, "spin": 1})
        atom.info.update({key: atom_energy, "charge": 0, "spin": spin_multiplicity(atom, magmom)})
        items.append(Item(
            id=element,
            structures={"bulk": bulk, "atom": atom},
            reference={"cohesive_energy": Quantity(-cohesive, "eV/atom")},
            meta={"matpes_id": entry.get("matpes_id"), "functional": functional, "atom_magmom": magmom},
        ))
    return items


def spin_multiplicity(atom: Atoms, magmom: float) -> int:
    """2S+1 from a magnetic moment (Bohr magnetons), with the unpaired count's parity that of the electrons."""
    parity = int(atom.numbers.sum()) % 2
    unpaired = int(round(abs(magmom)))
    if unpaired % 2 != parity:
        below, above = unpaired - 1, unpaired + 1
        unpaired = above if below < 0 or abs(abs(magmom) - above) < abs(abs(magmom) - below) else below
    return unpaired + 1
