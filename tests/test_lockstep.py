"""Lock-step relaxation (models/lockstep.py) and the batched forces behind it (models/batched.py).

The driver must step each structure exactly as its ASE optimiser's own ``run`` does (checked bit for bit with
EMT, with and without a batched evaluator), must never use forces of other positions, and with a real model
the batched forces must equal the calculator's and lead to the same minimum.

Tolerance for forces, 1e-5 eV/A: both paths run the same float32 network on the same graphs (forces are
per-atom derivatives, so batching other graphs beside them changes no sum they depend on); measured 0 with
7net-0 and CHGNet on MOF cells.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import optimize
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms
from ase.filters import FrechetCellFilter
from helpers import EMTBatch, emt_with, loaded_model, task_items

from omni_bench.items import Item
from omni_bench.models import lockstep
from omni_bench.models.checks import InvalidResult
from omni_bench.protocols import eos_curve
from omni_bench.run.compute import compute_items
from omni_bench.task_registry import all_tasks

FORCE_TOLERANCE = 1e-5  # eV/A


class EMTForces(EMTBatch):
    """EMT as a batched force path: one call per round for every structure it is given."""

    def energies_forces(self, structures, stress=False):
        formulas = [atoms.get_chemical_formula() for atoms in structures]
        if self.raise_for in formulas:
            raise RuntimeError("planted batch failure")
        self.batch_sizes.append(len(structures))
        out = []
        for atoms in structures:
            atoms = atoms.copy()
            atoms.calc = EMT()
            answer = (atoms.get_potential_energy(), atoms.get_forces())
            out.append((*answer, atoms.get_stress()) if stress else answer)
        return out


def rattled_cells() -> list:
    """Copper cells of three sizes and strains, rattled so they need a few dozen steps."""
    cells = [bulk("Cu", "fcc", a=3.55).repeat(2), bulk("Cu", "fcc", a=3.65, cubic=True),
             bulk("Cu", "fcc", a=3.6) * (3, 1, 1)]
    for seed, atoms in enumerate(cells):
        atoms.rattle(0.05, seed=seed)
    return cells


def ase_loop(cells, optimizer: str, fmax: float) -> list:
    relaxed = []
    for atoms in cells:
        atoms = atoms.copy()
        atoms.calc = EMT()
        opt = getattr(optimize, optimizer)(atoms, logfile=None)
        assert opt.run(fmax=fmax, steps=500)
        relaxed.append((atoms, opt.nsteps))
    return relaxed


@pytest.mark.parametrize("optimizer", ["LBFGS", "FIRE"])
@pytest.mark.parametrize("batched", [False, True])
def test_lockstep_steps_each_structure_as_its_own_optimizer_run_does(monkeypatch, optimizer, batched):
    cells = rattled_cells()
    evaluator = EMTForces()
    model = emt_with(monkeypatch, evaluator)
    assert model.batched_forces
    together = lockstep.relax_together(model, cells, optimizer, fmax=0.01, max_steps=500, batched=batched,
                                       max_atoms=100)
    for result, (atoms, steps) in zip(together, ase_loop(cells, optimizer, 0.01), strict=True):
        assert result.converged and result.steps == steps > 5
        np.testing.assert_allclose(result.atoms.positions, atoms.positions, rtol=0, atol=1e-12)
        assert result.energy == pytest.approx(atoms.get_potential_energy(), abs=1e-12)
    if batched:  # rounds shrink as structures converge; while all three run they share one call
        sizes = evaluator.batch_sizes
        assert sizes[0] == 3 and sizes == sorted(sizes, reverse=True)
        assert len(sizes) == max(r.steps for r in together) + 1
        assert model.evaluations["batched_forces"] == sum(evaluator.batch_sizes) == sum(r.steps + 1 for r in together)
    else:
        assert evaluator.batch_sizes == []


class ExtraForceRow(EMTForces):
    """Zero forces with one row too many for the 4-atom cell: an optimiser takes them as converged."""

    def energies_forces(self, structures, stress=False):
        return [(energy, np.zeros((5, 3)) if len(atoms) == 4 else forces)
                for (energy, forces), atoms in zip(super().energies_forces(structures), structures, strict=True)]


def test_batched_forces_of_the_wrong_shape_are_an_error_not_a_converged_relaxation(monkeypatch):
    model = emt_with(monkeypatch, ExtraForceRow())
    with pytest.raises(InvalidResult, match=r"forces of shape \(5, 3\) for 4 atoms"):
        lockstep.relax_together(model, rattled_cells(), fmax=0.01, max_atoms=100)


def test_the_atom_budget_splits_a_round_into_batches(monkeypatch):
    evaluator = EMTForces()
    model = emt_with(monkeypatch, evaluator)
    lockstep.relax_together(model, rattled_cells(), fmax=0.01, max_atoms=9)  # 8, 4 and 3 atoms
    assert evaluator.batch_sizes[:2] == [1, 2]


def test_not_converging_is_reported_and_stale_forces_are_refused(monkeypatch):
    model = emt_with(monkeypatch, EMTForces())
    [result] = lockstep.relax_together(model, rattled_cells()[:1], fmax=1e-6, max_steps=3)
    assert not result.converged and result.steps == 3
    result.atoms.positions[0, 0] += 0.01
    with pytest.raises(RuntimeError, match="not evaluated"):
        result.atoms.get_forces()
    with pytest.raises(ValueError, match="optimizer 'MDMin'"):
        lockstep.relax_together(model, rattled_cells(), optimizer="MDMin")


@pytest.mark.parametrize("batched", [False, True])
def test_cells_relax_with_the_cell_filter_as_one_run_each_does(monkeypatch, batched):
    """Cell and atoms together (FrechetCellFilter, as matcalc's RelaxCalc and MOFSimBench relax): the batched
    path hands the optimiser stress as well, and each crystal ends where its own FIRE run ends."""
    cells = rattled_cells()
    model = emt_with(monkeypatch, EMTForces())
    together = lockstep.relax_together(model, cells, "FIRE", fmax=0.01, max_steps=500, batched=batched,
                                       relax_cell=True)
    for result, atoms in zip(together, cells, strict=True):
        atoms = atoms.copy()
        atoms.calc = EMT()
        opt = optimize.FIRE(FrechetCellFilter(atoms), logfile=None)
        assert opt.run(fmax=0.01, steps=500)
        assert result.converged and result.steps == opt.nsteps > 5
        np.testing.assert_allclose(result.atoms.cell.array, atoms.cell.array, rtol=0, atol=1e-10)
        np.testing.assert_allclose(result.atoms.positions, atoms.positions, rtol=0, atol=1e-10)
    assert min(abs(r.atoms.get_volume() / a.get_volume() - 1) for r, a in zip(together, cells, strict=True)) > 1e-3


def test_fixed_atoms_stay_fixed_in_lockstep(monkeypatch):
    """A slab's FixAtoms constraint acts in every lock-step round as in the structure's own run."""
    slab = fcc111("Cu", size=(2, 2, 3), vacuum=6.0)
    slab.set_constraint(FixAtoms(indices=[a.index for a in slab if a.tag == 3]))
    slab.rattle(0.05, seed=3)
    model = emt_with(monkeypatch, EMTForces())
    [together, other] = lockstep.relax_together(model, [slab, rattled_cells()[0]], "FIRE", fmax=0.01,
                                                max_steps=500, batched=True)
    alone = slab.copy()
    alone.calc = EMT()
    assert optimize.FIRE(alone, logfile=None).run(fmax=0.01, steps=500)
    fixed = [a.index for a in slab if a.tag == 3]
    assert together.converged and other.converged
    np.testing.assert_array_equal(together.atoms.positions[fixed], slab.positions[fixed])
    np.testing.assert_allclose(together.atoms.positions, alone.positions, rtol=0, atol=1e-10)


def test_a_structure_that_fails_leaves_the_rounds_alone_when_failures_are_isolated(monkeypatch):
    """Batches holding the planted failure raise: the batch is split, the culprit fails with its error, and
    the other structures relax to where they would have without it."""
    cells = rattled_cells()
    culprit = cells[1].get_chemical_formula()
    model = emt_with(monkeypatch, EMTForces(raise_for=culprit))
    with pytest.raises(RuntimeError, match="planted"):
        lockstep.relax_together(model, cells, fmax=0.01, max_atoms=100)
    results = lockstep.relax_together(model, cells, fmax=0.01, max_atoms=100, isolate_failures=True)
    assert results[1].error == "RuntimeError: planted batch failure" and results[1].energy is None
    for result, (atoms, steps) in zip([results[0], results[2]], ase_loop([cells[0], cells[2]], "LBFGS", 0.01),
                                      strict=True):
        assert result.error is None and result.converged and result.steps == steps
        np.testing.assert_allclose(result.atoms.positions, atoms.positions, rtol=0, atol=1e-12)


def test_eos_curve_walk_gives_what_one_optimizer_run_per_cell_gives(monkeypatch):
    """The protocol's outward walk, two cells at a time in lock-step (batched or not), against the walk one
    cell at a time with ``LBFGS.run`` on EMT, each cell from its inner neighbour's relaxed positions."""
    cells = {}
    for k, scale in enumerate((0.97, 0.985, 1.0, 1.015, 1.03)):
        atoms = bulk("Cu", "fcc", a=3.6 * scale).repeat(2)
        atoms.rattle(0.03, seed=k)
        cells[f"V{k}"] = atoms
    item = Item("Cu", cells, meta={"reference_index": 2})
    params = {**eos_curve.PARAMS, "relax_positions": True, "fmax": 1e-3}
    expected, relaxed = {}, {}
    for index in (2, 3, 4, 1, 0):
        start = cells[f"V{index}"].copy()
        if index != 2:
            start.set_scaled_positions(relaxed[index - 1 if index > 2 else index + 1].get_scaled_positions())
        start.calc = EMT()
        assert optimize.LBFGS(start, logfile=None).run(fmax=1e-3, steps=1000)
        relaxed[index], expected[f"energy:V{index}"] = start, start.get_potential_energy()
    evaluator = EMTForces()
    model = emt_with(monkeypatch, evaluator)
    assert eos_curve.compute(item, model, params) == pytest.approx(expected, abs=1e-12)
    assert evaluator.batch_sizes[:1] == [1] and 2 in evaluator.batch_sizes  # the anchor alone, then pairs
    calls = evaluator.batch_sizes.copy()
    monkeypatch.setattr(eos_curve, "relax_together", lambda *a: lockstep.relax_together(*a, batched=False))
    assert eos_curve.compute(item, model, params) == pytest.approx(expected, abs=1e-12)
    assert evaluator.batch_sizes == calls  # the second walk used the calculator only


@pytest.mark.slow
@pytest.mark.parametrize("name", ["7net-0", "chgnet", "7net-0+d3"])
def test_batched_forces_match_the_ase_calculator(name, data_root):
    """Two strained cells of the smallest MOF (CALF-20, 44 atoms), rattled, and a bulk crystal, in one batch."""
    model = loaded_model(name)
    assert model.batched_forces
    mof = task_items("mofsimbench-eos", data_root, limit=1)[0]
    structures = [mof.structures["V0"].copy(), mof.structures["V4"].copy(), bulk("Si", "diamond", a=5.43).repeat(2)]
    for seed, atoms in enumerate(structures):
        atoms.rattle(0.03, seed=seed)
    prepared = [model.attach(atoms) for atoms in structures]
    prepared[-1].get_potential_energy()  # the shared calculator now holds another structure's results
    batched = model.energies_forces(prepared)
    for atoms, (energy, forces) in zip(prepared, batched, strict=True):
        assert np.abs(forces - atoms.get_forces()).max() <= FORCE_TOLERANCE
        assert abs(energy - atoms.get_potential_energy()) / len(atoms) <= 1e-5


@pytest.mark.slow
def test_7net0_lockstep_reaches_the_minimum_of_the_ase_loop():
    """Two strained, rattled silicon cells relaxed in one batch per step, against LBFGS on the calculator."""
    model = loaded_model("7net-0")
    cells = [bulk("Si", "diamond", a=a).repeat((2, 1, 1)) for a in (5.40, 5.47)]
    for seed, atoms in enumerate(cells):
        atoms.rattle(0.05, seed=seed)
    together = lockstep.relax_together(model, cells, fmax=0.005, max_steps=300)
    assert model.batched_forces
    for result, atoms in zip(together, cells, strict=True):
        atoms = model.attach(atoms)
        assert optimize.LBFGS(atoms, logfile=None).run(fmax=0.005, steps=300) and result.converged
        assert result.energy == pytest.approx(atoms.get_potential_energy(), abs=1e-4)
        assert np.abs(result.atoms.positions - atoms.positions).max() < 2e-3


def _computed(model, task: str, items, batch_atoms: int) -> dict:
    spec = all_tasks()[task]
    results = compute_items(model, spec.protocol_module, items, spec.run_params, batch_atoms)
    return {result.item_id: result for result in results}


def test_the_runner_relaxes_a_tasks_structures_together_as_each_alone(monkeypatch, data_root):
    """mamun-noble-relaxed on EMT (slabs with their fixed bottom layers, gases): the runner relaxes the items'
    structures ahead in lock-step; every value equals the one-at-a-time path's (``--no-batch``)."""
    items = task_items("mamun-noble-relaxed", data_root)[:8]
    evaluator = EMTForces()
    model = emt_with(monkeypatch, evaluator)
    alone = _computed(model, "mamun-noble-relaxed", items, batch_atoms=0)
    assert evaluator.batch_sizes == [] and model.evaluations["relaxed_in_lockstep"] == 0
    together = _computed(model, "mamun-noble-relaxed", items, batch_atoms=128)
    assert model.evaluations["relaxed_in_lockstep"] == len(items) and max(evaluator.batch_sizes) > 1
    for item_id, result in alone.items():
        assert result.status == together[item_id].status == "ok"
        assert together[item_id].values == pytest.approx(result.values, abs=1e-9)


# 7net-0 on small real slices of each task whose protocol relaxes through the runner: the lock-step values
# against the one-at-a-time path's. Tolerances: the relaxations stop at fmax 0.05 eV/A, so float32 noise in
# batched forces (below 1e-5 eV/A) can change a late step; 1e-3 eV is the bound for energies.
LOCKSTEP_SLICES = {"mamun-noble-relaxed": (slice(0, 6), 1e-3),
                   "elastic-moduli-small": (slice(0, 2), 0.5),  # GPa
                   "heat-capacity-small": (slice(0, 1), 0.05)}  # J/K/mol


@pytest.mark.slow
@pytest.mark.parametrize("task", list(LOCKSTEP_SLICES))
def test_7net0_lockstep_relaxations_agree_with_one_at_a_time(task, data_root):
    model = loaded_model("7net-0")
    chosen, tolerance = LOCKSTEP_SLICES[task]
    items = sorted(task_items(task, data_root), key=lambda item: sum(len(a) for a in item.structures.values()))
    items = items[chosen]
    alone = _computed(model, task, items, batch_atoms=0)
    model.evaluations.clear()
    together = _computed(model, task, items, batch_atoms=128)
    assert model.evaluations["relaxed_in_lockstep"] == len(items)
    if task.startswith("elastic"):  # matcalc's 24 strained cells and the relaxed one, computed in batches first
        assert model.evaluations["answered_ahead"] >= 25 * len(items)  # each asked for energy, forces, stress
    for item_id, result in alone.items():
        assert result.status == together[item_id].status == "ok", (result.error, together[item_id].error)
        for name, value in result.values.items():
            if name == "relax_steps":  # a late step may differ, where fmax is crossed within float32 noise
                assert abs(together[item_id].values[name] - value) <= 2, item_id
            else:
                assert together[item_id].values[name] == pytest.approx(value, abs=tolerance), (item_id, name)
