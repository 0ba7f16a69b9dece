"""Constant-volume heat capacity from harmonic phonons, with phonopy through matcalc's ``PhononCalc``.

The crystal is relaxed (cell and atoms, FIRE to ``fmax``), phonopy displaces atoms by ``atom_disp`` in a
supercell at least ``min_length`` long in every direction, the model's forces give the force constants, and
phonopy's mesh gives Cv at ``temperature_K``. Defaults are those of matcalc's ``PhononBenchmark`` (fmax 0.05,
min_length 20 A, 0.015 A displacements), whose reference values are Alexandria's PBE phonons.

Per what: phonopy reports J/K per mole of its primitive cell; the value returned is per mole of the item's
cell (phonopy's value times the item's atom count over the primitive cell's), which for these data (primitive
cells) is the same thing, and is what the reference ``heat_capacity`` means. Imaginary modes (a dynamically
unstable structure for this model) are left out of Cv by phonopy; the item is then noted.
"""

from __future__ import annotations

import logging

import numpy as np

from ..items import Item

PARAMS = {"temperature_K": 300.0, "fmax": 0.05, "min_length": 20.0, "atom_disp": 0.015}
QUANTITIES = {"heat_capacity": "J/K/mol"}
IMAGINARY_NOTE = "phonon_heat_capacity: imaginary modes (below -0.01 THz) left out of Cv"


def compute(item: Item, model, params: dict) -> dict[str, float]:
    from matcalc import PhononCalc

    atoms = item.structures["crystal"].copy()
    temperature = float(params["temperature_K"])
    calc = PhononCalc(model.calc, fmax=params["fmax"], min_length=params["min_length"],
                      atom_disp=params["atom_disp"], t_min=temperature, t_max=temperature, t_step=10,
                      write_phonon=False)
    logging.getLogger("matcalc._phonon").setLevel(logging.ERROR)  # imaginary modes become a note below
    result = calc.calc(atoms)
    temperatures = np.asarray(result["thermal_properties"]["temperatures"], dtype=float)
    if not len(temperatures) or abs(temperatures[0] - temperature) > 1e-6:
        raise RuntimeError(f"phonopy gave thermal properties at {temperatures} K, not {temperature} K")
    if np.any(np.asarray(result["frequencies"]) < calc.imaginary_freq_tol):
        model.notes.add(IMAGINARY_NOTE)
    per_primitive = float(result["thermal_properties"]["heat_capacity"][0])
    return {"heat_capacity": per_primitive * len(atoms) / len(result["phonon"].primitive)}
