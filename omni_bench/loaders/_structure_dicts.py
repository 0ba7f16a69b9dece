"""Reading pymatgen ``Structure.as_dict()`` payloads (matcalc benchmark files) into ASE Atoms.

The dicts are parsed directly rather than through pymatgen: it is faster for a thousand structures and
keeps pymatgen out of omni-bench's own dependencies. Only ordered structures are accepted (one species
per site, occupancy 1); anything else is an error, because a model cannot take a disordered site.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
from ase import Atoms

from ..errors import OmniBenchError


def read_json_gz(path: Path):
    try:
        with gzip.open(path, "rt") as fh:
            return json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise OmniBenchError(f"{path}: cannot read gzipped JSON: {exc}") from None


def atoms_from_structure_dict(data: dict, where: str) -> Atoms:
    """An ASE Atoms from a pymatgen Structure dict; ``where`` (file and entry) prefixes every error."""
    try:
        lattice = np.array(data["lattice"]["matrix"], dtype=float)
        pbc = data["lattice"].get("pbc", (True, True, True))
        symbols, positions = [], []
        for site in data["sites"]:
            species = site["species"]
            if len(species) != 1 or abs(float(species[0].get("occu", 1.0)) - 1.0) > 1e-8:
                raise OmniBenchError(f"{where}: disordered site {species}; only ordered structures are supported")
            symbols.append(species[0]["element"])
            positions.append(site["xyz"] if "xyz" in site else np.array(site["abc"], dtype=float) @ lattice)
    except (KeyError, TypeError, ValueError) as exc:
        raise OmniBenchError(f"{where}: not a pymatgen Structure dict ({type(exc).__name__}: {exc})") from None
    return Atoms(symbols=symbols, positions=positions, cell=lattice, pbc=pbc)
