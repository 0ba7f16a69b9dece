"""A few small structures of several kinds for the physicality suite.

- ``s22``: S22 complexes by name (molecules, from the ``ase_s22`` loader);
- ``dcdft``: Delta-test elemental crystals (from the ``ase_dcdft`` loader, at the reference volume), each
  repeated ``crystal_repeat`` times along every cell vector;
- ``water_box``: a periodic box of that many water molecules (0: none) at 0.997 g/cm^3, generated here:
  ASE's water molecule on a cubic grid, each turned by a random rotation (``seed``). It is not equilibrated;
  protocols that need a sane starting point only take single points of it or thermalise it first;
- ``ice13``: ice polymorphs of the ice13 task by phase (``XVII`` reads ``DMC_ICE13/poscars/ice_XVII.vasp``,
  which ``dataset.files`` must list), at their DFT geometry;
- ``mofsimbench``: frameworks of the mofsimbench-eos tasks by CIF name (``opt_calf`` reads
  ``MOFSimBench/dft_data/set_*/opt_calf.cif``, listed in ``dataset.files``), at their DFT geometry.

Only ``ice13`` and ``mofsimbench`` read data files. Each item has one structure, ``structure``, and the group
``kind``: molecule, crystal, water-box, ice or mof.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import molecule
from ase.io import read
from scipy.spatial.transform import Rotation

from ..errors import OmniBenchError
from ..items import Item
from . import ase_dcdft, ase_s22
from .mofsimbench import read_p1_cif

PARAMS = {"s22": [], "dcdft": [], "crystal_repeat": 2, "water_box": 0, "seed": 0, "ice13": [], "mofsimbench": []}

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
    for phase in params["ice13"]:
        ice = read(_listed(files, f"ice_{phase}.vasp", "ice13", phase), format="vasp")
        ice.info.update({"charge": 0, "spin": 1})
        items.append(Item(id=f"ice-{phase}", structures={"structure": ice}, groups={"kind": "ice"}))
    for name in params["mofsimbench"]:
        framework = read_p1_cif(_listed(files, f"{name}.cif", "mofsimbench", name))
        framework.info.update({"charge": 0, "spin": 1})
        items.append(Item(id=name.removeprefix("opt_"), structures={"structure": framework}, groups={"kind": "mof"}))
    if not items:
        raise OmniBenchError("loader physicality_structures: params select no structure (give s22, dcdft, "
                             "water_box, ice13 or mofsimbench)")
    return items


def _listed(files: dict[str, Path], filename: str, param: str, name: str) -> Path:
    """The path of the listed data file named ``filename``, or an error saying the task must list it."""
    for rel, path in files.items():
        if Path(rel).name == filename:
            return path
    raise OmniBenchError(f"loader physicality_structures: params.{param} names {name!r}, so dataset.files must "
                         f"list its file {filename}")


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
