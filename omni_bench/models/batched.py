"""Energies of many structures in one forward pass, for models whose networks take a batch of graphs.

Why: single-point tasks are thousands of small, independent structures. One ASE call each pays the Python
and graph set-up per structure and leaves a GPU mostly idle; the ASE calculators also compute forces and
stress that single points never read. An evaluator here packs structures into batches of at most a given
number of atoms and computes energies only. Which evaluator applies is decided by the calculator's exact
type (a subclass may compute something else), so an unknown calculator keeps the ASE path.

A batch that raises (out of memory, a structure the network cannot take), or answers with anything but one
real number per structure, is split in halves down to single structures; a structure that fails alone is
left to the ASE calculator, which then fails or succeeds exactly as it would have without batching.

``energies_forces`` is the same batch with forces (autograd through the whole network, as the calculators do)
and, where asked, stress, for relaxing many structures in lock-step (models/lockstep.py); ``energies`` stays the
energy-only path.

Lanes: on a CPU a batch of small structures is split into one sub-batch per torch thread, each run on its own
Python thread with one torch thread (``in_lanes``). Why: a 7net-0 call on a 13-atom slab is hundreds of small
tensor operations that intra-op threads barely share. Forces of the 39 Mamun slabs and gases on 2 threads
(benchmarks/test_lockstep_speed.py, an idle 2-core machine): lanes take 0.80 of the time of the same batches
on one lane (7net-0; CHGNet 0.78) and 0.73 of the calculator's per-structure loop (CHGNet 0.56). Torch
releases the GIL inside its operations and the networks hold no state between calls, so the answers are
those of one call.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ..errors import ItemTimeout

if TYPE_CHECKING:  # importing this module (the CLI does, for the default) must not import ase or torch
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

    def energies_forces(self, structures: Sequence[Atoms], stress: bool = False) -> list[tuple]: ...


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

        def energy_only(part: Sequence[Atoms]) -> list[float]:
            with torch.no_grad():  # per thread: autograd's mode is thread-local
                data = model._preprocess(self._batch(part))
                for module in model:
                    if not isinstance(module, self.gradient_modules):
                        data = module(data)
            return data[KEY.PRED_TOTAL_ENERGY].detach().cpu().reshape(-1).tolist()

        model = self.calc.model  # shared with the calculator: restore its single-graph mode afterwards
        model.set_is_batch_data(True)
        try:
            parts = in_lanes(energy_only, structures, self.calc.device)
        finally:
            model.set_is_batch_data(False)
        return [energy for part in parts for energy in part]

    def energies_forces(self, structures: Sequence[Atoms], stress: bool = False) -> list[tuple]:
        """The whole network, force module included, on one batch: what the calculator computes per graph
        (stress as ASE's Voigt 6-vector in eV/A^3, converted as ``SevenNetCalculator.output_to_results`` does)."""
        import sevenn._keys as KEY

        def forward(part: Sequence[Atoms]) -> list[tuple]:
            batch = self._batch(part)
            data = model(batch)
            energies = data[KEY.PRED_TOTAL_ENERGY].detach().cpu().reshape(-1).tolist()
            forces = data[KEY.PRED_FORCE].detach().cpu().numpy()
            bounds = batch.ptr.cpu().tolist()
            answers = [(energies[k], forces[bounds[k]:bounds[k + 1]]) for k in range(len(part))]
            if stress:
                stresses = (-data[KEY.PRED_STRESS]).detach().cpu().numpy().reshape(len(part), 6)[:, [0, 1, 2, 4, 5, 3]]
                answers = [(*answer, stresses[k]) for k, answer in enumerate(answers)]
            return answers

        model = self.calc.model
        model.set_is_batch_data(True)
        try:
            parts = in_lanes(forward, structures, self.calc.device)
        finally:
            model.set_is_batch_data(False)
        return [answer for part in parts for answer in part]


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

        def predict(part: Sequence[Atoms]) -> list[tuple[dict, int]]:
            # copies without the calculator: the adaptor reads a calculator's last results (magnetic moments,
            # charges) as site properties, and the shared calculator's may be another structure's
            crystals = [AseAtomsAdaptor.get_structure(atoms.copy()) for atoms in part]
            graphs = [model.graph_converter(crystal) for crystal in crystals]
            predictions = model.predict_graph(graphs, task=task, batch_size=len(graphs))
            if isinstance(predictions, dict):  # one graph in, one dict out
                predictions = [predictions]
            return [(p, len(c) if model.is_intensive else 1) for p, c in zip(predictions, crystals, strict=True)]

        return [answer for part in in_lanes(predict, structures, self.calc.device) for answer in part]

    def energies(self, structures: Sequence[Atoms]) -> list[float]:
        return [float(p["e"] * factor) for p, factor in self._predict(structures, "e")]

    def energies_forces(self, structures: Sequence[Atoms], stress: bool = False) -> list[tuple]:
        """Task ``ef`` (``efs``): energies scaled as ``energies`` does, forces and stress as the calculator
        takes them (stress from GPa to eV/A^3 with the calculator's own factor)."""
        if not stress:
            return [(float(p["e"] * factor), p["f"]) for p, factor in self._predict(structures, "ef")]
        return [(float(p["e"] * factor), p["f"], p["s"] * self.calc.stress_weight)
                for p, factor in self._predict(structures, "efs")]


_LANE_POOLS: dict[int, ThreadPoolExecutor] = {}
_LANE_LOCK = threading.Lock()


def cpu_lanes(device: str) -> int:
    """Sub-batches run side by side: one per torch thread on a CPU, one on an accelerator (it is fed best by
    one large batch)."""
    if str(device).startswith("cuda"):
        return 1
    import torch

    return max(1, torch.get_num_threads())


def split_by_atoms(structures: Sequence[Atoms], parts: int) -> list[list[int]]:
    """Positions in ``parts`` contiguous runs of about equal atoms (fewer runs than structures where needed)."""
    parts = max(1, min(parts, len(structures)))
    total = sum(len(atoms) for atoms in structures)
    runs: list[list[int]] = [[] for _ in range(parts)]
    seen = 0
    for position, atoms in enumerate(structures):
        runs[min(parts - 1, int(parts * seen / total) if total else 0)].append(position)
        seen += len(atoms)
    return [run for run in runs if run]


def in_lanes(evaluate_part: Callable[[Sequence[Atoms]], list], structures: Sequence[Atoms], device: str) -> list[list]:
    """``evaluate_part`` on ``cpu_lanes`` sub-batches of ``structures`` at once, each with one torch thread;
    the answers per sub-batch, in order. One sub-batch (an accelerator, one thread, one structure) runs here."""
    lanes = cpu_lanes(device)
    runs = split_by_atoms(structures, lanes)
    if len(runs) == 1:
        return [evaluate_part(structures)]
    import torch

    with _LANE_LOCK:  # one lane set at a time: the torch thread count is the process's
        pool = _LANE_POOLS.setdefault(lanes, ThreadPoolExecutor(lanes, thread_name_prefix="omni-bench-lane"))
        torch.set_num_threads(1)
        try:
            futures = [pool.submit(evaluate_part, [structures[p] for p in run]) for run in runs]
            return [future.result() for future in futures]
        finally:
            torch.set_num_threads(lanes)


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
