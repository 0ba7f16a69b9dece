"""A size ladder of cubic crystal supercells for timing benchmarks (md-speed); no data file is read.

Each item is one supercell: the conventional cubic cell of ``ase.build.bulk(element, crystalstructure,
a=lattice_constant, cubic=True)`` repeated k x k x k for every k in ``repeats``. Items come smallest
first, because a protocol that runs out of memory or time stops the rest of the ladder. The defaults give
diamond Si (a = 5.43 A, 8 atoms per cubic cell): 64, 216, 512, 1000, 4096, 8000, 32768 and 64000 atoms.
``element``, ``crystalstructure`` and ``lattice_constant`` can be changed so that tests run the same task
with EMT, which has no parameters for Si.
"""

from __future__ import annotations

from pathlib import Path

from ase.build import bulk

from ..errors import OmniBenchError
from ..items import Item

PARAMS = {
    "repeats": [2, 3, 4, 5, 8, 10, 16, 20],
    "element": "Si",
    "crystalstructure": "diamond",
    "lattice_constant": 5.43,
}


def load(files: dict[str, Path], params: dict) -> list[Item]:
    params = {**PARAMS, **params}
    repeats = params["repeats"]
    if not repeats or not all(isinstance(k, int) and k >= 1 for k in repeats) or len(set(repeats)) != len(repeats):
        raise OmniBenchError(f"loader diamond_si: params.repeats must be distinct positive integers, got {repeats!r}")
    cell = bulk(params["element"], params["crystalstructure"], a=float(params["lattice_constant"]), cubic=True)
    items = []
    for k in sorted(repeats):
        crystal = cell.repeat(k)
        n_atoms = len(crystal)
        items.append(Item(
            id=f"{params['element']}{n_atoms}",
            structures={"crystal": crystal},
            groups={"n_atoms": str(n_atoms)},
            meta={"repeat": k, "n_atoms": n_atoms},
        ))
    return items
