"""Label a structure with energy and forces (and stress for crystals) at one level of theory.

Each labeller is a function ``Atoms -> (energy eV, forces eV/A, stress eV/A^3 Voigt or None)`` plus a
settings record that goes into the training set's header.  All unit conversions go through
``omni_bench.units``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import version

import numpy as np
from ase import Atoms

from omni_bench.models.pyscf_dft import DEFAULTS as PYSCF_DEFAULTS
from omni_bench.models.pyscf_dft import energy_and_forces

Label = tuple[float, np.ndarray, "np.ndarray | None"]


@dataclass(frozen=True)
class Labeller:
    name: str
    channel: str
    level_of_theory: str
    settings: dict = field(default_factory=dict)
    compute: Callable[[Atoms], Label] | None = None


# --- PySCF hybrid DFT ------------------------------------------------------------------------------
PYSCF_SETTINGS = {"code": "PySCF", **PYSCF_DEFAULTS, "spin": "restricted closed-shell", "dispersion": "none"}


def pyscf_pbe0(atoms: Atoms) -> Label:
    energy, forces = energy_and_forces(atoms, forces=True)
    return energy, forces, None


# --- GFN2-xTB --------------------------------------------------------------------------------------
TBLITE_SETTINGS = {"code": "tblite", "method": "GFN2-xTB", "accuracy": 1.0, "electronic_temperature_K": 300.0}


def tblite_gfn2(atoms: Atoms) -> Label:
    from tblite.ase import TBLite

    work = atoms.copy()
    work.calc = TBLite(method="GFN2-xTB", accuracy=TBLITE_SETTINGS["accuracy"],
                       electronic_temperature=TBLITE_SETTINGS["electronic_temperature_K"],
                       charge=int(atoms.info.get("charge", 0)), multiplicity=int(atoms.info.get("spin", 1)),
                       verbosity=0)
    return float(work.get_potential_energy()), work.get_forces(), None


# --- replay: the starting model's own predictions ---------------------------------------------------
@cache
def _sevennet(modal: str):
    from sevenn.calculator import SevenNetCalculator

    return SevenNetCalculator("7net-mf-0", modal=modal, device="cpu")


def sevennet_replay(modal: str) -> Callable[[Atoms], Label]:
    def label(atoms: Atoms) -> Label:
        work = atoms.copy()
        work.calc = _sevennet(modal)
        stress = work.get_stress(voigt=True) if work.pbc.all() else None
        return float(work.get_potential_energy()), work.get_forces(), stress

    return label


def labellers() -> dict[str, Labeller]:
    """Every labeller by name, with the versions of the codes that ran it."""
    return {
        "pbe0": Labeller("pbe0", "PBE0", "PBE0/def2-SVP (PySCF, RI-JK, no dispersion)",
                         {**PYSCF_SETTINGS, "version": version("pyscf")}, pyscf_pbe0),
        "gfn2": Labeller("gfn2", "GFN2", "GFN2-xTB (tblite)", {**TBLITE_SETTINGS, "version": version("tblite")},
                         tblite_gfn2),
        "replay_pbe": Labeller("replay_pbe", "PBE", "7net-mf-0 PBE channel (replay of the starting model)",
                               {"code": "sevenn", "model": "7net-mf-0", "modal": "PBE", "version": version("sevenn")},
                               sevennet_replay("PBE")),
        "replay_r2scan": Labeller("replay_r2scan", "R2SCAN", "7net-mf-0 R2SCAN channel (replay of the starting model)",
                                  {"code": "sevenn", "model": "7net-mf-0", "modal": "R2SCAN",
                                   "version": version("sevenn")}, sevennet_replay("R2SCAN")),
    }
