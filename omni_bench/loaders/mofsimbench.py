"""MOFSimBench DFT energy-volume curves: 100 MOFs (and a few zeolites), DFT-optimised CIF + 5 (one: 11) volumes.

Each CSV row gives ``cif_name`` (the file ``dft_data/set_{1,2}/<cif_name>.cif``), ``volumes_A3`` and
``energies_au`` (CP2K total energies) and the published ``B0_GPa``. The CIF is the DFT minimum at strain
1.000 (its volume equals that volume to 1e-6); every curve point becomes one structure, the CIF scaled
isotropically (fractional coordinates kept) to that volume, roles ``V0`` .. ``V<n-1>`` by increasing volume.
Volumes are taken from ``volumes_A3``, not from ``strains`` (one row's strains say +/-4% where its volumes
are +/-2%). Each structure carries its DFT energy in eV as ``atoms.info['ref_energy:PBE-D3']`` for the
tabulated model; ``meta['relative_energy']`` holds the DFT curve relative to its lowest point (eV/atom).
Items are ordered by atom count, smallest first, so a ``--limit`` prefix is the cheapest one.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io.cif import parse_cif

from .. import units
from ..errors import OmniBenchError
from ..items import Item, Quantity

CSV_FILE = "MOFSimBench/dft_data/1st_2nd_final_filter_good_bulk_modulus_calc_info_combined.csv"
REF_KEY = "ref_energy:PBE-D3"
PARAMS = {"energies_in_ev": [], "structures": None}
#: largest relative mismatch between the CIF volume and the curve volume its strain 1.0 point names
CIF_VOLUME_TOL = 1e-5


def load(files: dict[str, Path], params: dict) -> list[Item]:
    """``energies_in_ev`` names rows (``structure``) whose ``energies_au`` are eV despite the column name."""
    table = files[CSV_FILE]
    cifs = {Path(rel).stem: path for rel, path in files.items() if rel.endswith(".cif")}
    in_ev = set(params.get("energies_in_ev") or [])
    wanted = params.get("structures")
    with open(table, newline="") as fh:
        rows = list(csv.DictReader(fh))
    names = {row["structure"] for row in rows}
    unknown = (in_ev | set(wanted or [])) - names
    if unknown:
        raise OmniBenchError(f"dataset.params: {sorted(unknown)} are not 'structure' values of {table}")
    items = [_item(table, row, cifs, row["structure"] in in_ev) for row in rows
             if wanted is None or row["structure"] in wanted]
    return sorted(items, key=lambda item: (len(item.structures["V0"]), item.id))


def _item(table: Path, row: dict, cifs: dict[str, Path], energies_in_ev: bool) -> Item:
    name = row["structure"]
    where = f"{table}: row {name!r}"
    if row["cif_name"] not in cifs:
        raise OmniBenchError(f"{where}: CIF {row['cif_name']}.cif is not among the task's dataset.files")
    try:
        volumes = np.array(json.loads(row["volumes_A3"]), dtype=float)
        energies = np.array(json.loads(row["energies_au"]), dtype=float)
        b0 = float(row["B0_GPa"])
    except (ValueError, TypeError) as exc:
        raise OmniBenchError(f"{where}: unreadable volumes_A3/energies_au/B0_GPa ({exc})") from None
    if len(volumes) != len(energies) or len(volumes) < 5:
        raise OmniBenchError(f"{where}: {len(volumes)} volumes but {len(energies)} energies (need >= 5 each)")
    energy_unit = "eV" if energies_in_ev else "Hartree"
    energies_ev = np.array([units.convert(e, energy_unit, "eV") for e in energies])
    order = np.argsort(volumes)
    volumes, energies_ev = volumes[order], energies_ev[order]

    crystal = read_p1_cif(cifs[row["cif_name"]])
    mismatch = np.min(np.abs(volumes / crystal.get_volume() - 1.0))
    if mismatch > CIF_VOLUME_TOL:
        raise OmniBenchError(f"{where}: CIF volume {crystal.get_volume():.3f} A^3 matches no curve volume "
                             f"(closest off by {mismatch:.1e}); the CIF is not this curve's DFT minimum")
    structures = {}
    for index, (volume, energy) in enumerate(zip(volumes, energies_ev, strict=True)):
        strained = Atoms(numbers=crystal.numbers, cell=crystal.cell, scaled_positions=crystal.get_scaled_positions(),
                         pbc=True)
        strained.set_cell(crystal.cell * (volume / crystal.get_volume()) ** (1 / 3), scale_atoms=True)
        strained.info[REF_KEY] = float(energy)
        structures[f"V{index}"] = strained
    lowest = int(np.argmin(energies_ev))
    relative = (energies_ev - energies_ev[lowest]) / len(crystal)
    return Item(
        id=name,
        structures=structures,
        reference={"bulk_modulus": Quantity(b0, "GPa")},
        groups={"family": _family(name)},
        meta={"reference_index": lowest, "relative_energy": [Quantity(float(e), "eV/atom") for e in relative],
              "volume_ratios": [float(v / volumes[lowest]) for v in volumes], "cif": row["cif_name"]},
    )


def read_p1_cif(path: Path) -> Atoms:
    """The CIF's atoms as listed. All these CIFs are P1, and ase.io.read would spend minutes per large cell
    looking for symmetry-equivalent sites that cannot exist; any other space group is refused."""
    blocks = list(parse_cif(str(path)))
    if len(blocks) != 1:
        raise OmniBenchError(f"{path}: expected one CIF data block, found {len(blocks)}")
    spacegroup = blocks[0].get_spacegroup(True)
    if spacegroup.no != 1 or len(spacegroup.get_rotations()) != 1:
        raise OmniBenchError(f"{path}: space group {spacegroup.symbol!r}; only P1 CIFs are read here")
    atoms = blocks[0].get_unsymmetrized_structure()
    atoms.pbc = True
    return atoms


def _family(name: str) -> str:
    """Zeolites (three-letter IZA codes) apart from MOFs, since they are an order of magnitude stiffer."""
    return "zeolite" if len(name) == 3 and name.isalpha() and name.isupper() else "mof"
