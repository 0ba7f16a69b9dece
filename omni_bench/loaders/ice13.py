"""DMC-ICE13: 13 ice polymorphs (Della Pia et al. 2022) with energies relative to ice Ih.

Files: ``DMC_ICE13/poscars/ice_<phase>.vasp`` for every phase and
``DMC_ICE13/dmc_ice13_published_dft_absolute_energies.csv`` (rows = methods, DMC and 51 DFT variants;
columns = phases; absolute lattice energies in kJ/mol per H2O, all on the same fixed geometries).

The scored reference is the row ``params.reference`` (DMC, or e.g. R2SCAN) minus its ``relative_to``
(Ih) column. Every structure also carries each method's lattice energy of the whole cell as
``atoms.info['ref_energy:<method>']`` (eV: value per H2O x number of H2O). That is a lattice energy, not
a total energy, but differences per H2O between polymorphs are the same, so the tabulated model
reproduces each method's relative energies. The reference polymorph is the first item, so that a
``--limit`` slice still contains it; it is computed but not scored.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from ase.io import read

from .. import units
from ..errors import OmniBenchError, did_you_mean
from ..items import Item, Quantity
from .x23 import find_file

PARAMS = {"reference": "DMC", "relative_to": "Ih"}

TABLE = "dmc_ice13_published_dft_absolute_energies.csv"
TABLE_UNIT = "kJ/mol/H2O"


def load(files: dict[str, Path], params: dict) -> list[Item]:
    table_rel, table_path = find_file(files, TABLE)
    poscar_dir = Path(table_rel).parent / "poscars"
    energies = read_table(table_path)
    reference, base = params.get("reference", "DMC"), params.get("relative_to", "Ih")
    if reference not in energies:
        raise OmniBenchError(f"dataset.params.reference: {reference!r} is not a row of {TABLE}"
                             f"{did_you_mean(reference, energies)}; known: {', '.join(energies)}")
    phases = list(energies[reference])
    if base not in phases:
        raise OmniBenchError(f"dataset.params.relative_to: {base!r} is not a phase of {TABLE}"
                             f"{did_you_mean(base, phases)}; known: {', '.join(phases)}")

    items = []
    for phase in [base] + [p for p in phases if p != base]:
        rel = (poscar_dir / f"ice_{phase}.vasp").as_posix()
        if rel not in files:
            raise OmniBenchError(f"dataset.files must list {rel} (phase {phase} of {TABLE})")
        crystal = read(files[rel], format="vasp")
        n_water = count_water(crystal, rel)
        crystal.info.update({"charge": 0, "spin": 1})
        for method, row in energies.items():
            per_water = units.convert(row[phase], TABLE_UNIT, "eV/H2O")
            crystal.info[f"ref_energy:{method}"] = per_water * n_water
        reference_values = {}
        if phase != base:
            relative = energies[reference][phase] - energies[reference][base]
            reference_values["relative_energy"] = Quantity(relative, TABLE_UNIT)
        items.append(Item(id=phase, structures={"crystal": crystal}, reference=reference_values,
                          meta={"n_formula_units": n_water, "relative_to": base}))
    return items


def count_water(crystal, where: str) -> int:
    counts = Counter(crystal.get_chemical_symbols())
    if set(counts) != {"H", "O"} or counts["H"] != 2 * counts["O"]:
        raise OmniBenchError(f"{where}: expected (H2O)n, got {crystal.get_chemical_formula()}")
    return counts["O"]


def read_table(path: Path) -> dict[str, dict[str, float]]:
    """{method: {phase: lattice energy in kJ/mol per H2O}}, phases in the file's column order."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        phases = [c for c in reader.fieldnames or [] if c != "method"]
        table = {}
        for line, row in enumerate(reader, start=2):
            try:
                table[row["method"]] = {p: float(row[p]) for p in phases}
            except (TypeError, ValueError):
                raise OmniBenchError(
                    f"{path}:{line}: a lattice energy of {row.get('method')!r} is not a number") from None
    return table
