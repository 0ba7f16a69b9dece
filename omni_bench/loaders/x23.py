"""X23 molecular crystals (Della Pia et al. DMC geometries): a crystal and its isolated molecule per system.

Files: the table ``x23-lattice-energies-dmc.csv`` (shipped beside the task file) and the solid and molecule
POSCARs it names, under ``params.structures`` in the data root (default ``X23_DMC``); optionally the table
``x23-vasp-energies.csv`` (VASP single points of 17 functionals on the same geometries, parsed from the
upstream OUTCARs by scripts/x23_vasp_table.py). When that table is listed:

- every structure carries its DFT total energy as ``atoms.info['ref_energy:<functional>']`` (eV), so the
  tabulated model reproduces each functional's published lattice energies;
- ``params.reference`` may name one of its functionals instead of ``DMC``: the scored reference is then
  that functional's lattice energy on the same geometries (E_solid/n - E_gas, gas molecule in a 19 A box).

The two sets are matched by the two-digit system number (names differ: ``01CYHEXO`` vs
``01_cyclohexanedione``, ``13naphtalene`` vs ``13_naphthalene``) and the atom counts must agree; that the
geometries are identical (up to a rigid translation of the crystal and atom order of the molecule) is
checked in tests/test_tasks_molecular_crystals.py.

The number of molecules per cell is checked against the atom counts: the upstream ``nmol`` file says 2
for succinic acid, but its POSCAR holds 8 molecules (the CSV has the corrected 8).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ase import Atoms
from ase.io import read

from .. import units
from ..errors import OmniBenchError, did_you_mean
from ..items import Item, Quantity
from . import read_table

PARAMS = {"reference": "DMC", "structures": "X23_DMC"}

DMC_TABLE = "x23-lattice-energies-dmc.csv"
DFT_TABLE = "x23-vasp-energies.csv"
#: unit of the lattice energies in both tables' reference columns
LATTICE_UNIT = "kJ/mol/molecule"


def find_file(files: dict[str, Path], name: str, required: bool = True) -> tuple[str, Path] | None:
    """The (relative path, absolute path) of the listed file whose name is ``name``."""
    hits = [(rel, path) for rel, path in files.items() if Path(rel).name == name]
    if len(hits) > 1:
        raise OmniBenchError(f"dataset.files lists {name} more than once: {', '.join(r for r, _ in hits)}")
    if not hits:
        if required:
            raise OmniBenchError(f"dataset.files must list {name}")
        return None
    return hits[0]


def load(files: dict[str, Path], params: dict) -> list[Item]:
    _, table_path = find_file(files, DMC_TABLE)
    folder = Path(params.get("structures", PARAMS["structures"]))
    dft = find_file(files, DFT_TABLE, required=False)
    dft_energies = read_dft_energies(dft[1]) if dft else {}
    reference = params.get("reference", "DMC")
    if reference != "DMC":
        functionals = sorted({f for per_system in dft_energies.values() for f in per_system})
        if not dft_energies:
            raise OmniBenchError(f"dataset.params.reference: {reference!r} needs {DFT_TABLE} in dataset.files")
        if reference not in functionals:
            raise OmniBenchError(f"dataset.params.reference: {reference!r} is not in {DFT_TABLE}"
                                 f"{did_you_mean(reference, functionals)}; known: DMC, {', '.join(functionals)}")

    items = []
    for line, row in read_table(table_path):
        where = f"{table_path}:{line}"
        solid = read_structure(files, folder / row["solid_poscar"], periodic=True)
        molecule = read_structure(files, folder / row["molecule_poscar"], periodic=False)
        n_molecules = check_molecule_count(solid, molecule, int(row["n_molecules_in_cell"]), where)
        number = row["system_id"][:2]
        if dft_energies:
            attach_dft_energies(solid, molecule, dft_energies, number, where)
        if reference == "DMC":
            lattice_energy = Quantity(float(row["E_latt_DMC_kJ_mol"]), LATTICE_UNIT)
        else:
            per_molecule = (solid.info[f"ref_energy:{reference}"] / n_molecules
                            - molecule.info[f"ref_energy:{reference}"])
            lattice_energy = Quantity(units.convert(per_molecule, "eV/molecule", LATTICE_UNIT), LATTICE_UNIT)
        items.append(Item(
            id=row["system_id"],
            structures={"solid": solid, "molecule": molecule},
            reference={"lattice_energy": lattice_energy},
            meta={"name": row["name"], "n_molecules": n_molecules,
                  "dmc_error_bar": Quantity(float(row["E_latt_DMC_err_kJ_mol"]), LATTICE_UNIT)},
        ))
    return items


def read_structure(files: dict[str, Path], rel: Path, periodic: bool) -> Atoms:
    """A listed POSCAR; molecules lose their box (the reference is the isolated molecule)."""
    if rel.as_posix() not in files:
        raise OmniBenchError(f"dataset.files must list {rel.as_posix()} (named in {DMC_TABLE})")
    atoms = read(files[rel.as_posix()], format="vasp")
    if not periodic:
        atoms = Atoms(atoms.get_chemical_symbols(), positions=atoms.positions, pbc=False)
    atoms.info.update({"charge": 0, "spin": 1})
    return atoms


def check_molecule_count(solid: Atoms, molecule: Atoms, listed: int, where: str) -> int:
    """Molecules per cell from the compositions; it must equal the table's count."""
    counts, per_molecule = Counter(solid.get_chemical_symbols()), Counter(molecule.get_chemical_symbols())
    n_molecules, remainder = divmod(len(solid), len(molecule))
    if remainder or any(counts[el] != n_molecules * n for el, n in per_molecule.items()) or set(counts) != set(
            per_molecule):
        raise OmniBenchError(f"{where}: the solid ({solid.get_chemical_formula()}) is not a whole number of "
                             f"molecules ({molecule.get_chemical_formula()})")
    if n_molecules != listed:
        raise OmniBenchError(f"{where}: field 'n_molecules_in_cell' is {listed}, but the solid holds "
                             f"{n_molecules} molecules")
    return n_molecules


def read_dft_energies(path: Path) -> dict[str, dict[str, dict[str, tuple[int, float]]]]:
    """{system number: {functional: {phase: (n_atoms, energy in eV)}}} from the VASP table."""
    table: dict[str, dict[str, dict[str, tuple[int, float]]]] = {}
    for line, row in read_table(path):
        phase = {"solid": "solid", "gas": "molecule"}.get(row["phase"])
        if phase is None:
            raise OmniBenchError(f"{path}:{line}: field 'phase' is {row['phase']!r}, expected solid or gas")
        per_phase = table.setdefault(row["system"][:2], {}).setdefault(row["functional"], {})
        # energy(sigma->0) is the total energy; for these insulators it equals TOTEN.
        per_phase[phase] = (int(row["n_atoms"]), float(row["energy_sigma0_eV"]))
    return table


def attach_dft_energies(solid: Atoms, molecule: Atoms, table: dict, number: str, where: str) -> None:
    if number not in table:
        raise OmniBenchError(f"{where}: system {number} has no entry in {DFT_TABLE}")
    for functional, phases in table[number].items():
        for role, atoms in (("solid", solid), ("molecule", molecule)):
            if role not in phases:
                raise OmniBenchError(f"{DFT_TABLE}: system {number} {functional} lacks the {role} energy")
            n_atoms, energy = phases[role]
            if n_atoms != len(atoms):
                raise OmniBenchError(f"{DFT_TABLE}: system {number} {role} has {n_atoms} atoms, "
                                     f"but {where} names a structure with {len(atoms)}")
            atoms.info[f"ref_energy:{functional}"] = energy
