"""Reaction energies from molecule energies: each molecule is one item, computed once, however many reactions
it takes part in; ``derive`` combines them as E_rxn = sum(coefficient * E(species)), reactants negative.

Loaders build their items with ``items.reactions.molecule_items``, which attaches to each molecule the
reactions it takes part in (``Item.meta['reactions']``) and orders molecules by the first reaction that needs
them; ``--limit N`` runs the molecules of the first N reactions (``scored_units``). A reaction with a molecule
that failed or was not computed is a failed entry that names the molecules.
"""

from __future__ import annotations

from ase import Atoms

from ..items import Item, Prediction
from ..items.reactions import REACTIONS, Reaction
from ..store import StoredItem

PARAMS: dict = {}
QUANTITIES = {"energy": "eV", "reaction_energy": "eV"}


def single_points(item: Item, params: dict) -> list[Atoms]:
    """The structures ``compute`` takes single points of (the runner batches them for models that can)."""
    return [item.structures["molecule"]]


def compute(item: Item, model, params: dict) -> dict[str, float]:
    return {"energy": model.energy(item.structures["molecule"])}


def scored_units(items: list[Item]) -> list[list[str]]:
    """Each reaction needs its species (the items are the molecules)."""
    reactions = {r.id: r for item in items for r in item.meta.get(REACTIONS, ())}
    return [list(reactions[key].stoichiometry) for key in sorted(reactions)]


def derive(items: list[Item], results: dict[str, StoredItem], params: dict) -> list[Prediction]:
    """The reactions whose species are all among ``items`` (a --limit run holds only its reactions' species)."""
    present = {item.id for item in items}
    reactions: dict[str, Reaction] = {}
    for item in items:
        for reaction in item.meta.get(REACTIONS, ()):
            if present.issuperset(reaction.stoichiometry):
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
