"""The relaxation before a property calculation (elastic constants, phonons), run through ``model.relax`` so
that the runner can relax every crystal of a task in lock-step (models/lockstep.py) instead of leaving it to
matcalc one crystal at a time. The protocol is matcalc's ``RelaxCalc`` default, which those calculations used
before: cell and atoms together through ``FrechetCellFilter``, the task's optimiser, ``fmax`` and step limit.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from ..models.lockstep import RelaxSettings


class NotConverged(RuntimeError):
    """The relaxation before the property calculation did not reach ``fmax`` within its step limit."""


def cell_relaxation(fmax: float, max_steps: int, optimizer: str = "FIRE") -> RelaxSettings:
    return RelaxSettings(optimizer, float(fmax), int(max_steps), relax_cell=True)


def prerelaxed(model, crystal: Atoms, settings: RelaxSettings, require_convergence: bool = True) -> Atoms:
    """``crystal`` relaxed as ``settings`` say, as a bare structure (no calculator, no constraints) for matcalc.
    A structure whose largest atomic force is still above ``fmax`` raises ``NotConverged`` (matcalc's rule for
    the relaxation before elastic constants: the atomic forces, not the cell's, after the last step) unless
    ``require_convergence`` is off (matcalc's phonon calculation goes on with it)."""
    relaxed = model.relax(crystal, settings)
    if require_convergence and not relaxed.converged:
        largest = float(np.linalg.norm(relaxed.atoms.get_forces(), axis=1).max())
        if largest > settings.fmax:
            raise NotConverged(f"Pre-relaxation did not converge: max|F| = {largest:.4g} eV/A > fmax = "
                               f"{settings.fmax:.4g} eV/A after {relaxed.steps} steps")
    atoms = relaxed.atoms
    return Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc, info=dict(atoms.info))
