"""PBE-D3 organic molecular crystals of Schrodinger's MLFF test data (Zhou et al., Nat Commun 16, 2210, 2025).

One JSON file per molecule (``<REFCODE>.json``): its experimentally known forms
(``OrganicCrystals_PBE-D3_experimental_structures``) or a crystal-structure-prediction landscape
(``OrganicCrystals_PBE-D3``). Each crystal is one item (role ``crystal``, id = the record's title) whose
reference is the cell energy divided by ``number_of_molecules`` (``energy_per_molecule``, the file's unit,
Ry); ``groups['system']`` is the molecule, the set within which energies are compared
(``polymorph_ranking``). ``meta['experimental_match']`` names the CCDC form a CSP structure matches.

Each cell must hold whole molecules of one composition: the atom count per molecule and the element counts
are checked against ``number_of_molecules`` for every crystal of a molecule, so a wrong Z cannot slip into
an energy per molecule. ``exclude`` drops crystals by title (the task file says why).

``subset: {every: k}`` is a CPU slice of a landscape that keeps its energy range: per molecule, the crystals
in reference-energy order, every k-th from the lowest, plus every crystal that matches an experimental form.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from .. import units
from ..errors import OmniBenchError
from ..items import Item, Quantity
from ._schrodinger_json import energy, files_under, read_records, subset_count, to_atoms

PARAMS = {"folder": "MLFF_test_data_Schrodinger/OrganicCrystals_PBE-D3_experimental_structures",
          "reference": "PBE-D3", "tabulated": {"PBE-D3": "PBE-D3"}, "exclude": [],
          "subset": None}
#: choose the reference or the crystals kept, never how a crystal is computed (see identity.py)
REFERENCE_AND_SELECTION_PARAMS = ("reference", "exclude", "subset")


def load(files: dict[str, Path], params: dict) -> list[Item]:
    params = {**PARAMS, **params}
    excluded = set(params["exclude"] or [])
    items, seen = [], set()
    for rel, path in files_under(files, params["folder"], "folder"):
        system = Path(rel).stem
        molecule = None
        for index, record in enumerate(read_records(path)):
            title = str(record.get("title", index))
            seen.add(title)
            if title in excluded:
                continue
            where = f"{path}: {title}"
            item = _crystal(record, system, title, where, params)
            formula = _formula_per_molecule(item, where)
            if molecule is not None and formula != molecule:
                raise OmniBenchError(f"{where}: molecule {dict(formula)} differs from the file's first crystal "
                                     f"({dict(molecule)}); check number_of_molecules")
            molecule = formula
            items.append(item)
    unknown = excluded - seen
    if unknown:
        raise OmniBenchError(f"dataset.params.exclude: {sorted(unknown)} are not titles in {params['folder']}")
    if params["subset"] is None:
        return items
    return energy_range_subset(items, subset_count(params["subset"], "every", "crystal"))


def energy_range_subset(items: list[Item], every: int) -> list[Item]:
    """Per molecule, every ``every``-th crystal by reference energy (the lowest always) plus the experimental
    matches, in the input order."""
    kept = set()
    for system in {i.groups["system"] for i in items}:
        ranked = sorted((i for i in items if i.groups["system"] == system),
                        key=lambda i: i.reference["energy_per_molecule"].value)
        kept |= {i.id for i in ranked[::every]} | {i.id for i in ranked if i.meta["experimental_match"]}
    return [i for i in items if i.id in kept]


def _crystal(record: dict, system: str, title: str, where: str, params: dict) -> Item:
    atoms = to_atoms(record, where)
    if not atoms.pbc.all():
        raise OmniBenchError(f"{where}: no 'lattice'; a crystal needs its cell")
    n_molecules = record.get("number_of_molecules")
    if not isinstance(n_molecules, int) or n_molecules < 1:
        raise OmniBenchError(f"{where}: field 'number_of_molecules' must be a positive integer, got {n_molecules!r}")
    cell_energy = energy(record, params["reference"], where)
    for label, method in (params["tabulated"] or {}).items():
        atoms.info[f"ref_energy:{label}"] = units.convert(*energy(record, method, where), "eV")
    return Item(
        id=title,
        structures={"crystal": atoms},
        reference={"energy_per_molecule": Quantity(cell_energy.value / n_molecules, f"{cell_energy.unit}/molecule")},
        groups={"system": system},
        meta={"n_molecules": n_molecules, "experimental_match": record.get("experimental_match")},
    )


def _formula_per_molecule(item: Item, where: str) -> Counter:
    atoms, n = item.structures["crystal"], item.meta["n_molecules"]
    counts = Counter(atoms.get_chemical_symbols())
    if any(count % n for count in counts.values()):
        raise OmniBenchError(f"{where}: element counts {dict(counts)} are not a multiple of number_of_molecules={n}")
    return Counter({element: count // n for element, count in counts.items()})
