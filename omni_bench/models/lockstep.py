"""Relaxing many structures side by side: one batched force evaluation per optimiser step for all of them.

Why: a relaxation is tens to hundreds of force calls on one structure; a call on one small structure is mostly
overhead on a GPU, and on a CPU it leaves a core idle (models/batched.py, lanes). Each structure keeps its own,
unmodified ASE optimiser (``LBFGS``, ``BFGS`` or ``FIRE``), on the structure or on a ``FrechetCellFilter`` of it,
stepped exactly as ``Optimizer.irun`` steps it: convergence is checked on the forces at the current positions,
then one ``step()``. Constraints the structure carries (``FixAtoms``, ``FixInternals``...) act as in any ASE
run, since the optimiser reads forces through ``Atoms.get_forces``. Only where the forces come from changes:
before each round, the structures still running are evaluated in batches of at most ``max_atoms`` atoms
(``LoadedModel.energies_forces``) and each one's calculator (``_Answer``) hands back its share. Models without
a batched path get the same rounds with their own ASE calculator per structure, so a result does not depend on
which path ran beyond floating-point noise (tests/test_lockstep.py measures how far).

``isolate_failures``: a batch that raises is split in halves down to one structure, and a structure that fails
alone leaves the rounds with its error (``Relaxed.error``) while the others go on; without it the first error
is raised, for callers whose structures stand or fall together (one item's cells).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms, optimize
from ase.calculators.calculator import Calculator, all_changes
from ase.filters import FrechetCellFilter

from ..errors import ItemTimeout
from .batched import default_batch_atoms, plan_batches

OPTIMIZERS = ("LBFGS", "BFGS", "FIRE")


@dataclass(frozen=True)
class RelaxSettings:
    """One relaxation protocol: optimiser, force threshold (eV/A), step limit, and whether the cell relaxes
    too (``FrechetCellFilter``, as matcalc, MOFSimBench and CatBench's bulk relaxations use)."""

    optimizer: str = "FIRE"
    fmax: float = 0.05
    max_steps: int = 500
    relax_cell: bool = False

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {self.optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")


@dataclass
class Relaxed:
    """A relaxed structure (the prepared copy the model saw) with its energy (eV, model plus any D3), whether
    it reached ``fmax``, the optimiser steps taken, and the model's error when it failed (then no energy)."""

    atoms: Atoms
    energy: float | None
    converged: bool
    steps: int
    error: str | None = None


class _Answer(Calculator):
    """A calculator that answers with what the lock-step driver computed for exactly this geometry (positions
    and cell), and refuses anything else, so that a step can never use stale forces."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self):
        super().__init__()
        self.pending: tuple | None = None

    def set_answer(self, atoms: Atoms, answer: tuple) -> None:
        self.pending = (atoms.positions.copy(), atoms.cell.array.copy(), *answer)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if (self.pending is None or not np.array_equal(self.pending[0], self.atoms.positions)
                or not np.array_equal(self.pending[1], self.atoms.cell.array)):
            raise RuntimeError("lock-step relaxation: forces asked for a geometry that was not evaluated")
        energy, forces = self.pending[2], self.pending[3]
        self.results = {"energy": energy, "free_energy": energy, "forces": np.array(forces, dtype=float)}
        if len(self.pending) > 4:
            self.results["stress"] = np.array(self.pending[4], dtype=float)


def relax_together(model, structures: list[Atoms], optimizer: str = "LBFGS", fmax: float = 0.05,
                   max_steps: int = 1000, batched: bool | None = None, max_atoms: int | None = None,
                   relax_cell: bool = False, isolate_failures: bool = False) -> list[Relaxed]:
    """Relax each structure to ``fmax`` (eV/A) in at most ``max_steps`` steps, all in lock-step, at fixed cell
    or (``relax_cell``) with its cell.

    ``model`` is a ``LoadedModel``; ``batched`` (default: whenever the model has a batched force path) takes
    every round's forces from batched calls of at most ``max_atoms`` atoms (default: the device's budget)."""
    settings = RelaxSettings(optimizer, fmax, max_steps, relax_cell)
    batched = model.batched_forces if batched is None else batched
    max_atoms = max_atoms or default_batch_atoms(model.device)
    prepared = [model.attach(atoms) for atoms in structures]
    if batched:
        for atoms in prepared:
            atoms.calc = _Answer()
    optimizers = [_optimizer(atoms, settings) for atoms in prepared]
    errors: dict[int, str] = {}
    converged = [False] * len(prepared)
    running = list(range(len(prepared)))
    while running:
        if batched:
            for batch in plan_batches([len(prepared[i]) for i in running], max_atoms):
                _evaluate(model, prepared, [running[k] for k in batch], relax_cell, errors, isolate_failures)
        still = []
        for i in running:
            if i in errors:
                continue
            opt = optimizers[i]
            try:
                if opt.converged():
                    converged[i] = True
                elif opt.nsteps < max_steps:
                    opt.step()
                    opt.nsteps += 1
                    still.append(i)
            except (KeyboardInterrupt, ItemTimeout):
                raise
            except Exception as exc:  # the model's ASE calculator failed on this structure
                if not isolate_failures:
                    raise
                errors[i] = f"{type(exc).__name__}: {exc}"
        running = still
    return [Relaxed(atoms, None, False, opt.nsteps, errors[i]) if i in errors else
            Relaxed(atoms, float(atoms.get_potential_energy()), done, opt.nsteps)
            for i, (atoms, done, opt) in enumerate(zip(prepared, converged, optimizers, strict=True))]


def _optimizer(atoms: Atoms, settings: RelaxSettings):
    target = FrechetCellFilter(atoms) if settings.relax_cell else atoms
    opt = getattr(optimize, settings.optimizer)(target, logfile=None)
    opt.fmax = settings.fmax  # what Optimizer.run sets before its first convergence check
    return opt


def _evaluate(model, prepared: list[Atoms], group: list[int], stress: bool, errors: dict[int, str],
              isolate_failures: bool) -> None:
    """One batched call for ``group``; with ``isolate_failures`` a call that raises is split in halves, and a
    structure that fails alone is recorded in ``errors``."""
    try:
        answers = model.energies_forces([prepared[i] for i in group], stress=stress)
    except (KeyboardInterrupt, ItemTimeout):
        raise
    except Exception as exc:
        if not isolate_failures:
            raise
        if len(group) == 1:
            errors[group[0]] = f"{type(exc).__name__}: {exc}"
            return
        middle = len(group) // 2
        _evaluate(model, prepared, group[:middle], stress, errors, isolate_failures)
        _evaluate(model, prepared, group[middle:], stress, errors, isolate_failures)
        return
    for i, answer in zip(group, answers, strict=True):
        prepared[i].calc.set_answer(prepared[i], answer)
