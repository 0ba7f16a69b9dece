"""TorsionNet500 (Rai et al., JCIM 62, 785, 2022): 500 drug-like fragments, one rotamer scan of 24 points each.

One file ``fragment_NNN.json`` per scan (``-165 .. 180`` deg, step 15), all neutral closed shells. One item
is one scan, in the layout of the OpenFF torsion loader, so the ``torsion_profile`` protocol scores both:
roles ``phi=-165`` ... ``phi=+180`` and reference energies ``energy@<role>`` (absolute, the file's unit).
``reference`` names the method whose energies are scored; each of ``tabulated`` is attached to the structures
as ``atoms.info['ref_energy:<label>']`` (eV) for the tabulated model that validates the protocol.
``subset: {scans: n}`` keeps the first ``n`` scans in sha256-of-id order (a CPU slice that depends on neither
the file order nor anything a model computes), listed by id; without it, all 500.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .. import units
from ..errors import OmniBenchError
from ..items import Item
from ._schrodinger_json import energy, files_under, read_records, subset_count, to_atoms
from .openff_torsions import role

PARAMS = {
    "folder": "MLFF_test_data_Schrodinger/TorsionNet500",
    "reference": "DLPNO-CCSD(T)",
    "tabulated": {"wB97X-D3BJ": "wB97X-D3BJ/def2-TZVPD"},
    "subset": None,
}
ANGLES = list(range(-165, 181, 15))
#: choose the reference or the scans kept, never how a scan is computed (see identity.py)
REFERENCE_AND_SELECTION_PARAMS = ("reference", "subset")


def load(files: dict[str, Path], params: dict) -> list[Item]:
    params = {**PARAMS, **params}
    found = files_under(files, params["folder"], "folder")
    if params["subset"] is not None:
        size = subset_count(params["subset"], "scans", "scan")
        found = sorted(sorted(found, key=lambda pair: _hash_order(pair[0]))[:size])
    return [_scan(rel, path, params) for rel, path in found]


def _hash_order(rel: str) -> str:
    return hashlib.sha256(Path(rel).stem.encode()).hexdigest()


def _scan(rel: str, path: Path, params: dict) -> Item:
    records = read_records(path)
    try:
        angles = [int(round(float(r["torsion_angle"]))) for r in records]
        dihedral = [list(r["torsion_atoms"]) for r in records]
    except (KeyError, TypeError, ValueError) as exc:
        raise OmniBenchError(f"{path}: bad torsion_angle/torsion_atoms ({type(exc).__name__}: {exc})") from None
    if sorted(angles) != ANGLES:
        raise OmniBenchError(f"{path}: field 'torsion_angle' must cover {ANGLES[0]}..{ANGLES[-1]} deg in steps of 15 "
                             f"once each, got {angles}")
    if any(d != dihedral[0] for d in dihedral):
        raise OmniBenchError(f"{path}: field 'torsion_atoms' differs between the points of one scan")
    structures, reference = {}, {}
    for record, angle in sorted(zip(records, angles, strict=True), key=lambda pair: pair[1]):
        where = f"{path}: {record.get('title', angle)}"
        atoms = to_atoms(record, where)
        atoms.info["dihedral_deg"] = angle
        for label, method in (params["tabulated"] or {}).items():
            atoms.info[f"ref_energy:{label}"] = units.convert(*energy(record, method, where), "eV")
        structures[role(angle)] = atoms
        reference[f"energy@{role(angle)}"] = energy(record, params["reference"], where)
    if len({len(a) for a in structures.values()}) != 1:
        raise OmniBenchError(f"{path}: the points of one scan have different atom counts")
    return Item(id=Path(rel).stem, structures=structures, reference=reference,
                meta={"angles": sorted(angles), "dihedral": dihedral[0], "smiles": records[0].get("smiles")})
