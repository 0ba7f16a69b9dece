"""OpenFF QM torsion benchmark (Behara et al. 2024): 59 drug-like fragments, 1-D torsion scans of 24 points.

One item is one torsion profile: its 24 MP2-optimised geometries (roles ``phi=-165`` ... ``phi=+180``) with
the reference single-point energies at each angle (``energy@<role>``, Hartree, absolute). The protocol
``torsion_profile`` turns both into relative energies and barrier heights, so the loader stays free of any
definition of either.

Source layout (checked against the data): the torsiondrive file holds ``angles`` (sorted -165..180),
``final_geometries`` (24 x natoms x 3, bohr, atom ``i`` = map index ``i+1`` of the mapped SMILES) and
metadata with the net charge; every single-point file holds ``angles`` and ``total energies`` (Hartree) in
that same sorted order. (``angle_indices_for_single_points.json`` is the submission order of the raw
QCArchive records; the JSON files are already re-sorted, so it is not needed.)

``tabulated`` names single-point files whose energies are attached to each geometry as
``atoms.info['ref_energy:<label>']`` (eV), for the ``tabulated`` model that checks the protocol against
published numbers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from .. import units
from ..errors import OmniBenchError
from ..items import Item, Quantity

_DIR = "OpenFF_QM_torsion_benchmark/"
PARAMS = {
    "geometries": _DIR + "MP2_heavy-aug-cc-pVTZ_torsiondrive_data.json",
    "reference": _DIR + "ref_mp2_heavy-aug-cc-pvTQz_plus_dCCSDT_heavy-aug-cc-pvdz_single_points_data.json",
    "tabulated": {"wB97M-D3BJ": _DIR + "wb97m-d3bj_dzvp_single_points_data.json"},
}
_BRACKET_ATOM = re.compile(r"\[(\d*)([A-Z][a-z]?|[a-z]{1,2})[^\]:]*:(\d+)\]")
_CHARGE_STATE = {-1: "anion", 0: "neutral", 1: "cation"}


def role(angle: int) -> str:
    """Structure role of the geometry at dihedral ``angle`` (degrees)."""
    return f"phi={angle:+d}"


def elements_from_mapped_smiles(smiles: str) -> list[str]:
    """Element of each atom in map-index order; every atom of an OpenFF mapped SMILES is a bracket atom."""
    by_index: dict[int, str] = {}
    for _isotope, symbol, index in _BRACKET_ATOM.findall(smiles):
        element = symbol.capitalize()
        if element not in chemical_symbols:
            raise ValueError(f"unknown element {symbol!r} in {smiles}")
        by_index[int(index)] = element
    if sorted(by_index) != list(range(1, len(by_index) + 1)):
        raise ValueError(f"map indices are not 1..N in {smiles}")
    unmapped = _BRACKET_ATOM.sub("", smiles)
    if re.search(r"[A-Za-z]", unmapped):
        raise ValueError(f"atoms without a map index in {smiles}")
    return [by_index[i] for i in range(1, len(by_index) + 1)]


def _read(files: dict[str, Path], relpath: str, param: str) -> dict:
    if relpath not in files:
        raise OmniBenchError(f"dataset.params.{param}: {relpath} is not among the task's dataset.files")
    return json.loads(files[relpath].read_text())


def _energies(data: dict, key: str, angles: list[int], relpath: str) -> list[float]:
    """The 24 total energies (Hartree) of one profile, after checking they follow the geometries' angles."""
    record = data.get(key)
    if record is None:
        raise OmniBenchError(f"{relpath}: no profile {key!r}")
    if record.get("angles") != angles:
        raise OmniBenchError(f"{relpath}: profile {key} field 'angles' differs from the geometries' angles")
    energies = record.get("total energies")
    if not isinstance(energies, list) or len(energies) != len(angles) or \
            not all(isinstance(e, (int, float)) for e in energies):
        raise OmniBenchError(f"{relpath}: profile {key} field 'total energies' must be {len(angles)} numbers")
    return [float(e) for e in energies]


def load(files: dict[str, Path], params: dict) -> list[Item]:
    params = {**PARAMS, **params}
    geometries = _read(files, params["geometries"], "geometries")
    reference = _read(files, params["reference"], "reference")
    tabulated = {label: (path, _read(files, path, f"tabulated.{label}"))
                 for label, path in (params["tabulated"] or {}).items()}
    bohr_in_angstrom = units.convert(1.0, "bohr", "A")
    items = []
    for key in sorted(geometries, key=int):
        record = geometries[key]
        where = f"{params['geometries']}: profile {key}"
        try:
            meta = record["metadata"]
            symbols = elements_from_mapped_smiles(meta["mapped_smiles"])
            charge, multiplicity = int(meta["mol_charge"]), int(meta["mol_multiplicity"])
            angles = [int(a) for a in record["angles"]]
            frames = record["final_geometries"]
        except (KeyError, TypeError, ValueError) as exc:
            raise OmniBenchError(f"{where}: bad metadata/angles/final_geometries ({exc})") from None
        if len(frames) != len(angles) or any(len(f) != len(symbols) for f in frames):
            raise OmniBenchError(f"{where}: field 'final_geometries' must be {len(angles)} frames of "
                                 f"{len(symbols)} atoms (the mapped SMILES)")
        ref_energies = _energies(reference, key, angles, params["reference"])
        extra = {label: _energies(data, key, angles, path) for label, (path, data) in tabulated.items()}
        structures, ref = {}, {}
        for i, angle in enumerate(angles):
            atoms = Atoms(symbols, positions=np.asarray(frames[i], dtype=float) * bohr_in_angstrom, pbc=False)
            atoms.info.update({"charge": charge, "spin": multiplicity, "dihedral_deg": angle})
            for label, energies in extra.items():
                atoms.info[f"ref_energy:{label}"] = units.convert(energies[i], "Hartree", "eV")
            structures[role(angle)] = atoms
            ref[f"energy@{role(angle)}"] = Quantity(ref_energies[i], "Hartree")
        items.append(Item(
            id=key,
            structures=structures,
            reference=ref,
            groups={"charge": _CHARGE_STATE.get(charge, f"charge {charge:+d}")},
            meta={"angles": angles, "mapped_smiles": meta["mapped_smiles"],
                  "dihedral": meta.get("dihedral scanned")},
        ))
    return items
