"""MOR41: 41 closed-shell reactions of transition-metal complexes (Dohm et al., JCTC 14, 2596 (2018)).

Items are the 95 molecules of ``mor41_molecules.extxyz`` (Angstrom; all neutral singlets); the reactions of
``reactions.csv`` (``n*NAME`` terms joined by `` + ``, E_rxn = products - reactants, kcal/mol) travel in
``Item.meta`` for the ``reaction_energy`` protocol. ``species_aliases`` maps a name used in the reactions to
the molecule's name in the structures file: reaction 41 lists ``ED41``, whose structure is ``EDPR41``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ase.io import read

from ..errors import OmniBenchError
from ..items import Item
from ..protocols.reaction_energy import Reaction, add_molecule, molecule_items, reference_value

PARAMS = {
    "structures": "MOR41/mor41_molecules.extxyz",
    "reactions": "MOR41/reactions.csv",
    "species_aliases": {"ED41": "EDPR41"},
}


def load(files: dict[str, Path], params: dict) -> list[Item]:
    params = {**PARAMS, **params}
    structures, table = _file(files, params, "structures"), _file(files, params, "reactions")
    molecules: dict = {}
    for n, atoms in enumerate(read(structures, index=":", format="extxyz"), start=1):
        name = str(atoms.info["name"])
        atoms.info = {"name": name, "charge": int(atoms.info.get("charge", 0)),
                      "spin": int(atoms.info.get("spin_multiplicity", 1))}
        add_molecule(molecules, name, atoms, f"{params['structures']}: structure {n}")
    aliases = params["species_aliases"] or {}
    reactions = []
    with open(table, newline="", encoding="utf-8") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            where = f"{params['reactions']} row {line} (reaction {row.get('reaction_id')})"
            stoichiometry: dict[str, float] = {}
            for side, sign in (("reactants", -1.0), ("products", 1.0)):
                for name, coefficient in _terms(row.get(side) or "", where):
                    name = aliases.get(name, name)
                    stoichiometry[name] = stoichiometry.get(name, 0.0) + sign * coefficient
            reference = reference_value(row, "ref_energy_kcal_mol", "kcal/mol", where)
            reactions.append(Reaction(row["reaction_id"], stoichiometry, reference,
                                      {"reaction_type": row.get("reaction_type", "")}, where))
    return molecule_items(molecules, reactions, params["reactions"])


def _terms(side: str, where: str) -> list[tuple[str, float]]:
    """``'1*ED01 + 2*CO'`` -> [('ED01', 1.0), ('CO', 2.0)]."""
    terms = []
    for term in side.split("+"):
        coefficient, star, name = term.strip().partition("*")
        try:
            value = float(coefficient)
        except ValueError:
            value = None
        if not star or not name.strip() or value is None:
            raise OmniBenchError(f"{where}: term {term.strip()!r} is not COEFFICIENT*NAME")
        terms.append((name.strip(), value))
    return terms


def _file(files: dict[str, Path], params: dict, key: str) -> Path:
    if params[key] not in files:
        raise OmniBenchError(f"dataset.params.{key}: {params[key]} is not among the task's dataset.files")
    return files[params[key]]
