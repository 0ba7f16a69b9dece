"""Relative energies and energy ranking of the crystals of one molecule (polymorphs, CSP landscapes).

Each item is one crystal of a molecule (``groups['system']``) with ``meta['n_molecules']``; ``compute`` takes a
single point on the given cell and returns the energy per molecule. Absolute energies of different molecules
(and of a model and the reference) are not comparable, so ``derive`` compares only within a molecule. For each
molecule with at least two crystals it gives:

- ``relative_energy``: every crystal but one relative to the crystal the *reference* puts lowest, for the model
  and the reference alike (that crystal is zero on both sides and not scored); id ``<system>@<crystal>``, so
  bootstrap intervals resample molecules, whose crystals share the zero;
- ``relative_energy_in_window``: the same, only for crystals whose reference relative energy is at most
  ``energy_window_kcal_mol`` (not given when that is None): the low-energy region a ranking must get right;
- ``aligned_relative_energy``: anchor-free. For the crystals in the window (every crystal when the window is
  None), the reference-lowest one included, each error is the crystal's model-minus-reference energy less the
  median of that difference over the molecule's computed crystals in the window. The median is the constant
  shift that minimises the mean absolute error, so the MAE of these entries is the landscape's MAE under its
  most favourable zero: a constant added to all of one molecule's model energies leaves it unchanged, and no
  single crystal (the reference-lowest, which the anchored form zeroes) carries its error into every other.
  The entry's reference is the crystal's reference relative energy and its value that plus the aligned error;
  id ``<system>@<crystal>`` as above. A crystal not computed is a failed entry and is left out of the median.
- ``lowest_form_agrees``: 1 when the model's lowest crystal is the reference's, else 0 (id ``<system>``);
- ``spearman``: the Spearman rank correlation of model and reference energies over the molecule's crystals
  (at least three; id ``<system>``);
- ``experimental_rank``: for each crystal with ``meta['experimental_match']``, its energy rank among the
  molecule's crystals (1 = lowest) by the model, against its rank by the reference.

The flags, correlations and ranks have no meaning with a crystal missing (it might be the lowest), so they
need every crystal of the molecule computed; otherwise they are failed entries that say which crystal failed.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from ase import Atoms
from scipy.stats import spearmanr

from .. import units
from ..items import Item, Prediction, Quantity
from ..store import StoredItem, stored_value

PARAMS = {"structure_role": "crystal", "energy_window_kcal_mol": None}
QUANTITIES = {"energy_per_molecule": "eV/molecule", "relative_energy": "eV/molecule",
              "relative_energy_in_window": "eV/molecule", "aligned_relative_energy": "eV/molecule",
              "lowest_form_agrees": "1", "spearman": "1",
              "experimental_rank": "1"}
_UNIT = QUANTITIES["energy_per_molecule"]


def single_points(item: Item, params: dict) -> list[Atoms]:
    """The structures ``compute`` takes single points of (the runner batches them for models that can)."""
    return [item.structures[params["structure_role"]]]


def compute(item: Item, model, params: dict) -> dict[str, float]:
    n_molecules = item.meta.get("n_molecules")
    if not isinstance(n_molecules, int) or n_molecules < 1:
        raise ValueError(f"item {item.id} needs meta['n_molecules'] (a positive integer), got {n_molecules!r}")
    return {"energy_per_molecule": model.energy(item.structures[params["structure_role"]]) / n_molecules}


def scored_units(items: list[Item]) -> list[list[str]]:
    """A molecule's crystals are scored together (against the crystal the reference puts lowest)."""
    systems: dict[str, list[str]] = defaultdict(list)
    for item in items:
        systems[item.groups["system"]].append(item.id)
    return [members for members in systems.values() if len(members) >= 2]


def derive(items: list[Item], results: dict[str, StoredItem], params: dict) -> list[Prediction]:
    systems: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        systems[item.groups["system"]].append(item)
    predictions = []
    for system, members in systems.items():
        if len(members) >= 2:
            predictions += _system(system, members, results, params)
    return predictions


def _system(system: str, members: list[Item], results: dict[str, StoredItem], params: dict) -> list[Prediction]:
    groups = {"system": system}
    reference = np.array([units.convert(*m.reference["energy_per_molecule"], _UNIT) for m in members])
    model, errors = zip(*(stored_value(results, m.id, "energy_per_molecule") for m in members), strict=True)
    anchor = int(np.argmin(reference))
    window = params["energy_window_kcal_mol"]
    window_ev = None if window is None else units.convert(window, "kcal/mol", "eV")
    out = []
    for index, member in enumerate(members):
        if index == anchor:
            continue
        value, error = None, errors[index]
        if error is None and errors[anchor] is not None:
            error = f"lowest reference crystal {members[anchor].id}: {errors[anchor]}"
        elif error is None:
            value = model[index] - model[anchor]
        ref = Quantity(float(reference[index] - reference[anchor]), _UNIT)
        quantities = ["relative_energy"]
        if window_ev is not None and ref.value <= window_ev:
            quantities.append("relative_energy_in_window")
        out += [Prediction(f"{system}@{member.id}", q, value, ref, groups, error) for q in quantities]
    out += _aligned(system, members, reference, model, errors, anchor, window_ev)

    failed = [(m.id, e) for m, e in zip(members, errors, strict=True) if e is not None]
    error = None if not failed else (f"{len(failed)} of {len(members)} crystals not computed, e.g. {failed[0][0]}: "
                                     f"{failed[0][1]}")
    energies = None if failed else np.array(model)
    out.append(Prediction(system, "lowest_form_agrees",
                          None if failed else float(np.argmin(energies) == anchor), None, groups, error))
    if len(members) >= 3:
        rho, rho_error = None if failed else float(spearmanr(energies, reference).statistic), error
        if rho is not None and not np.isfinite(rho):  # constant model energies: no ranking at all
            rho, rho_error = None, "Spearman correlation undefined: the model gives every crystal the same energy"
        out.append(Prediction(system, "spearman", rho, None, groups, rho_error))
    for index, member in enumerate(members):
        match = member.meta.get("experimental_match")
        if match:
            rank = None if failed else float(1 + np.sum(energies < energies[index]))
            ref_rank = float(1 + np.sum(reference < reference[index]))
            out.append(Prediction(f"{system}@{match}", "experimental_rank", rank, Quantity(ref_rank, "1"),
                                  groups, error))
    return out



def _aligned(system: str, members: list[Item], reference: np.ndarray, model: tuple, errors: tuple, anchor: int,
             window_ev: float | None) -> list[Prediction]:
    """``aligned_relative_energy`` of the molecule's crystals in the window: errors less their median."""
    relative = reference - reference[anchor]
    scored = [i for i in range(len(members)) if window_ev is None or relative[i] <= window_ev]
    computed = [i for i in scored if errors[i] is None]
    shift = float(np.median([model[i] - reference[i] for i in computed])) if computed else None
    out = []
    for i in scored:
        value = None if errors[i] is not None else float(relative[i] + (model[i] - reference[i]) - shift)
        out.append(Prediction(f"{system}@{members[i].id}", "aligned_relative_energy", value,
                              Quantity(float(relative[i]), _UNIT), {"system": system}, errors[i]))
    return out
