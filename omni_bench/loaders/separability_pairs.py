"""Pairs of fragments for the separability check: S22 dimers and adsorbates on metal slabs.

- ``s22``: S22 complexes (``ase_s22``), ``all`` or a list of names; fragments ``monomer_1`` and
  ``monomer_2`` as ASE splits them, group ``kind: molecular``. No data file.
- ``surfaces``: adsorbate+slab structures of the mamun-noble task (``mamun_noble``, its file must be listed
  in ``dataset.files``), by item id (``Cu12/OHstar``); ``monomer_1`` is the slab (every atom but the
  adsorbate's), ``monomer_2`` the adsorbate (the data's ``adsorbate_indices``), both in the periodic cell of
  the adsorbate+slab structure, group ``kind: surface``. The protocol moves the adsorbate away along the
  surface normal and enlarges the cell (``protocols/separability.py``).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import OmniBenchError
from ..items import Item
from . import ase_s22, mamun_noble

PARAMS = {"s22": "all", "surfaces": []}


def load(files: dict[str, Path], params: dict) -> list[Item]:
    params = {**PARAMS, **params}
    items = _s22_pairs(params["s22"])
    if params["surfaces"]:
        items += _surface_pairs(files, list(params["surfaces"]))
    if not items:
        raise OmniBenchError("loader separability_pairs: params select no pair (give s22 or surfaces)")
    return items


def _s22_pairs(names) -> list[Item]:
    if not names:
        return []
    dimers = {item.id: item for item in ase_s22.load({}, {})}
    wanted = list(dimers) if names == "all" else list(names)
    missing = [name for name in wanted if name not in dimers]
    if missing:
        raise OmniBenchError(f"loader separability_pairs: params.s22 names {', '.join(missing)}, not in S22 "
                             f"(known: {', '.join(dimers)})")
    return [Item(id=name, structures={role: dimers[name].structures[role] for role in ("monomer_1", "monomer_2")},
                 groups={"kind": "molecular"}) for name in wanted]


def _surface_pairs(files: dict[str, Path], ids: list[str]) -> list[Item]:
    adslabs = {item.id: item for item in mamun_noble.load(files, {}) if item.meta["kind"] == "adslab"}
    missing = [name for name in ids if name not in adslabs]
    if missing:
        raise OmniBenchError(f"loader separability_pairs: params.surfaces names {', '.join(missing)}, not an "
                             f"adsorbate+slab structure of mamun-noble (known: {', '.join(adslabs)})")
    items = []
    for name in ids:
        source = adslabs[name]
        adslab = source.structures["adslab"].copy()
        adslab.set_constraint()  # the data's fixed bottom layers mean nothing for single points
        adsorbate = set(source.meta["adsorbate_indices"])
        slab = adslab[[i for i in range(len(adslab)) if i not in adsorbate]]
        molecule = adslab[sorted(adsorbate)]
        for part in (slab, molecule):
            part.info = {"charge": 0, "spin": 1}
        items.append(Item(id=name, structures={"monomer_1": slab, "monomer_2": molecule},
                          groups={"kind": "surface"}))
    return items
