"""Bulk modulus of a framework as MOFSimBench computes it for a model, step by step.

MOFSimBench (AI4ChemS/mofsim-bench @ b9e16b9c, mof_benchmark/experiments/scripts/bulk_modulus/bulk_modulus.py
with the settings of bulk_modulus.yaml there) does, for each framework and model:

1. relax atoms and cell together with the model: ``LBFGS`` on ``ase.filters.FrechetCellFilter``, to fmax
   0.001 eV/A in at most 1000 steps (its ``opt`` stage);
2. scale that relaxed cell isotropically (atoms scaled with it) to 11 volumes evenly spaced within +-4 % of
   its volume: cell factors ``linspace(1 - 0.04, 1 + 0.04, 11) ** (1/3)``;
3. relax the atoms of each scaled cell at fixed cell with ``FIRE`` to fmax 0.001 eV/A in at most 1000 steps,
   each from the scaled relaxed structure (no warm start from a neighbouring volume);
4. fit ``ase.eos.EquationOfState(volumes, energies, eos="birchmurnaghan")`` and report B0;

and runs every model that was not trained on dispersion-corrected data with DFT-D3(BJ, PBE) added
(calculators.yaml there: ``with_d3: true``; torch-dftd, cutoff 40 Bohr).

Here step 3 runs the 11 cells side by side (``models/lockstep.relax_together``): each cell keeps its own ASE
FIRE, stepped as ``Optimizer.run`` steps it, so the minima are those of 11 separate runs. A fixed-cell
relaxation that does not reach its fmax in its steps is fitted as it stands, as MOFSimBench fits it, and
counted: the framework's ``not_converged`` flag is 1 (its fraction is a metric) and ``unconverged_volumes``
says how many of the 11. Two things are failures here, named so the leaderboard counts them: a cell
relaxation (step 1) that does not converge (``NotConverged``: there is no relaxed cell to scale), and a
fitted minimum outside the sampled volumes (``require_minimum_inside``; around the model's own relaxed cell
it means the relaxations left the branch of that cell, and B0 would be an extrapolation).

D3 (``d3``): ``auto`` adds the project's DFT-D3(BJ) (``models/factories.dftd3_bj``, the card's
``d3_functional``) to a model whose card says ``trained_with_dispersion: false``, unless the run already
asked for ``+d3``; ``never`` runs the model alone. A model trained without dispersion whose card names no D3
functional runs alone, and the item is noted.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
from ase import Atoms
from ase.eos import EquationOfState
from ase.filters import FrechetCellFilter
from ase.optimize import LBFGS

from ..items import Item, Prediction, Quantity
from ..models.factories import dftd3_bj
from ..models.lockstep import relax_together
from ..store import StoredItem

PARAMS = {"cell_fmax": 0.001, "cell_max_steps": 1000, "fmax": 0.001, "max_steps": 1000, "volume_range": 0.04,
          "n_volumes": 11, "eos": "birchmurnaghan", "require_minimum_inside": True, "d3": "auto"}
#: scored quantity; ``compute`` also stores the relaxed volume and each point as ``volume:P00``/``energy:P00``
QUANTITIES = {"bulk_modulus": "eV/A^3", "not_converged": "1"}
D3_CHOICES = ("auto", "never")
D3_ADDED_NOTE = ("mof_bulk_modulus: DFT-D3(BJ) added to a model trained without dispersion, as MOFSimBench "
                 "runs such models")
NO_D3_NOTE = ("mof_bulk_modulus: the model was trained without dispersion but its card names no D3 functional; "
              "it ran without D3")


class NotConverged(RuntimeError):
    """A relaxation of this protocol did not reach its fmax within its step limit."""


def compute(item: Item, model, params: dict) -> dict[str, float]:
    if params["d3"] not in D3_CHOICES:
        raise ValueError(f"protocol.params.d3: {params['d3']!r}; allowed: {', '.join(D3_CHOICES)}")
    effective_model = with_dispersion(model) if params["d3"] == "auto" else model
    relaxed = relax_cell(effective_model, starting_structure(item), params["cell_fmax"], params["cell_max_steps"])
    cells = scaled_cells(relaxed, params["volume_range"], params["n_volumes"])
    results = relax_together(effective_model, cells, optimizer="FIRE", fmax=params["fmax"],
                             max_steps=params["max_steps"])
    values = {"relaxed_volume": relaxed.get_volume(),
              "unconverged_volumes": float(sum(not result.converged for result in results))}
    for index, result in enumerate(results):
        values[f"volume:P{index:02d}"] = float(result.atoms.get_volume())
        values[f"energy:P{index:02d}"] = result.energy
    return values


def derive(items: list[Item], results: dict[str, StoredItem], params: dict) -> list[Prediction]:
    predictions = []
    for item in items:
        stored = results.get(item.id)
        bulk_modulus, error = None, "not computed"
        if stored is not None and stored.status != "ok":
            error = stored.error or "failed"
        elif stored is not None:
            bulk_modulus, error = fit_bulk_modulus(*_curve(stored.values), params)
        predictions.append(Prediction(item.id, "bulk_modulus", bulk_modulus, item.reference["bulk_modulus"],
                                      item.groups, error))
        flag, flag_error = None, error
        if stored is not None and stored.status == "ok":
            flag, flag_error = float(stored.values["unconverged_volumes"] > 0), None
        predictions.append(Prediction(item.id, "not_converged", flag, Quantity(0.0, "1"), item.groups, flag_error))
    return predictions


def starting_structure(item: Item) -> Atoms:
    """The DFT-optimised cell: the middle of the item's volumes (``V0``..``Vn``, strains symmetric about 1)."""
    roles = sorted((role for role in item.structures if role[:1] == "V" and role[1:].isdigit()),
                   key=lambda role: int(role[1:]))
    return item.structures[roles[len(roles) // 2]]


def relax_cell(model, structure: Atoms, fmax: float, max_steps: int) -> Atoms:
    """MOFSimBench's ``opt`` stage: LBFGS on FrechetCellFilter (atoms and cell) to ``fmax``."""
    atoms = model.attach(structure)
    optimizer = LBFGS(FrechetCellFilter(atoms), logfile=None)
    with warnings.catch_warnings():  # scipy's logm, on every step of the filter, about errors near 1e-13
        warnings.filterwarnings("ignore", message="logm result may be inaccurate")
        converged = optimizer.run(fmax=fmax, steps=max_steps)
    if not converged:
        raise NotConverged(f"cell relaxation (LBFGS, FrechetCellFilter) did not converge to fmax {fmax} eV/A "
                           f"in {max_steps} steps")
    return atoms


def scaled_cells(relaxed: Atoms, volume_range: float, n_volumes: int) -> list[Atoms]:
    """The relaxed structure scaled isotropically, atoms with the cell, to volumes
    ``linspace(1 - volume_range, 1 + volume_range, n_volumes)`` times its own."""
    cells = []
    for factor in np.linspace(1 - volume_range, 1 + volume_range, n_volumes) ** (1 / 3):
        atoms = Atoms(numbers=relaxed.numbers, positions=relaxed.positions, cell=relaxed.cell, pbc=relaxed.pbc,
                      info=dict(relaxed.info))
        atoms.set_cell(relaxed.cell * factor, scale_atoms=True)
        cells.append(atoms)
    return cells


def fit_bulk_modulus(volumes: list[float], energies: list[float], params: dict) -> tuple[float | None, str | None]:
    """(B0 in eV/A^3, None), or (None, why not) for a fit that fails, has no minimum, or (with
    ``require_minimum_inside``) puts the minimum outside the sampled volumes."""
    if not volumes:
        return None, "no stored E(V) points"
    try:
        v0, _, b0 = EquationOfState(volumes, energies, eos=params["eos"]).fit(warn=False)
    except (RuntimeError, ValueError) as exc:
        return None, f"EOS fit failed: {exc}"
    if not (np.isfinite(b0) and np.isfinite(v0)) or b0 <= 0:
        return None, f"EOS fit gives no minimum (B0 {b0:.3g} eV/A^3, V0 {v0:.4g} A^3)"
    if params["require_minimum_inside"] and not min(volumes) <= v0 <= max(volumes):
        return None, (f"E(V) minimum at {v0:.1f} A^3 lies outside the sampled volumes "
                      f"{min(volumes):.1f}-{max(volumes):.1f} A^3; B0 would be an extrapolation")
    return float(b0), None


def with_dispersion(model):
    """``model`` with DFT-D3(BJ) added when its card says it was trained without dispersion and the run did not
    add D3 already: a shallow copy whose ``calc`` and ``d3_calc`` are what ``LoadedModel`` builds for a ``+d3``
    variant, so its ASE path and its batched path (``energies_forces``) both add D3 per structure."""
    card, variant = model.variant.card, model.variant
    if card.trained_with_dispersion or getattr(model, "d3_calc", None) is not None:
        return model
    functional = card.channel_info(variant.channel).d3_functional
    if not functional:
        model.notes.add(NO_D3_NOTE)
        return model
    from ase.calculators.mixing import SumCalculator

    dispersed = copy.copy(model)
    dispersed.d3_calc = dftd3_bj(functional)
    dispersed.calc = SumCalculator([model.calc, dispersed.d3_calc])
    model.notes.add(D3_ADDED_NOTE)
    return dispersed


def _curve(values: dict[str, float]) -> tuple[list[float], list[float]]:
    points = sorted(key.split(":", 1)[1] for key in values if key.startswith("volume:"))
    return [values[f"volume:{p}"] for p in points], [values[f"energy:{p}"] for p in points]
