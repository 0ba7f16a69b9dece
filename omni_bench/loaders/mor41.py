"""MOR41: 41 closed-shell reactions of transition-metal complexes (Dohm et al., JCTC 14, 2596 (2018)).

Items are the 95 molecules listed as ``<structures>/<name>/coord`` (TURBOMOLE coord files as upstream stores
them, read into Angstrom; all neutral singlets); the reactions of the ``reactions`` table (shipped beside the
task file: ``n*NAME`` terms joined by `` + ``, E_rxn = products - reactants, kcal/mol) travel in ``Item.meta``
for the ``reaction_energy`` protocol. ``species_aliases`` maps a name used in the reactions to the molecule's
name in the structures: reaction 41 lists ``ED41``, whose structure is ``EDPR41``.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import OmniBenchError
from ..items import Item
from ..items.reactions import Reaction, molecule_items, reference_value
from . import reaction_rows
from ._turbomole import listed_molecules, read_coord

PARAMS = {
    "structures": "MOR41/geometries",
    "reactions": "mor41-reactions.csv",
    "species_aliases": {"ED41": "EDPR41"},
}


def load(files: dict[str, Path], params: dict) -> list[Item]:
    params = {**PARAMS, **params}
    molecules: dict = {}
    for name, path in listed_molecules(files, params["structures"], "mor41").items():
        atoms = read_coord(path)
        atoms.info = {"name": name, "charge": 0, "spin": 1}
        molecules[name] = atoms  # one folder per molecule: a name cannot come twice
    aliases = params["species_aliases"] or {}
    reactions = []
    for where, row in reaction_rows(files, params["reactions"]):
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
