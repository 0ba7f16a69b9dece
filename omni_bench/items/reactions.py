"""Reactions between molecules, as loaders build them: each molecule is one item, computed once, however many
reactions it takes part in (``molecule_items``); the ``reaction_energy`` protocol combines their energies."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from ase import Atoms

from ..errors import OmniBenchError
from . import Item, Quantity

#: ``Item.meta`` key under which a molecule carries the reactions it takes part in
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
