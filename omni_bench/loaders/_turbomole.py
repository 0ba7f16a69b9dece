"""Molecules in TURBOMOLE ``coord`` files (bohr), as the MOR41 and ROST61 sources store them.

Positions are rounded to 1e-8 A: the benchmark first read these molecules from an extxyz copy written with 8
decimals, and rounding the same way keeps every item, and so every stored result, bit-for-bit what it was
(1e-8 A is far below any geometric significance).
"""

from __future__ import annotations

from pathlib import Path

from ase import Atoms
from ase.io import read

from ..errors import OmniBenchError

POSITION_DECIMALS = 8


def read_coord(path: Path) -> Atoms:
    try:
        atoms = read(path, format="turbomole")
    except Exception as exc:  # ASE raises many kinds on a malformed file; name the file
        raise OmniBenchError(f"{path}: not a readable TURBOMOLE coord file: {type(exc).__name__}: {exc}") from None
    atoms.set_constraint([c for c in atoms.constraints if len(c.get_indices())])  # ASE adds an empty FixAtoms
    atoms.positions = [[float(f"{x:.{POSITION_DECIMALS}f}") for x in row] for row in atoms.positions]
    return atoms


def listed_molecules(files: dict[str, Path], folder: str, loader: str) -> dict[str, Path]:
    """Molecule name -> path of each listed ``<folder>/<name>/coord``, in the task file's order."""
    prefix = folder.rstrip("/") + "/"
    found = {rel[len(prefix):-len("/coord")]: path for rel, path in files.items()
             if rel.startswith(prefix) and rel.endswith("/coord") and rel.count("/") == prefix.count("/") + 1}
    if not found:
        raise OmniBenchError(f"loader {loader}: dataset.files lists no {prefix}<name>/coord file "
                             f"(dataset.params.structures is {folder!r})")
    return found
