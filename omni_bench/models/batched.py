"""Energies of many structures in one forward pass, for models whose networks take a batch of graphs.

Why: single-point tasks are thousands of small, independent structures. One ASE call each pays the Python
and graph set-up per structure and leaves a GPU mostly idle; the ASE calculators also compute forces and
stress that single points never read. An evaluator here packs structures into batches of at most a given
number of atoms and computes energies only. Which evaluator applies is decided by the calculator's exact
type (a subclass may compute something else), so an unknown calculator keeps the ASE path.

A batch that raises (out of memory, a structure the network cannot take), or answers with anything but one
real number per structure, is split in halves down to single structures; a structure that fails alone is
left to the ASE calculator, which then fails or succeeds exactly as it would have without batching.

``energies_forces`` is the same batch with forces (autograd through the whole network, as the calculators do),
for relaxing many structures in lock-step (models/lockstep.py); ``energies`` stays the energy-only path.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ..errors import ItemTimeout

if TYPE_CHECKING:  # importing this module (the CLI does, for the default) must not import ase or torch
    import numpy as np
    from ase import Atoms
    from ase.calculators.calculator import Calculator

#: default atoms per batch on CPU: measured with 7net-0 and CHGNet on S22 and OpenFF torsions (one thread),
#: batches of 128-512 atoms are fastest; 7net-0 with 1024-atom batches takes 1.5-1.7x as long as with 128
CPU_BATCH_ATOMS = 128
#: default on a GPU, where only large batches fill the device; not measured yet (memory grows linearly with
#: it, and energies without forces need no autograd graph)
GPU_BATCH_ATOMS = 4096


class AbandonBatches(Exception):
    """The evaluator cannot go on (its worker process died): splitting the batch would only start new workers
    to crash again, so every structure is left to the ASE path, where a crash fails only its own item."""


def default_batch_atoms(device: str) -> int:
    return GPU_BATCH_ATOMS if device.startswith("cuda") else CPU_BATCH_ATOMS


class BatchedEvaluator(Protocol):
    """What the batched path needs from a model: which structures it takes, and their energies (eV)."""

    name: str

    def supports(self, atoms: Atoms) -> bool: ...

    def energies(self, structures: Sequence[Atoms]) -> list[float]: ...

    def energies_forces(self, structures: Sequence[Atoms]) -> list[tuple[float, np.ndarray]]: ...


def evaluator_for(calc: Calculator) -> BatchedEvaluator | None:
    """The batched evaluator for this calculator, or None for the ASE path. Looks only at packages that are
    already imported (building the calculator imported them), so it imports no model package itself."""
    worker = sys.modules.get("omni_bench.models.worker")
    if worker is not None and type(calc) is worker.WorkerCalculator:
        return worker.WorkerBatch(calc)
    sevenn_calculator = sys.modules.get("sevenn.calculator")
    if sevenn_calculator is not None and type(calc) is sevenn_calculator.SevenNetCalculator:
        return SevenNetBatch(calc)
    chgnet_dynamics = sys.modules.get("chgnet.model.dynamics")
    if chgnet_dynamics is not None and type(calc) is chgnet_dynamics.CHGNetCalculator:
        return CHGNetBatch(calc)
    return None


class SevenNetBatch:
    """SevenNet models (any checkpoint, any channel): graphs built as ``SevenNetCalculator`` builds them,
    collated with torch_geometric, run through the network's modules up to the energy (force and stress
    modules skipped, without autograd)."""

    name = "sevenn"

    def __init__(self, calc: Calculator):
        from sevenn.nn.force_output import ForceOutput, ForceStressOutput, ForceStressOutputFromEdge

        self.calc = calc
        self.gradient_modules = (ForceOutput, ForceStressOutput, ForceStressOutputFromEdge)

    def supports(self, atoms: Atoms) -> bool:
        """Elements the network knows; the others go to the calculator, whose error names the element."""
        return set(atoms.numbers.tolist()) <= set(self.calc.type_map)

    def _batch(self, structures: Sequence[Atoms]):
        import sevenn._keys as KEY
        from sevenn.atom_graph_data import AtomGraphData
        from sevenn.train.dataload import unlabeled_atoms_to_graph
        from torch_geometric.data import Batch

        graphs = []
        for atoms in structures:
            graph = AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(atoms, self.calc.cutoff, with_shift=False))
            if self.calc.modal:
                graph[KEY.DATA_MODALITY] = self.calc.modal
            graphs.append(graph)
        return Batch.from_data_list(graphs).to(self.calc.device)

    def energies(self, structures: Sequence[Atoms]) -> list[float]:
        import sevenn._keys as KEY
        import torch

        batch = self._batch(structures)
        model = self.calc.model  # shared with the calculator: restore its single-graph mode afterwards
        model.set_is_batch_data(True)
        try:
            with torch.no_grad():
                data = model._preprocess(batch)
                for module in model:
                    if not isinstance(module, self.gradient_modules):
                        data = module(data)
        finally:
            model.set_is_batch_data(False)
        return data[KEY.PRED_TOTAL_ENERGY].detach().cpu().reshape(-1).tolist()

    def energies_forces(self, structures: Sequence[Atoms]) -> list[tuple[float, np.ndarray]]:
        """The whole network, force module included, on one batch: what the calculator computes per graph."""
        import sevenn._keys as KEY

        batch = self._batch(structures)
        model = self.calc.model
        model.set_is_batch_data(True)
        try:
            data = model(batch)
        finally:
            model.set_is_batch_data(False)
        energies = data[KEY.PRED_TOTAL_ENERGY].detach().cpu().reshape(-1).tolist()
        forces = data[KEY.PRED_FORCE].detach().cpu().numpy()
        bounds = batch.ptr.cpu().tolist()
        return [(energies[k], forces[bounds[k]:bounds[k + 1]]) for k in range(len(structures))]


class CHGNetBatch:
    """CHGNet: ``predict_graph`` on many crystal graphs at once with task ``e`` (no forces, stress, magmoms);
    energies scaled to totals exactly as ``CHGNetCalculator`` scales them."""

    name = "chgnet"

    def __init__(self, calc: Calculator):
        self.calc = calc

    def supports(self, atoms: Atoms) -> bool:
        return True

    def _predict(self, structures: Sequence[Atoms], task: str) -> list[tuple[dict, int]]:
        """CHGNet's predictions for ``task`` with the factor that makes its energies totals."""
        from pymatgen.io.ase import AseAtomsAdaptor

        model = self.calc.model
        # copies without the calculator: the adaptor reads a calculator's last results (magnetic moments,
        # charges) as site properties, and the shared calculator's may be another structure's
        crystals = [AseAtomsAdaptor.get_structure(atoms.copy()) for atoms in structures]
        graphs = [model.graph_converter(crystal) for crystal in crystals]
        predictions = model.predict_graph(graphs, task=task, batch_size=len(graphs))
        if isinstance(predictions, dict):  # one graph in, one dict out
            predictions = [predictions]
        return [(p, len(c) if model.is_intensive else 1) for p, c in zip(predictions, crystals, strict=True)]

    def energies(self, structures: Sequence[Atoms]) -> list[float]:
        return [float(p["e"] * factor) for p, factor in self._predict(structures, "e")]

    def energies_forces(self, structures: Sequence[Atoms]) -> list[tuple[float, np.ndarray]]:
        """Task ``ef``: energies scaled as ``energies`` does, forces as the calculator takes them."""
        return [(float(p["e"] * factor), p["f"]) for p, factor in self._predict(structures, "ef")]


@dataclass
class BatchOutcome:
    """Energies by position in the input; ``errors`` by position for structures left to the ASE path."""

    energies: dict[int, float] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)


def plan_batches(sizes: Sequence[int], max_atoms: int) -> list[list[int]]:
    """Consecutive positions grouped so that each group holds at most ``max_atoms`` atoms (a larger
    structure gets a group of its own)."""
    batches: list[list[int]] = []
    atoms_in_last = 0
    for position, size in enumerate(sizes):
        if batches and atoms_in_last + size <= max_atoms:
            batches[-1].append(position)
            atoms_in_last += size
        else:
            batches.append([position])
            atoms_in_last = size
    return batches


def evaluate(evaluator: BatchedEvaluator, structures: Sequence[Atoms], max_atoms: int) -> BatchOutcome:
    """Energies of ``structures`` in batches of at most ``max_atoms`` atoms, splitting batches that raise."""
    outcome = BatchOutcome()
    for batch in plan_batches([len(s) for s in structures], max_atoms):
        _evaluate_batch(evaluator, structures, batch, outcome)
    return outcome


def _evaluate_batch(evaluator: BatchedEvaluator, structures: Sequence[Atoms], positions: list[int],
                    outcome: BatchOutcome) -> None:
    from .checks import InvalidResult, real_number  # numpy and ASE: not when the CLI imports this module

    try:
        energies = list(evaluator.energies([structures[p] for p in positions]))
        if len(energies) != len(positions):
            raise InvalidResult(f"{evaluator.name} returned {len(energies)} energies for {len(positions)} structures")
        energies = [real_number(energy) for energy in energies]  # NaN stays, for LoadedModel.energy to refuse
    except (ItemTimeout, AbandonBatches):  # the caller gives up on the batches: splitting them would not help
        raise
    except Exception as exc:  # out of memory, or one structure the network cannot take: split and retry
        _release_accelerator_memory()
        if len(positions) == 1:
            outcome.errors[positions[0]] = f"{type(exc).__name__}: {exc}"
            return
        middle = len(positions) // 2
        _evaluate_batch(evaluator, structures, positions[:middle], outcome)
        _evaluate_batch(evaluator, structures, positions[middle:], outcome)
        return
    outcome.energies.update(zip(positions, energies, strict=True))


def _release_accelerator_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
