"""The batched single-point path (models/batched.py, LoadedModel.prefetch, the runner's prefetch hook):
it gives the ASE path's energies, it is chosen only for models that have it, and every way it can fail
ends where the ASE path would have ended.

Tolerance: both paths run the same float32 network on the same graphs; only the order of float32 sums over
atoms and edges differs between one graph and a batch. Per-atom energies are a few eV, float32 keeps about
7 digits, so differences of 1e-6 eV/atom are expected (1.3e-6 measured with 7net-0 on S22) and 1e-5 eV/atom
is the bound: ten times that, and a thousand times below any error the benchmarks score.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk, molecule
from helpers import MODEL_CACHE, EMTBatch, emt_with, loaded_model, single_points_of, task_items

from omni_bench import plugins
from omni_bench.commands import run as run_command
from omni_bench.commands import sweep as sweep_command
from omni_bench.errors import OmniBenchError
from omni_bench.executors.serial import run_serial
from omni_bench.models import batched, loaded
from omni_bench.models.checks import NonFiniteResult
from omni_bench.models.fingerprint import fingerprint, fingerprint_id
from omni_bench.models.loaded import LoadedModel, structure_key
from omni_bench.models.registry import resolve_models
from omni_bench.run.options import RunOptions
from omni_bench.store import ResultStore
from omni_bench.task_registry import all_tasks

TOLERANCE_EV_PER_ATOM = 1e-5


@pytest.fixture(scope="module")
def real_structures(data_root) -> list:
    """Molecules (S22 dimers and monomers, charged organometallics, a torsion scan), molecular crystals
    with their molecule, strained elemental crystals and an isolated atom: every kind the tasks batch."""
    return (single_points_of("s22", data_root, 5) + single_points_of("x23", data_root, 2)
            + single_points_of("dcdft", data_root, 1) + single_points_of("matpes-elements-pbe", data_root, 1)
            + single_points_of("mor41", data_root, 3) + single_points_of("openff-torsions", data_root, 1)[:6])


def both_paths(model: LoadedModel, structures: list) -> tuple[np.ndarray, np.ndarray]:
    """Energies through the ASE calculator, then through a prefetch in batches as large as on a GPU (so that
    molecules and crystals share batches); asserts that the second really was served by the evaluator."""
    model.prefetch([], 0)
    ase_energies = np.array([model.energy(atoms) for atoms in structures])
    before = model.evaluations["batched"]
    model.prefetch(structures, batched.GPU_BATCH_ATOMS)
    batched_energies = np.array([model.energy(atoms) for atoms in structures])
    model.prefetch([], 0)
    assert model.evaluations["batched"] - before == len(structures), "some energies did not come from the batch"
    return ase_energies, batched_energies


@pytest.mark.slow
@pytest.mark.parametrize("name", ["7net-0", "7net-mf-0@R2SCAN", "chgnet"])
def test_batched_energies_match_the_ase_calculator(name, real_structures):
    model = loaded_model(name)
    assert model.batched_path == ("chgnet" if name == "chgnet" else "sevenn")
    ase_energies, batched_energies = both_paths(model, real_structures)
    sizes = np.array([len(atoms) for atoms in real_structures])
    worst = np.max(np.abs(batched_energies - ase_energies) / sizes)
    assert worst <= TOLERANCE_EV_PER_ATOM, f"{name}: batched and ASE energies differ by {worst:.2e} eV/atom"


@pytest.mark.slow
def test_d3_is_added_on_top_of_batched_energies(real_structures):
    """``+d3`` models: the network's energies come from the batch, D3 per structure, as SumCalculator adds."""
    model = loaded_model("7net-0+d3")
    structures = real_structures[:6]
    ase_energies, batched_energies = both_paths(model, structures)
    sizes = np.array([len(atoms) for atoms in structures])
    assert np.max(np.abs(batched_energies - ase_energies) / sizes) <= TOLERANCE_EV_PER_ATOM
    plain = np.array([loaded_model("7net-0").energy(atoms) for atoms in structures])
    assert np.all(batched_energies < plain), "D3 (attractive) is missing from the batched energies"


@pytest.mark.slow
def test_automatic_choice_batches_sevenn_and_chgnet_only():
    assert loaded_model("7net-0").batched_path == "sevenn"
    assert loaded_model("chgnet").batched_path == "chgnet"
    assert loaded_model("emt").batched_path is None
    assert loaded_model("gfn2-xtb").batched_path is None  # takes charge and spin, which batches do not carry


def copper_structures() -> list:
    cells = [bulk("Cu", "fcc", a=3.6 + 0.02 * i) for i in range(5)]
    return [*cells, bulk("Cu", "fcc", a=3.6).repeat(2), molecule("H2O")]


def test_a_failing_batch_is_split_and_the_lone_failure_goes_to_the_ase_calculator(monkeypatch):
    structures = copper_structures()
    evaluator = EMTBatch(raise_for="Cu8")
    model = emt_with(monkeypatch, evaluator)
    expected = [model.energy(atoms) for atoms in structures]
    model.prefetch(structures, max_atoms=100)
    assert [model.energy(atoms) for atoms in structures] == pytest.approx(expected, abs=1e-12)
    assert model.evaluations["batched"] == len(structures) - 1 and model.evaluations["batch_failed"] == 1
    assert model.batched_path == "emt-batch" and max(evaluator.batch_sizes) > 1


def test_an_evaluator_that_never_works_is_switched_off(monkeypatch):
    structures = copper_structures()
    model = emt_with(monkeypatch, EMTBatch(raise_always=True))
    model.prefetch(structures, max_atoms=100)
    assert [model.energy(atoms) for atoms in structures]  # all through the ASE calculator
    assert model.evaluations["batched"] == 0 and model.batched_path is None
    assert "planted batch failure" in model.batched_error


def test_nan_in_a_batch_fails_that_structure_only(monkeypatch):
    structures = copper_structures()
    model = emt_with(monkeypatch, EMTBatch(nan_for="H2O"))
    model.prefetch(structures, max_atoms=1000)
    with pytest.raises(NonFiniteResult, match="non-finite energy"):
        model.energy(structures[-1])
    assert all(math.isfinite(model.energy(atoms)) for atoms in structures[:-1])


class NotNumbers(EMTBatch):
    """Answers with a string, or an array of two numbers, as the energy of one formula."""

    def __init__(self, formula: str, as_what: str):
        super().__init__()
        self.formula, self.as_what = formula, as_what

    def energies(self, structures) -> list:
        energies = super().energies(structures)
        wrong = {"string": str, "array": lambda e: np.array([e, e])}[self.as_what]
        return [wrong(e) if atoms.get_chemical_formula() == self.formula else e
                for e, atoms in zip(energies, structures, strict=True)]


@pytest.mark.parametrize("as_what", ["string", "array"])
def test_a_batch_answering_other_than_one_number_per_structure_leaves_that_structure_to_the_calculator(
        monkeypatch, as_what):
    """Before, the prefetch raised (float() of it) and took the whole run down."""
    structures = copper_structures()
    model = emt_with(monkeypatch, NotNumbers("H2O", as_what))
    expected = [model.energy(atoms) for atoms in structures]
    model.prefetch(structures, max_atoms=100)
    assert [model.energy(atoms) for atoms in structures] == pytest.approx(expected, abs=1e-12)
    assert model.evaluations["batched"] == len(structures) - 1 and model.evaluations["batch_failed"] == 1


def test_the_cache_key_sees_what_the_model_sees():
    water = molecule("H2O")
    moved, charged = water.copy(), water.copy()
    moved.positions[0, 0] += 1e-9
    charged.info["charge"] = 1
    keys = {structure_key(a) for a in (water, moved, charged)}
    assert len(keys) == 3 and structure_key(water.copy()) == structure_key(water)


def test_batches_respect_the_atom_budget_and_keep_order():
    assert batched.plan_batches([3, 3, 3, 10, 1, 1], max_atoms=6) == [[0, 1], [2], [3], [4, 5]]
    assert batched.plan_batches([], max_atoms=6) == []


@pytest.mark.slow
def test_every_single_point_protocol_names_exactly_the_structures_compute_asks_for(data_root):
    """``single_points`` must match ``compute``: a structure it misses is computed twice, one it adds is
    computed for nothing. Checked on the first items of every task whose protocol declares it."""

    class Recorder:
        calc = type("AnyForces", (), {"implemented_properties": ("energy", "forces")})()

        def __init__(self):
            self.asked: set[bytes] = set()
            self.notes: set[str] = set()

        def energy(self, atoms) -> float:
            self.asked.add(structure_key(atoms))
            return -float(len(atoms)) - 1e-3 * atoms.get_volume() if atoms.pbc.all() else -float(len(atoms))

        def attach(self, atoms):
            raise RuntimeError("relaxation: not a single point")

    checked = []
    for name, spec in all_tasks().items():
        protocol = plugins.load("protocol", spec.protocol)
        if not hasattr(protocol, "single_points"):
            continue
        params = spec.run_params
        for item in task_items(name, data_root, 2):
            recorder = Recorder()
            try:
                protocol.compute(item, recorder, params)
            except Exception:  # the fit or a relaxation may fail: what compute asked for is what counts
                pass
            named = {structure_key(atoms) for atoms in protocol.single_points(item, params)}
            assert named == recorder.asked, f"{name} item {item.id}: single_points differs from compute"
        checked.append(name)
    assert {"s22", "dcdft", "x23", "openff-torsions", "mamun-noble", "wbm-formation"} <= set(checked)


def run_once(tmp_path: Path, model: str, task: str, batch_atoms: int, data_root: Path | None = None,
             limit: int | None = None, model_args: list[str] | None = None, model_cache: dict | None = None,
             item_timeout: float | None = None):
    """One run through the real runner; real models come from the shared cache, planted ones need their own."""
    store = ResultStore(tmp_path / f"store-{batch_atoms}.sqlite")
    options = RunOptions(store=store, out_dir=tmp_path / f"out-{batch_atoms}", data_root=data_root,
                         data_origin="test", device="cpu", limit=limit, progress=False,
                         model_cache=MODEL_CACHE if model_cache is None else model_cache, batch_atoms=batch_atoms,
                         item_timeout=item_timeout)
    try:
        (outcome,) = run_serial(resolve_models([model], None, model_args), [all_tasks()[task]], options)
    finally:
        store.close()
    return outcome


def single_point_record(outcome) -> dict:
    import json

    return json.loads(outcome.results_file.read_text())["config"]["single_points"]


def test_nan_from_a_batch_fails_the_item_as_the_ase_path_does(monkeypatch, tmp_path):
    """The same planted NaN (on the benzene of S22) through the batched path and through the calculator:
    the same items fail with the same error, and the other items give the same metrics."""
    ase_run = run_once(tmp_path / "ase", "fake_models:faulty_emt", "s22", 0, model_args=["nan_for=C6H6"],
                       model_cache={})
    monkeypatch.setattr(loaded, "evaluator_for", lambda calc: EMTBatch(nan_for="C6H6"))
    batch_run = run_once(tmp_path / "batched", "fake_models:faulty_emt", "s22", 256, model_cache={})
    assert batch_run.failures == ase_run.failures and 0 < len(batch_run.failures) < 22
    assert batch_run.metrics == ase_run.metrics
    assert single_point_record(batch_run)["path"] == "batched"
    assert single_point_record(ase_run)["path"] == "ase"


def test_a_batch_stuck_past_the_item_timeout_is_dropped_and_its_items_compute_alone(monkeypatch, tmp_path):
    """--item-timeout covers the batches too (the limit times the items they hold): a hung batch is given up
    and every item computes through the calculator under its own limit, with the same results."""
    ase_run = run_once(tmp_path / "ase", "emt", "s22", 0, limit=3, model_cache={})
    monkeypatch.setattr(loaded, "evaluator_for", lambda calc: EMTBatch(hang_s=60))
    start = time.perf_counter()
    stuck = run_once(tmp_path / "stuck", "emt", "s22", 256, limit=3, model_cache={}, item_timeout=0.5)
    assert time.perf_counter() - start < 30
    assert stuck.n_failed == 0 and stuck.metrics == ase_run.metrics
    assert single_point_record(stuck)["path"] == "ase"


@pytest.mark.slow
@pytest.mark.parametrize(("model", "task", "limit"), [("7net-0", "s22", 6), ("chgnet", "x23", 2)])
def test_a_task_gives_the_same_metrics_with_and_without_batching(tmp_path, data_root, model, task, limit):
    outcomes = {batch: run_once(tmp_path, model, task, batch, data_root, limit) for batch in (0, 1024)}
    off, on = outcomes[0], outcomes[1024]
    assert single_point_record(off)["path"] == "ase" and single_point_record(on)["path"] == "batched"
    assert on.n_failed == off.n_failed == 0 and on.metrics.keys() == off.metrics.keys()
    for name, metric in off.metrics.items():
        # a few hundredths of a kcal/mol at most: 1e-5 eV/atom on complexes and fragments of <100 atoms
        assert on.metrics[name]["value"] == pytest.approx(metric["value"], abs=0.02), name


def parse(command, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(argv)


def test_batch_options_on_the_command_line_and_in_a_sweep_file(tmp_path):
    base = ["--model", "7net-0", "--task", "s22"]
    assert run_command.batch_atoms_from_args(parse(run_command, base)) is None  # the device's default
    assert run_command.batch_atoms_from_args(parse(run_command, [*base, "--no-batch"])) == 0
    assert run_command.batch_atoms_from_args(parse(run_command, [*base, "--batch-atoms", "300"])) == 300
    with pytest.raises(OmniBenchError, match="--no-batch"):
        run_command.batch_atoms_from_args(parse(run_command, [*base, "--no-batch", "--batch-atoms", "300"]))
    with pytest.raises(OmniBenchError, match="--batch-atoms"):
        run_command.batch_atoms_from_args(parse(run_command, [*base, "--batch-atoms", "-1"]))
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text("models: [7net-0]\nsuites: [quick]\nbatch_atoms: 4096\n")
    sweep = sweep_command.load_sweep(sweep_file)
    assert run_command.batch_atoms_from_args(parse(sweep_command, [str(sweep_file)]), sweep.batch_atoms) == 4096
    assert run_command.batch_atoms_from_args(parse(sweep_command, [str(sweep_file), "--batch-atoms", "8"]),
                                             sweep.batch_atoms) == 8
    sweep_file.write_text("models: [7net-0]\nsuites: [quick]\nbatch_atoms: -5\n")
    with pytest.raises(OmniBenchError, match="batch_atoms"):
        sweep_command.load_sweep(sweep_file)


@pytest.mark.slow
def test_dask_worker_chunks_batch_their_single_points(data_root):
    """A Dask worker's chunk (run in-process here) prefetches like the serial runner and gets its metrics."""
    from omni_bench.executors import dask as dask_executor

    (variant,) = resolve_models(["7net-0"])
    fid = fingerprint_id(fingerprint(variant))
    spec = all_tasks()["s22"]
    items = task_items("s22", data_root, limit=4)
    result = dask_executor.compute_chunk(variant, fid, "cpu", spec.protocol, spec.run_params, items, None)
    model, _ = dask_executor.worker_model(variant, fid, "cpu")
    assert [r.status for r in result.results] == ["ok"] * 4
    assert model.evaluations["batched"] == 12 and model.evaluations["ase"] == 0  # 4 dimers, 3 energies each
    without = dask_executor.compute_chunk(variant, fid, "cpu", spec.protocol, spec.run_params, items, None,
                                          batch_atoms=0)
    assert model.evaluations["ase"] == 12
    for a, b in zip(result.results, without.results, strict=True):
        assert a.values["interaction_energy"] == pytest.approx(b.values["interaction_energy"], abs=1e-4)
