"""Reaction energies from molecule energies: each molecule is one item, computed once, however many reactions
it takes part in; ``derive`` combines them as E_rxn = sum(coefficient * E(species)), reactants negative.

Loaders build their items with ``molecule_items``, which attaches to each molecule the reactions it takes part
in (``Item.meta['reactions']``) and orders molecules by the first reaction that needs them, so that the first
N items (``--limit N``) complete the first reactions. A reaction with a molecule that failed or was not
computed is a failed entry that names the molecules.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from ase import Atoms

from ..errors import OmniBenchError
from ..items import Item, Prediction, Quantity
from ..store import StoredItem

PARAMS: dict = {}
QUANTITIES = {"energy": "eV", "reaction_energy": "eV"}
REACTIONS = "reactions"


@dataclass(frozen=True)
class Reaction:
    """One reaction: ``stoichiometry`` maps species to signed coefficients (reactants negative)."""

    id: str
    stoichiometry: dict[str, float]
    reference: Quantity  # ids sort in the order of the source file (zero-padded numbers)
    groups: dict[str, str] = field(default_factory=dict)
    #: where it was read, for errors: ``reactions.csv row 12``
    where: str = ""


def reference_value(row: dict, key: str, unit: str, where: str) -> Quantity:
    """A reaction table's reference energy: a finite number, or an error naming the file, the row and the field."""
    try:
        value = float(row[key])
    except (KeyError, TypeError, ValueError):
        raise OmniBenchError(f"{where}: field {key!r} is not a number ({row.get(key)!r})") from None
    if not math.isfinite(value):
        raise OmniBenchError(f"{where}: field {key!r} is {value}, not a reference value")
    return Quantity(value, unit)


def single_points(item: Item, params: dict) -> list[Atoms]:
    """The structures ``compute`` takes single points of (the runner batches them for models that can)."""
    return [item.structures["molecule"]]


def compute(item: Item, model, params: dict) -> dict[str, float]:
    return {"energy": model.energy(item.structures["molecule"])}


def derive(items: list[Item], results: dict[str, StoredItem], params: dict) -> list[Prediction]:
    reactions: dict[str, Reaction] = {}
    for item in items:
        for reaction in item.meta.get(REACTIONS, ()):
            reactions.setdefault(reaction.id, reaction)
    return [_predict(reactions[key], results) for key in sorted(reactions)]


def _predict(reaction: Reaction, results: dict[str, StoredItem]) -> Prediction:
    missing = [s for s in reaction.stoichiometry if s not in results]
    failed = [s for s in reaction.stoichiometry if s in results and results[s].status != "ok"]
    value, error = None, None
    if missing or failed:
        parts = []
        if missing:
            parts.append(f"not computed: {', '.join(missing)}")
        parts.extend(f"{s} failed: {results[s].error}" for s in failed)
        error = "; ".join(parts)
    else:
        value = sum(c * results[s].values["energy"] for s, c in reaction.stoichiometry.items())
    return Prediction(reaction.id, "reaction_energy", value, reaction.reference, dict(reaction.groups), error)


def molecule_items(molecules: dict[str, Atoms], reactions: list[Reaction], source: str) -> list[Item]:
    """One item per molecule (role ``molecule``), ordered by first use, each carrying its reactions.

    Raises when a reaction names an unknown molecule or does not balance atoms and charge, since either means
    the data or the loader is wrong.
    """
    if not reactions:
        raise OmniBenchError(f"{source}: no reactions: the table is empty")
    by_species: dict[str, list[Reaction]] = {}
    first: dict[str, Reaction] = {}
    for reaction in reactions:
        where = reaction.where or f"{source}: reaction {reaction.id}"
        if reaction.id in first:
            raise OmniBenchError(f"{where}: reaction id {reaction.id!r} appears twice (also "
                                 f"{first[reaction.id].where or 'earlier'}); each reaction must be listed once")
        first[reaction.id] = reaction
        if not math.isfinite(reaction.reference.value):
            raise OmniBenchError(f"{where}: reference energy is {reaction.reference.value}, not a reference value")
        unknown = [s for s in reaction.stoichiometry if s not in molecules]
        if unknown:
            raise OmniBenchError(f"{source}: reaction {reaction.id} names {', '.join(unknown)}, not among the "
                                 f"molecules")
        _check_balance(reaction, molecules, source)
        for species in reaction.stoichiometry:
            by_species.setdefault(species, []).append(reaction)
    order = list(by_species) + [name for name in molecules if name not in by_species]
    return [Item(id=name, structures={"molecule": molecules[name]}, meta={REACTIONS: by_species.get(name, [])})
            for name in order]


def _check_balance(reaction: Reaction, molecules: dict[str, Atoms], source: str) -> None:
    atoms: Counter[str] = Counter()
    charge = 0.0
    for species, coefficient in reaction.stoichiometry.items():
        for symbol, count in Counter(molecules[species].get_chemical_symbols()).items():
            atoms[symbol] += coefficient * count
        charge += coefficient * molecules[species].info.get("charge", 0)
    unbalanced = {s: n for s, n in atoms.items() if abs(n) > 1e-9}
    if unbalanced or abs(charge) > 1e-9:
        raise OmniBenchError(f"{source}: reaction {reaction.id} does not balance (atoms {unbalanced}, "
                             f"charge {charge:+g})")
