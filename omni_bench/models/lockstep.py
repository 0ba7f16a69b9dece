"""Relaxing many structures side by side: one batched force evaluation per optimiser step for all of them.

Why: a fixed-cell relaxation is hundreds of force calls on one structure; on a CPU (and more so a GPU) a call
on one small cell is mostly overhead, so the strained cells of one equation of state relax much faster when
their forces come from one batch. Each structure keeps its own, unmodified ASE optimiser (``LBFGS``, ``BFGS``
or ``FIRE``), stepped exactly as ``Optimizer.irun`` steps it: convergence is checked on the forces at the
current positions, then one ``step()``. Only where the forces come from changes: before each round, the
structures still running are evaluated in batches of at most ``max_atoms`` atoms (``LoadedModel.energies_forces``;
by default the device's single-point budget, models/batched.py) and each one's calculator (``_Answer``) hands
back its share. Models without a batched path get the same rounds with their own ASE calculator per structure,
so the result does not depend on which path ran beyond floating-point noise.

Measured on one CPU thread (benchmarks/test_lockstep_speed.py), batching the forces of MOF cells gains nothing:
a 44-92-atom periodic cell already has thousands of edges, so a batch of five costs what five calls cost or more.
The gain is on a GPU, where one small cell leaves the device idle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms, optimize
from ase.calculators.calculator import Calculator, all_changes

from .batched import default_batch_atoms, plan_batches

OPTIMIZERS = ("LBFGS", "BFGS", "FIRE")


@dataclass
class Relaxed:
    atoms: Atoms
    energy: float
    converged: bool
    steps: int


class _Answer(Calculator):
    """A calculator that answers with the energy and forces the lock-step driver computed for exactly these
    positions, and refuses anything else (so a step can never use stale forces)."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self):
        super().__init__()
        self.pending: tuple[np.ndarray, float, np.ndarray] | None = None

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if self.pending is None or not np.array_equal(self.pending[0], self.atoms.positions):
            raise RuntimeError("lock-step relaxation: forces asked for positions that were not evaluated")
        _, energy, forces = self.pending
        self.results = {"energy": energy, "free_energy": energy, "forces": np.array(forces, dtype=float)}


def relax_together(model, structures: list[Atoms], optimizer: str = "LBFGS", fmax: float = 0.05,
                   max_steps: int = 1000, batched: bool | None = None, max_atoms: int | None = None) -> list[Relaxed]:
    """Relax each structure at fixed cell to ``fmax`` (eV/A) in at most ``max_steps`` steps, all in lock-step.

    ``model`` is a ``LoadedModel``; ``batched`` (default: whenever the model has a batched force path) takes
    every round's forces from batched calls of at most ``max_atoms`` atoms (default: the device's budget)."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer {optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")
    batched = model.batched_forces if batched is None else batched
    max_atoms = max_atoms or default_batch_atoms(model.device)
    prepared = [model.attach(atoms) for atoms in structures]
    if batched:
        for atoms in prepared:
            atoms.calc = _Answer()
    optimizers = [getattr(optimize, optimizer)(atoms, logfile=None) for atoms in prepared]
    for opt in optimizers:
        opt.fmax = fmax  # what Optimizer.run sets before its first convergence check
    converged = [False] * len(prepared)
    running = list(range(len(prepared)))
    while running:
        if batched:
            for batch in plan_batches([len(prepared[i]) for i in running], max_atoms):
                group = [running[k] for k in batch]
                results = model.energies_forces([prepared[i] for i in group])
                for i, (energy, forces) in zip(group, results, strict=True):
                    prepared[i].calc.pending = (prepared[i].positions.copy(), energy, forces)
        still = []
        for i in running:
            opt = optimizers[i]
            if opt.converged():
                converged[i] = True
            elif opt.nsteps < max_steps:
                opt.step()
                opt.nsteps += 1
                still.append(i)
        running = still
    return [Relaxed(atoms, float(atoms.get_potential_energy()), done, opt.nsteps)
            for atoms, done, opt in zip(prepared, converged, optimizers, strict=True)]
