"""Elastic moduli from strained cells with matcalc's ``ElasticityCalc`` (pymatgen's strain-stress fit).

The crystal is relaxed (cell and atoms, FIRE to ``fmax``), then strained by the normal and shear strains
pymatgen's ``DeformedStructureSet`` makes of ``norm_strains`` and ``shear_strains`` (6 x 4 = 24 cells by
default), and the elastic tensor is the linear fit of the model's stresses; the bulk and shear moduli are its
Voigt-Reuss-Hill averages (GPa). The defaults are those of matcalc's ``ElasticityBenchmark`` (fmax 0.05,
clamped ions in the strained cells), so numbers compare with MatCalc's published ones; set
``relax_deformed_structures`` to relax the atoms in each strained cell (relaxed-ion constants, as Materials
Project computes them; several times the cost). matcalc's warning about a mean R^2 below 0.95 is silenced: its
mean runs over all 36 strain-stress components, the symmetry-zero ones included, so it fires for almost every
crystal (EMT copper: mean R^2 0.33, with K_VRH within 2 % of the E(V) bulk modulus).
"""

from __future__ import annotations

import warnings

from ..items import Item

PARAMS = {"fmax": 0.05, "norm_strains": [-0.01, -0.005, 0.005, 0.01], "shear_strains": [-0.06, -0.03, 0.03, 0.06],
          "relax_deformed_structures": False}
QUANTITIES = {"bulk_modulus_vrh": "GPa", "shear_modulus_vrh": "GPa"}


def compute(item: Item, model, params: dict) -> dict[str, float]:
    from matcalc import ElasticityCalc

    calc = ElasticityCalc(model.calc, fmax=params["fmax"], norm_strains=params["norm_strains"],
                          shear_strains=params["shear_strains"], relax_structure=True,
                          relax_deformed_structures=params["relax_deformed_structures"], units_GPa=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Elastic strain-stress fits have mean R")
        result = calc.calc(item.structures["crystal"].copy())
    return {"bulk_modulus_vrh": float(result["bulk_modulus_vrh"]),
            "shear_modulus_vrh": float(result["shear_modulus_vrh"])}
