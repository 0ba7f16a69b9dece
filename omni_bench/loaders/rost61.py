"""ROST61: 61 reactions of open-shell transition-metal complexes (Maurer et al., JCTC 17, 6134 (2021)).

Items are the 150 molecules ``m1``..``m150`` of ``rost61_molecules.extxyz`` (Angstrom) with their charge
(-2..+2) and spin multiplicity (number of unpaired electrons + 1) in ``Atoms.info``; the reactions of
``reactions.csv`` (``coef*mN`` terms, reactants negative, E_rxn = sum(coef * E), kcal/mol) travel in
``Item.meta`` for the ``reaction_energy`` protocol.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ase.io import read

from ..errors import OmniBenchError
from ..items import Item
from ..protocols.reaction_energy import Reaction, add_molecule, molecule_items, reference_value

PARAMS = {"structures": "ROST61/rost61_molecules.extxyz", "reactions": "ROST61/reactions.csv"}


def load(files: dict[str, Path], params: dict) -> list[Item]:
    params = {**PARAMS, **params}
    for key in ("structures", "reactions"):
        if params[key] not in files:
            raise OmniBenchError(f"dataset.params.{key}: {params[key]} is not among the task's dataset.files")
    molecules: dict = {}
    for n, atoms in enumerate(read(files[params["structures"]], index=":", format="extxyz"), start=1):
        name = str(atoms.info.get("name"))
        try:
            charge, n_unpaired = int(atoms.info["charge"]), int(atoms.info["n_unpaired"])
        except (KeyError, TypeError, ValueError):
            raise OmniBenchError(f"{params['structures']}: molecule {name} lacks integer 'charge' and "
                                 f"'n_unpaired'") from None
        multiplicity = n_unpaired + 1
        if "spin_multiplicity" in atoms.info and int(atoms.info["spin_multiplicity"]) != multiplicity:
            raise OmniBenchError(f"{params['structures']}: molecule {name} has spin_multiplicity "
                                 f"{atoms.info['spin_multiplicity']} but n_unpaired {n_unpaired}")
        if (sum(atoms.numbers) - charge - n_unpaired) % 2:
            raise OmniBenchError(f"{params['structures']}: molecule {name}: {n_unpaired} unpaired electrons "
                                 f"are impossible with charge {charge:+d}")
        atoms.info = {"name": name, "charge": charge, "spin": multiplicity}
        add_molecule(molecules, name, atoms, f"{params['structures']}: structure {n}")
    reactions = []
    with open(files[params["reactions"]], newline="", encoding="utf-8") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            where = f"{params['reactions']} row {line} (reaction {row.get('reaction_id')})"
            try:
                stoichiometry: dict[str, float] = {}
                for term in (row["stoichiometry"] or "").split():
                    coefficient, name = term.split("*")
                    stoichiometry[name] = stoichiometry.get(name, 0.0) + float(coefficient)
                reaction_id = f"ROST61_{int(row['reaction_id']):02d}"
            except (KeyError, TypeError, ValueError):
                raise OmniBenchError(f"{where}: 'reaction_id' must be an integer and 'stoichiometry' "
                                     f"coef*NAME terms") from None
            if not stoichiometry:
                raise OmniBenchError(f"{where}: field 'stoichiometry' is empty")
            reference = reference_value(row, "ref_energy_kcal_mol", "kcal/mol", where)
            reactions.append(Reaction(reaction_id, stoichiometry, reference, where=where))
    return molecule_items(molecules, reactions, params["reactions"])
