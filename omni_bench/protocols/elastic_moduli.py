"""Elastic moduli from strained cells with matcalc's ``ElasticityCalc`` (pymatgen's strain-stress fit).

The crystal is relaxed (cell and atoms, FIRE to ``fmax``, at most ``max_steps`` steps), then strained by the
normal and shear strains pymatgen's ``DeformedStructureSet`` makes of ``norm_strains`` and ``shear_strains``
(6 x 4 = 24 cells by default), and the elastic tensor is the linear fit of the model's stresses; the bulk and
shear moduli are its Voigt-Reuss-Hill averages (GPa). The strains are those of matcalc's
``ElasticityBenchmark`` (clamped ions in the strained cells), so numbers compare with MatCalc's published ones;
set ``relax_deformed_structures`` to relax the atoms in each strained cell (relaxed-ion constants, as Materials
Project computes them; several times the cost). matcalc's warning about a mean R^2 below 0.95 is silenced: its
mean runs over all 36 strain-stress components, the symmetry-zero ones included, so it fires for almost every
crystal (EMT copper: mean R^2 0.33, with K_VRH within 2 % of the E(V) bulk modulus).

Born stability: the fitted 6x6 Voigt tensor of a mechanically stable crystal is positive definite, and a
Reuss average of one that is not means nothing (SiNi mp-999192 with 7net-0 at fmax 0.05: smallest eigenvalue
-1.5 GPa, K_VRH 1871 GPa against 173.8). A loose relaxation can leave a stable crystal with such a tensor, so
a tensor whose smallest eigenvalue is at most ``min_eigenvalue_GPa`` is fitted again after relaxing further,
from where the first relaxation stopped, to ``recheck_fmax`` (at most ``recheck_max_steps`` steps; SiNi: -0.5
GPa at 0.01, -0.4 at 0.005, +13.4 and K_VRH 178.2 at 0.001); the item is noted. A tensor still unstable then
is the model's: the item fails as ``ElasticallyUnstable``, with the eigenvalue and the moduli it would have
given. Crystals stable at ``fmax`` keep matcalc's protocol, and its cost. The check runs with
``check_stability``; the task files (version 1) do not set it yet, since turning it on changes their numbers
and every committed result would have to be computed again (about 15 minutes per model on a 2-core CPU for
elastic-moduli-small). A relaxation that does not reach its
fmax fails as ``NotConverged``. Each failure's reason thus begins with its category (the runner stores
``<exception type>: <message>``).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..items import Item
from ._prerelax import cell_relaxation, prerelaxed

PARAMS = {"fmax": 0.05, "max_steps": 500, "norm_strains": [-0.01, -0.005, 0.005, 0.01],
          "shear_strains": [-0.06, -0.03, 0.03, 0.06], "relax_deformed_structures": False,
          "check_stability": False, "min_eigenvalue_GPa": 0.0, "recheck_fmax": None, "recheck_max_steps": 3000}
QUANTITIES = {"bulk_modulus_vrh": "GPa", "shear_modulus_vrh": "GPa"}
RECHECK_NOTE = "elastic_moduli: tensor not positive definite after the fmax relaxation; fitted again after recheck_fmax"


class ElasticallyUnstable(RuntimeError):
    """The fitted elastic tensor is not positive definite (Born stability criterion violated)."""



def born_stability(voigt_gpa: np.ndarray, min_eigenvalue_gpa: float = 0.0) -> None:
    """Raise ``ElasticallyUnstable`` unless every eigenvalue of the (symmetrised) 6x6 Voigt tensor exceeds
    ``min_eigenvalue_gpa``."""
    voigt = np.asarray(voigt_gpa, dtype=float)
    if voigt.shape != (6, 6) or not np.all(np.isfinite(voigt)):
        raise ValueError(f"elastic tensor is not a finite 6x6 Voigt matrix (shape {voigt.shape})")
    eigenvalues = np.linalg.eigvalsh((voigt + voigt.T) / 2)
    if eigenvalues[0] <= min_eigenvalue_gpa:
        raise ElasticallyUnstable(
            f"elastically unstable: smallest eigenvalue of the 6x6 Voigt elastic tensor {eigenvalues[0]:.4g} GPa "
            f"(Born stability needs all six > {min_eigenvalue_gpa:g} GPa; {int(np.sum(eigenvalues <= 0))} of 6 "
            "non-positive)")


def relaxations(item: Item, params: dict) -> list:
    """The relaxation ``compute`` starts with (the runner relaxes a task's crystals together in lock-step)."""
    return [(item.structures["crystal"], cell_relaxation(params["fmax"], params["max_steps"]))]


def _fit(model, structure, params: dict, fmax: float, max_steps: int) -> dict:
    """The crystal relaxed (cell and atoms, FIRE to ``fmax``; ``NotConverged`` if it does not get there), then
    matcalc's strain-stress fit of it."""
    from matcalc import ElasticityCalc

    relaxed = prerelaxed(model, structure, cell_relaxation(fmax, max_steps))
    calc = ElasticityCalc(model.calc, fmax=fmax, norm_strains=params["norm_strains"],
                          shear_strains=params["shear_strains"], relax_structure=False,
                          relax_deformed_structures=params["relax_deformed_structures"], units_GPa=True,
                          relax_calc_kwargs={"max_steps": int(max_steps)})
    if not params["relax_deformed_structures"]:
        model.prefetch_answers(_strained(relaxed, calc))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Elastic strain-stress fits have mean R")
            result = calc.calc(relaxed)
    finally:
        model.prefetch_answers([])
    result["structure"] = relaxed
    return result


def _strained(relaxed, calc) -> list:
    """The structures matcalc's fit computes stress for (each strained cell, and the relaxed one), built as
    matcalc builds them, so that their stresses can be computed in batches first (``prefetch_answers``)."""
    from matcalc.utils import to_ase_atoms, to_pmg_structure
    from pymatgen.core.elasticity import DeformedStructureSet

    deformed = DeformedStructureSet(to_pmg_structure(relaxed), calc.norm_strains, calc.shear_strains, calc.symmetry)
    return [to_ase_atoms(structure) for structure in deformed] + [to_ase_atoms(relaxed)]


def compute(item: Item, model, params: dict) -> dict[str, float]:
    floor = float(params["min_eigenvalue_GPa"])
    result = _fit(model, item.structures["crystal"], params, params["fmax"], params["max_steps"])
    if not params["check_stability"]:
        return {"bulk_modulus_vrh": float(result["bulk_modulus_vrh"]),
                "shear_modulus_vrh": float(result["shear_modulus_vrh"])}
    relaxed_to = params["fmax"]
    try:
        born_stability(np.asarray(result["elastic_tensor"].voigt), floor)
    except ElasticallyUnstable:
        if params["recheck_fmax"] is None:
            relaxed_to = None
        else:
            model.notes.add(RECHECK_NOTE)
            result = _fit(model, result["structure"], params, params["recheck_fmax"], params["recheck_max_steps"])
            relaxed_to = params["recheck_fmax"]
    bulk, shear = float(result["bulk_modulus_vrh"]), float(result["shear_modulus_vrh"])
    try:
        born_stability(np.asarray(result["elastic_tensor"].voigt), floor)
    except ElasticallyUnstable as exc:
        where = f" after relaxing to fmax {relaxed_to:g} eV/A" if relaxed_to is not None else ""
        raise ElasticallyUnstable(f"{exc}{where}; K_VRH would be {bulk:.4g} GPa, G_VRH {shear:.4g} GPa") from None
    return {"bulk_modulus_vrh": bulk, "shear_modulus_vrh": shear}
