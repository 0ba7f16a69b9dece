"""WBM crystals (matcalc's random 972-structure subset, DFT-relaxed, PBE(+U)) with formation energies
relative to the Materials Project PBE elemental references.

Items are of two kinds: ``element/<El>`` holds the lowest-energy MP polymorph of an element (the
reference of MP's formation energies), each once; a WBM compound item (id = WBM material id) holds its
crystal, its formation energy and its composition in ``meta``. Each compound comes after the element
references it needs, so ``--limit N`` gives complete formation energies for the first compounds.

Two references per compound: ``formation_energy`` (uncorrected PBE(+U)) and ``formation_energy_mp2020``
(with the Materials Project 2020 corrections), because models learn one or the other (see the task file).
Stored energies for the tabulated model: ``atoms.info['ref_energy:PBE']`` (eV, raw VASP total energy) and
``atoms.info['ref_energy:PBE+MP2020']`` (corrected; elements carry no correction, so both keys hold the MP
energy per atom times the number of atoms). The correction per atom goes to ``meta['mp2020_correction']``
and its group ``mp2020`` (corrected / uncorrected) splits the metrics.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..errors import OmniBenchError
from ..items import Item, Quantity
from . import find_file
from ._structure_dicts import atoms_from_structure_dict, read_json_gz

PARAMS: dict = {}
REF_ENERGY_KEY = "ref_energy:PBE"
CORRECTED_ENERGY_KEY = "ref_energy:PBE+MP2020"
_WBM_FILE = "wbm-random-pbe52-equilibrium-2025.1.json.gz"
_ELEMENTS_FILE = "MP-PBE-Element-Refs.json.gz"


def load(files: dict[str, Path], params: dict) -> list[Item]:
    wbm_path, refs_path = find_file(files, _WBM_FILE, "wbm"), find_file(files, _ELEMENTS_FILE, "wbm")
    element_items = _element_items(refs_path)
    records = read_json_gz(wbm_path)
    items: list[Item] = []
    listed: set[str] = set()
    for index, record in enumerate(records):
        where = f"{wbm_path}: entry {index} ({record.get('material_id', '?')})"
        try:
            atoms = atoms_from_structure_dict(record["structure"], where)
            energy, corrected = float(record["energy"]), float(record["corrected_energy"])
            e_form = float(record["formation_energy_per_atom"])
            e_form_corrected = float(record["corrected_formation_energy_per_atom"])
            material_id = str(record["material_id"])
        except (KeyError, TypeError, ValueError) as exc:
            raise OmniBenchError(f"{where}: missing or bad field ({type(exc).__name__}: {exc})") from None
        composition = dict(Counter(atoms.get_chemical_symbols()))
        for element in composition:
            if element not in element_items:
                raise OmniBenchError(f"{where}: no MP-PBE reference for element {element}")
            if element not in listed:
                items.append(element_items[element])
                listed.add(element)
        correction = (corrected - energy) / len(atoms)
        atoms.info.update({REF_ENERGY_KEY: energy, CORRECTED_ENERGY_KEY: corrected, "charge": 0, "spin": 1})
        items.append(Item(
            id=material_id,
            structures={"crystal": atoms},
            reference={"formation_energy": Quantity(e_form, "eV/atom"),
                       "formation_energy_mp2020": Quantity(e_form_corrected, "eV/atom")},
            groups={"mp2020": "corrected" if abs(correction) > 1e-8 else "uncorrected"},
            meta={"kind": "compound", "composition": composition, "formula": record.get("formula"),
                  "mp2020_correction": correction},
        ))
    return items




def _element_items(path: Path) -> dict[str, Item]:
    """The lowest-energy MP polymorph of each element: MP's formation-energy reference."""
    items = {}
    for element, entry in read_json_gz(path).items():
        where = f"{path}: element {element}"
        try:
            energies = [float(e) for e in entry["energy_per_atom"]]
            structures = entry["structure"]
        except (KeyError, TypeError, ValueError) as exc:
            raise OmniBenchError(f"{where}: missing or bad field ({type(exc).__name__}: {exc})") from None
        if not energies or len(energies) != len(structures):
            raise OmniBenchError(f"{where}: {len(energies)} energies for {len(structures)} structures")
        best = min(range(len(energies)), key=energies.__getitem__)
        atoms = atoms_from_structure_dict(structures[best], f"{where}, polymorph {best}")
        if set(atoms.get_chemical_symbols()) != {element}:
            raise OmniBenchError(f"{where}: polymorph {best} is not pure {element}")
        energy = energies[best] * len(atoms)
        atoms.info.update({REF_ENERGY_KEY: energy, CORRECTED_ENERGY_KEY: energy, "charge": 0, "spin": 1})
        items[element] = Item(id=f"element/{element}", structures={"crystal": atoms},
                              meta={"kind": "element", "element": element, "polymorph": best})
    return items
