"""ROST61: 61 reactions of open-shell transition-metal complexes (Maurer et al., JCTC 17, 6134 (2021)).

Items are the 150 molecules ``m1``..``m150``, each listed as ``<structures>/mN/coord`` (TURBOMOLE coord, read
into Angstrom) beside ``.CHRG`` (charge, -2..+2) and ``.UHF`` (number of unpaired electrons), as upstream
stores them; charge and spin multiplicity (unpaired electrons + 1) go in ``Atoms.info``. The reactions of the
``reactions`` table (shipped beside the task file: ``coef*mN`` terms, reactants negative, E_rxn =
sum(coef * E), kcal/mol) travel in ``Item.meta`` for the ``reaction_energy`` protocol.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import OmniBenchError
from ..items import Item
from ..items.reactions import Reaction, molecule_items, reference_value
from . import reaction_rows
from ._turbomole import listed_molecules, read_coord

PARAMS = {"structures": "ROST61", "reactions": "rost61-reactions.csv"}


def load(files: dict[str, Path], params: dict) -> list[Item]:
    params = {**PARAMS, **params}
    molecules: dict = {}
    for name, path in listed_molecules(files, params["structures"], "rost61").items():
        atoms = read_coord(path)
        charge, n_unpaired = (_integer(files, f"{params['structures']}/{name}/{kind}") for kind in (".CHRG", ".UHF"))
        if (sum(atoms.numbers) - charge - n_unpaired) % 2:
            raise OmniBenchError(f"{params['structures']}/{name}: {n_unpaired} unpaired electrons are impossible "
                                 f"with charge {charge:+d}")
        atoms.info = {"name": name, "charge": charge, "spin": n_unpaired + 1}
        molecules[name] = atoms  # one folder per molecule: a name cannot come twice
    reactions = []
    for where, row in reaction_rows(files, params["reactions"]):
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


def _integer(files: dict[str, Path], rel: str) -> int:
    """The integer in a listed one-number file (.CHRG, .UHF)."""
    if rel not in files:
        raise OmniBenchError(f"loader rost61: dataset.files must list {rel} beside its coord file")
    try:
        return int(files[rel].read_text().split()[0])
    except (IndexError, ValueError):
        raise OmniBenchError(f"{rel}: expected one integer, found {files[rel].read_text()[:40]!r}") from None
