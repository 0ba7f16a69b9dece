"""Adsorption on Cu/Ag/Au/Pd/Pt(111): the CatBench-format subset of Mamun et al.'s Catalysis-Hub set.

Items are the 39 distinct *structures* (gas references, clean slabs, adsorbate+slab), not the 31 reactions,
because the gas references and clean slabs are shared: H2 enters all 31 reactions, each slab up to 7.
Computing each structure once and building reactions in the protocol's ``derive`` step saves ~60% of the
work, and it stays true with relaxations, since a shared structure relaxes to the same answer every time.
Reactions travel in ``meta['reactions']`` of their adsorbate+slab item, so a ``--limit`` run scores the
reactions whose structures it computed: the items are ordered gases, then per metal the slab and its
adsorbates.

Structures come from the file's ``_structures`` (ASE-database JSON per hash), as upstream stores them. Each
carries ``atoms.info['ref_energy:BEEF-vdW']`` (eV, absolute Quantum ESPRESSO energy) for validation with the
tabulated model; fixed atoms (the bottom two layers) come from the data's FixAtoms.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from ase import Atoms
from ase.io import read

from ..errors import OmniBenchError
from ..items import Item, Quantity
from . import find_file

PARAMS: dict = {}
REF_ENERGY_KEY = "ref_energy:BEEF-vdW"
_REACTIONS_FILE = "Mamun_noble_C1_subset_adsorption.json"


def load(files: dict[str, Path], params: dict) -> list[Item]:
    reactions_path = find_file(files, _REACTIONS_FILE, "mamun_noble")
    data = json.loads(reactions_path.read_text())
    if "_structures" not in data:
        raise OmniBenchError(f"{reactions_path}: no '_structures' field")

    structures: dict[str, Item] = {}  # by hash, in the order items are returned
    gases: dict[str, Item] = {}
    per_metal: dict[str, list[Item]] = {}
    for reaction_id, entry in data.items():
        if reaction_id == "_structures":
            continue
        where = f"{reactions_path}: reaction {reaction_id!r}"
        prefix = reaction_id.split("_", 1)[0]  # "Cu12": metal symbol + slab size
        metal = prefix.rstrip("0123456789")
        stoichiometry: dict[str, float] = {}
        adslab: Item | None = None
        for species, term in entry["raw"].items():
            digest = term["ref"]
            item = structures.get(digest)
            if item is None:
                atoms = _structure(data["_structures"], digest, float(term["energy_ref"]), where)
                kind = "gas" if species.endswith("gas") else "slab" if species == "star" else "adslab"
                item_id = f"gas/{species}" if kind == "gas" else f"{prefix}/{species}"
                item = Item(id=item_id, structures={kind: atoms}, meta={"kind": kind, "hash": digest})
                structures[digest] = item
                if kind == "gas":
                    gases[digest] = item
                else:
                    per_metal.setdefault(prefix, []).append(item)
            stoichiometry[item.id] = float(term["stoi"])
            if item.meta["kind"] == "adslab":
                if adslab is not None:
                    raise OmniBenchError(f"{where}: more than one adsorbate+slab structure")
                adslab = item
        if adslab is None:
            raise OmniBenchError(f"{where}: no adsorbate+slab structure")
        _set_adsorbate(adslab, [int(i) for i in entry["adsorbate_indices"]], where)
        adsorbate = adslab.id.split("/", 1)[1].removesuffix("star")
        adslab.meta.setdefault("reactions", []).append({
            "id": reaction_id,
            "stoichiometry": stoichiometry,
            "reference": Quantity(float(entry["ref_ads_eng"]), "eV"),
            "groups": {"metal": metal, "adsorbate": adsorbate},
        })

    items = list(gases.values())
    for metal_items in per_metal.values():
        items += sorted(metal_items, key=lambda i: i.meta["kind"] != "slab")  # the slab before its adsorbates
    ids = [i.id for i in items]
    if len(set(ids)) != len(ids):
        raise OmniBenchError(f"{reactions_path}: two structures share a species name on one metal")
    return items


def _structure(db_texts: dict, digest: str, energy: float, where: str) -> Atoms:
    """The structure from the CatBench ASE-db JSON."""
    if digest not in db_texts:
        raise OmniBenchError(f"{where}: structure {digest} missing from _structures")
    atoms = read(io.StringIO(db_texts[digest]), format="json")
    _fixed(atoms)  # only FixAtoms constraints are expected
    atoms.info = {REF_ENERGY_KEY: energy, "charge": 0, "spin": 1}
    return atoms


def _fixed(atoms: Atoms) -> list[int]:
    fixed = []
    for constraint in atoms.constraints:
        if type(constraint).__name__ != "FixAtoms":
            raise OmniBenchError(f"unexpected constraint {type(constraint).__name__} on {atoms.get_chemical_formula()}")
        fixed += [int(i) for i in constraint.get_indices()]
    return sorted(fixed)


def _set_adsorbate(item: Item, indices: list[int], where: str) -> None:
    atoms = item.structures["adslab"]
    if not indices or max(indices) >= len(atoms) or set(indices) & set(_fixed(atoms)):
        raise OmniBenchError(f"{where}: adsorbate_indices {indices} do not fit {atoms.get_chemical_formula()}")
    if item.meta.get("adsorbate_indices", indices) != indices:
        raise OmniBenchError(f"{where}: adsorbate_indices differ between reactions of {item.id}")
    item.meta["adsorbate_indices"] = indices
