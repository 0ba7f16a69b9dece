"""A few small structures of several kinds for the physicality suite; no data file is read.

- ``s22``: S22 complexes by name (molecules, from the ``ase_s22`` loader);
- ``dcdft``: Delta-test elemental crystals (from the ``ase_dcdft`` loader, at the reference volume), each
  repeated ``crystal_repeat`` times along every cell vector;
- ``water_box``: a periodic box of that many water molecules (0: none) at 0.997 g/cm^3, generated here:
  ASE's water molecule on a cubic grid, each turned by a random rotation (``seed``). It is not equilibrated;
  protocols that need a sane starting point only take single points of it or thermalise it first.

Each item has one structure, ``structure``, and the group ``kind``: molecule, crystal or water-box.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import molecule
from scipy.spatial.transform import Rotation

from ..errors import OmniBenchError
from ..items import Item
from . import ase_dcdft, ase_s22

PARAMS = {"s22": [], "dcdft": [], "crystal_repeat": 2, "water_box": 0, "seed": 0}

#: g/mol of water and g/cm^3 of liquid water at 298 K; 1 g/cm^3 = 0.60221 (g/mol)/A^3 / N_A
WATER_MOLAR_MASS = 18.015
WATER_DENSITY = 0.997
GRAM_PER_MOL_PER_A3 = 0.602214


def load(files: dict[str, Path], params: dict) -> list[Item]:
    params = {**PARAMS, **params}
    items = []
    if params["s22"]:
        complexes = {item.id: item.structures["complex"] for item in ase_s22.load({}, {})}
        missing = [name for name in params["s22"] if name not in complexes]
        if missing:
            raise OmniBenchError(f"loader physicality_structures: params.s22 names {', '.join(missing)}, not in "
                                 f"S22 (known: {', '.join(complexes)})")
        items += [Item(id=name, structures={"structure": complexes[name]}, groups={"kind": "molecule"})
                  for name in params["s22"]]
    repeat = params["crystal_repeat"]
    if not isinstance(repeat, int) or repeat < 1:
        raise OmniBenchError(f"loader physicality_structures: params.crystal_repeat must be a positive integer, "
                             f"got {repeat!r}")
    if params["dcdft"]:
        for item in ase_dcdft.load({}, {"elements": params["dcdft"]}):
            crystal = item.structures["crystal"].repeat(repeat)
            items.append(Item(id=f"{item.id}{len(crystal)}", structures={"structure": crystal},
                              groups={"kind": "crystal"}))
    n_water = params["water_box"]
    if not isinstance(n_water, int) or n_water < 0:
        raise OmniBenchError(f"loader physicality_structures: params.water_box must be a count of molecules, "
                             f"got {n_water!r}")
    if n_water:
        items.append(Item(id=f"water-box-{n_water}", structures={"structure": water_box(n_water, params["seed"])},
                          groups={"kind": "water-box"}))
    if not items:
        raise OmniBenchError("loader physicality_structures: params select no structure (give s22, dcdft or "
                             "water_box)")
    return items


def water_box(n_molecules: int, seed: int) -> Atoms:
    """``n_molecules`` randomly turned water molecules on the sites of a cubic grid filling a periodic cube of
    liquid water's density (the first ``n_molecules`` sites of the smallest grid that holds them)."""
    side = (n_molecules * WATER_MOLAR_MASS / (WATER_DENSITY * GRAM_PER_MOL_PER_A3)) ** (1 / 3)
    per_edge = math.ceil(n_molecules ** (1 / 3) - 1e-9)
    spacing = side / per_edge
    rng = np.random.default_rng(seed)
    water = molecule("H2O")
    water.positions -= water.get_center_of_mass()
    box = Atoms(cell=[side, side, side], pbc=True)
    sites = [(i, j, k) for i in range(per_edge) for j in range(per_edge) for k in range(per_edge)][:n_molecules]
    for site in sites:
        turned = water.copy()
        rotation = Rotation.random(random_state=rng).as_matrix()
        turned.positions = turned.positions @ rotation.T + (np.array(site) + 0.5) * spacing
        box += turned
    return box
