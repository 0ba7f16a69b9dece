"""Constant-volume heat capacity from harmonic phonons, with phonopy through matcalc's ``PhononCalc``.

The crystal is relaxed (cell and atoms, FIRE to ``fmax``), phonopy displaces atoms by ``atom_disp`` in a
supercell at least ``min_length`` long in every direction, the model's forces give the force constants, and
phonopy's mesh gives Cv at ``temperature_K``. Defaults are those of matcalc's ``PhononBenchmark`` (fmax 0.05,
min_length 20 A, 0.015 A displacements), whose reference values are Alexandria's PBE phonons.

Per what: phonopy reports J/K per mole of its primitive cell; the value returned is per mole of the item's
cell (phonopy's value times the item's atom count over the primitive cell's), which for these data (primitive
cells) is the same thing, and is what the reference ``heat_capacity`` means.

Dynamical stability: phonopy leaves imaginary modes out of Cv, so a crystal the model makes dynamically
unstable would be scored on the modes that remain (7net-0's KrF2: 42 % of the mesh modes imaginary, down to
-1.69 THz). Each crystal's mesh modes (every band at each q-point of the mesh matcalc runs) below
``imaginary_threshold_THz`` are counted; with any, the item fails as ``DynamicallyUnstable`` ("dynamically
unstable: N of M mesh modes imaginary (min -x THz)"), counted as a failure and never silently scored. The
threshold, -0.1 THz, sits above the numerical noise of the acoustic branches near Gamma (finite displacements
without an imposed acoustic sum rule give them a few hundredths of a THz either side of zero); modes between
it and -0.01 THz (phonopy's own tolerance) are kept and the item is noted. 7net-0 on heat-capacity-small: 4
crystals fail (their lowest modes -0.9 to -1.7 THz), 6 are noted. The runner stores the failure as
``DynamicallyUnstable: ...``, so its reason begins with its category. The check runs where
``imaginary_threshold_THz`` is set; the task files (version 1) do not set it yet, since it changes their
numbers and every committed result would have to be computed again (7 minutes per model on a 2-core CPU for
heat-capacity-small, more for CHGNet), and phonopy's own treatment (imaginary modes left out, noted) stays.
"""

from __future__ import annotations

import logging

import numpy as np

from ..items import Item
from ._prerelax import cell_relaxation, prerelaxed

PARAMS = {"temperature_K": 300.0, "fmax": 0.05, "min_length": 20.0, "atom_disp": 0.015,
          "imaginary_threshold_THz": None}
QUANTITIES = {"heat_capacity": "J/K/mol"}
PRERELAX_MAX_STEPS = 5000  # matcalc PhononCalc's default, which the task used before relaxing went lock-step
NOISE_THZ = -0.01  # phonopy's (and matcalc's) own tolerance for calling a mode imaginary
IMAGINARY_NOTE = "phonon_heat_capacity: imaginary modes (below -0.01 THz) left out of Cv"
NEAR_ZERO_NOTE = "phonon_heat_capacity: near-zero imaginary modes (between the threshold and -0.01 THz) kept"


class DynamicallyUnstable(RuntimeError):
    """The model's phonons have imaginary modes on the mesh: the relaxed structure is not a minimum."""


def imaginary_modes(frequencies: np.ndarray, threshold_thz: float) -> None:
    """Raise ``DynamicallyUnstable`` when any mesh frequency (THz) is below ``threshold_thz``."""
    frequencies = np.asarray(frequencies, dtype=float)
    imaginary = frequencies < threshold_thz
    if np.any(imaginary):
        raise DynamicallyUnstable(
            f"dynamically unstable: {int(imaginary.sum())} of {frequencies.size} mesh modes imaginary "
            f"(min {frequencies.min():.3g} THz; threshold {threshold_thz:g} THz)")


def relaxations(item: Item, params: dict) -> list:
    """The relaxation ``compute`` starts with (the runner relaxes a task's crystals together in lock-step)."""
    return [(item.structures["crystal"], _relaxation(params))]


def _relaxation(params: dict):
    """matcalc ``PhononCalc``'s own: FIRE with the cell, at most 5000 steps, going on if it stops short."""
    return cell_relaxation(params["fmax"], PRERELAX_MAX_STEPS)


def compute(item: Item, model, params: dict) -> dict[str, float]:
    from matcalc import PhononCalc

    atoms = item.structures["crystal"]
    temperature = float(params["temperature_K"])
    calc = PhononCalc(model.calc, fmax=params["fmax"], min_length=params["min_length"],
                      atom_disp=params["atom_disp"], t_min=temperature, t_max=temperature, t_step=10,
                      write_phonon=False, relax_structure=False)
    logging.getLogger("matcalc._phonon").setLevel(logging.ERROR)  # imaginary modes become a note below
    result = calc.calc(prerelaxed(model, atoms, _relaxation(params), require_convergence=False))
    temperatures = np.asarray(result["thermal_properties"]["temperatures"], dtype=float)
    if not len(temperatures) or abs(temperatures[0] - temperature) > 1e-6:
        raise RuntimeError(f"phonopy gave thermal properties at {temperatures} K, not {temperature} K")
    frequencies = np.asarray(result["frequencies"], dtype=float)
    threshold = params["imaginary_threshold_THz"]
    if threshold is not None:
        imaginary_modes(frequencies, float(threshold))
    if np.any(frequencies < NOISE_THZ):
        model.notes.add(IMAGINARY_NOTE if threshold is None else NEAR_ZERO_NOTE)
    per_primitive = float(result["thermal_properties"]["heat_capacity"][0])
    return {"heat_capacity": per_primitive * len(atoms) / len(result["phonon"].primitive)}
