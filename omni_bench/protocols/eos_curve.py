"""Equation of state on given cells: energies of the item's strained structures, fitted with ase.eos.

Unlike ``eos``, which builds its own volume grid around one cell, this protocol takes the cells from the
item (roles ``V0``, ``V1``... by increasing volume), so the model sees exactly the volumes the reference
calculation used. With ``relax_positions`` the atoms are relaxed at fixed cell before the energy is taken
(relaxed-ion bulk modulus, what DFT equations of state of molecular frameworks report); without it each
cell is a single point (clamped-ion), which for a MOF can be several times stiffer.

Relaxations walk outwards from the cell of the lowest reference energy (the anchor), each cell starting from
its inner neighbour's relaxed fractional positions. The two cells at the same distance from the anchor do not
depend on each other, so they relax side by side (models/lockstep.py): for models with a batched force path,
one force call per optimiser step serves both; for the others each cell's ASE optimiser runs on the model's
calculator, step for step as ``Optimizer.run`` would.

``compute`` only stores the energies; ``derive`` fits them, so one failed fit (no minimum inside the
sampled range) loses the bulk modulus but keeps the energy curve. Scored quantities:

- ``bulk_modulus``: B0 of the fit (fitted to total energies in eV, as MOFSimBench fits its DFT curves);
- ``relative_energy``: E(V) - E(V*) per atom at every volume but V*, the volume of the item's lowest
  reference energy (``meta['reference_index']``); references come from ``meta['relative_energy']``.
"""

from __future__ import annotations

import re

import numpy as np
from ase import Atoms
from ase.eos import EquationOfState

from ..items import Item, Prediction
from ..models.lockstep import OPTIMIZERS, relax_together
from ..store import StoredItem

PARAMS = {"eos": "birchmurnaghan", "relax_positions": False, "optimizer": "LBFGS", "fmax": 0.001,
          "max_steps": 1000, "warm_start": True, "require_minimum_inside": True}
#: A model without forces (the tabulated reference energies, which are already relaxed) gets single points.
NO_FORCES_NOTE = "eos_curve: the model gives no forces, so the cells were not relaxed (single points)"
#: scored quantities; ``compute`` stores the raw curve as ``energy:V0``, ``energy:V1``... in eV
QUANTITIES = {"bulk_modulus": "eV/A^3", "relative_energy": "eV/atom"}
_ROLE = re.compile(r"^V(\d+)$")


def single_points(item: Item, params: dict) -> list[Atoms]:
    """The cells ``compute`` takes single points of; none when it relaxes positions (the runner batches
    single points for models that can)."""
    return [] if params["relax_positions"] else [item.structures[role] for role in _roles(item)]


def compute(item: Item, model, params: dict) -> dict[str, float]:
    relax = params["relax_positions"] and _has_forces(model)
    if params["relax_positions"] and not relax:
        model.notes.add(NO_FORCES_NOTE)
    roles = _roles(item)
    if not relax:
        return {f"energy:{role}": model.energy(item.structures[role]) for role in roles}
    # Relax the anchor cell first, then walk outwards, each cell starting from its neighbour's relaxed
    # fractional positions: the model's own internal relaxation is shared by all volumes, so later cells
    # need few steps, and every point stays on the same branch of minima (a smooth curve).
    if params["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"protocol.params.optimizer: {params['optimizer']!r}; allowed: {', '.join(OPTIMIZERS)}")
    anchor = int(item.meta.get("reference_index", len(roles) // 2))
    relaxed: dict[int, object] = {}
    values = {}
    for distance in range(len(roles)):
        ring = [i for i in sorted({anchor - distance, anchor + distance}) if 0 <= i < len(roles)]
        if not ring:
            break
        starts = []
        for index in ring:
            start = item.structures[roles[index]]
            if params["warm_start"] and index != anchor:
                start = _rescaled(relaxed[index + 1 if index < anchor else index - 1], start)
            starts.append(start)
        results = relax_together(model, starts, params["optimizer"], params["fmax"], params["max_steps"])
        if not all(r.converged for r in results):
            raise RuntimeError(f"fixed-cell relaxation did not reach fmax={params['fmax']} eV/A "
                               f"in {params['max_steps']} steps")
        for index, result in zip(ring, results, strict=True):
            relaxed[index], values[f"energy:{roles[index]}"] = result.atoms, result.energy
    return values


def derive(items: list[Item], results: dict[str, StoredItem], params: dict) -> list[Prediction]:
    predictions = []
    for item in items:
        roles = _roles(item)
        energies, error = _energies(item, roles, results.get(item.id))
        bulk_modulus, fit_error = None, None
        if error is None:
            volumes = [item.structures[r].get_volume() for r in roles]
            bulk_modulus, fit_error = _fit(volumes, energies, params)
        if "bulk_modulus" in item.reference:
            predictions.append(Prediction(item.id, "bulk_modulus", bulk_modulus, item.reference["bulk_modulus"],
                                          item.groups, error or fit_error))
        predictions.extend(_relative_energies(item, roles, energies, error))
    return predictions


def _roles(item: Item) -> list[str]:
    roles = sorted((int(m.group(1)), role) for role in item.structures if (m := _ROLE.match(role)))
    if len(roles) < 4:
        raise ValueError(f"item {item.id} needs at least 4 strained structures V0, V1, ... (has {len(roles)})")
    return [role for _, role in roles]


def _has_forces(model) -> bool:
    return "forces" in getattr(model.calc, "implemented_properties", ())


def _rescaled(relaxed, target):
    """``target`` (its cell, numbers and info) with the fractional positions of ``relaxed``."""
    start = target.copy()
    start.set_scaled_positions(relaxed.get_scaled_positions(wrap=False))
    return start


def _energies(item: Item, roles: list[str], stored: StoredItem | None) -> tuple[list[float], str | None]:
    if stored is None:
        return [], "not computed"
    if stored.status != "ok":
        return [], stored.error or "failed"
    missing = [r for r in roles if f"energy:{r}" not in stored.values]
    if missing:
        return [], f"no stored energy for {', '.join(missing)}"
    return [stored.values[f"energy:{r}"] for r in roles], None


def _fit(volumes: list[float], energies: list[float], params: dict) -> tuple[float | None, str | None]:
    try:
        eos = EquationOfState(volumes, energies, eos=params["eos"])
        v0, _, b0 = eos.fit(warn=False)
    except (RuntimeError, ValueError) as exc:  # curve_fit gives up, or the data have no curvature
        return None, f"EOS fit failed: {exc}"
    if not np.isfinite(b0) or not np.isfinite(v0):
        return None, "EOS fit returned a non-finite bulk modulus or volume"
    if b0 <= 0:  # the fitted curve has a maximum, not a minimum (e.g. a cell that relaxed to another branch)
        return None, f"EOS fit gives a bulk modulus of {b0:.3g} eV/A^3: the E(V) points have no minimum"
    if params["require_minimum_inside"] and not min(volumes) <= v0 <= max(volumes):
        return None, (f"E(V) minimum at {v0:.1f} A^3 lies outside the sampled volumes "
                      f"{min(volumes):.1f}-{max(volumes):.1f} A^3; B0 would be an extrapolation")
    return float(b0), None


def _relative_energies(item: Item, roles: list[str], energies: list[float], error: str | None) -> list[Prediction]:
    references = item.meta.get("relative_energy")
    if not references:
        return []
    anchor = item.meta["reference_index"]
    ratios = item.meta.get("volume_ratios") or [float(i) for i in range(len(roles))]
    n_atoms = len(item.structures[roles[anchor]])
    out = []
    for index, reference in enumerate(references):
        if index == anchor:
            continue
        value = None if error else (energies[index] - energies[anchor]) / n_atoms
        side = "compressed" if index < anchor else "expanded"
        out.append(Prediction(f"{item.id}@{ratios[index]:.3f}", "relative_energy", value, reference,
                              {**item.groups, "side": side}, error))
    return out
