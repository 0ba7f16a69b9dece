"""Adsorption on Cu/Ag/Au/Pd/Pt(111): the CatBench-format subset of Mamun et al.'s Catalysis-Hub set.

Items are the 39 distinct *structures* (gas references, clean slabs, adsorbate+slab), not the 31 reactions,
because the gas references and clean slabs are shared: H2 enters all 31 reactions, each slab up to 7.
Computing each structure once and building reactions in the protocol's ``derive`` step saves ~60% of the
work, and it stays true with relaxations, since a shared structure relaxes to the same answer every time.
Reactions travel in ``meta['reactions']`` of their adsorbate+slab item, so a ``--limit`` run scores the
reactions whose structures it computed: the items are ordered gases, then per metal the slab and its
adsorbates.

Each structure carries ``atoms.info['ref_energy:BEEF-vdW']`` (eV, absolute Quantum ESPRESSO energy) for
validation with the tabulated model; fixed atoms (the bottom two layers) come from the data's FixAtoms.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read

from ..errors import OmniBenchError
from ..items import Item, Quantity
from . import find_file

PARAMS: dict = {}
REF_ENERGY_KEY = "ref_energy:BEEF-vdW"
_REACTIONS_FILE = "Mamun_noble_C1_subset_adsorption.json"
_STRUCTURES_FILE = "mamun_noble_subset_structures.extxyz"


def load(files: dict[str, Path], params: dict) -> list[Item]:
    reactions_path = find_file(files, _REACTIONS_FILE, "mamun_noble")
    structures_path = find_file(files, _STRUCTURES_FILE, "mamun_noble")
    data = json.loads(reactions_path.read_text())
    if "_structures" not in data:
        raise OmniBenchError(f"{reactions_path}: no '_structures' field")
    extxyz = {a.info["hash"]: a for a in read(structures_path, ":")}

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
                atoms = _structure(data["_structures"], digest, extxyz, float(term["energy_ref"]), where)
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




def _structure(db_texts: dict, digest: str, extxyz: dict[str, Atoms], energy: float, where: str) -> Atoms:
    """The structure from the CatBench ASE-db JSON, checked against the extxyz copy (geometry, constraint,
    energy), because the two files were written by different tools."""
    if digest not in db_texts or digest not in extxyz:
        raise OmniBenchError(f"{where}: structure {digest} missing from _structures or the extxyz file")
    atoms = read(io.StringIO(db_texts[digest]), format="json")
    twin = extxyz[digest]
    same = (len(atoms) == len(twin) and (atoms.numbers == twin.numbers).all()
            and np.allclose(atoms.positions, twin.positions, atol=1e-6) and np.allclose(atoms.cell, twin.cell))
    if not same or _fixed(atoms) != _fixed(twin):
        raise OmniBenchError(f"{where}: structure {digest} differs between _structures and the extxyz file")
    if abs(float(twin.info["REF_energy"]) - energy) > 1e-6:
        raise OmniBenchError(f"{where}: energy_ref of {digest} differs from REF_energy in the extxyz file")
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
