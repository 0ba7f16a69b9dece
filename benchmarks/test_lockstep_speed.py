"""Lock-step relaxation with batched forces against the ASE loop: the strained cells of one MOF, one run.

Three ways to relax the same four strained cells of a MOFSimBench framework at fixed cell (LBFGS, the
anchor's DFT positions as the start of each, ``FMAX``), timed round by round so that a shared machine slows
them alike:

- ``ase_loop``: each cell on its own, ``LBFGS.run`` on the model's ASE calculator (what the one-by-one walk of
  ``eos_curve`` does);
- ``lockstep``: ``relax_together`` with batched forces, every round of the still-running cells in batches of
  the device's atom budget (models/batched.py);
- ``lockstep_one_batch``: the same with all running cells in one batch, whatever the budget (the GPU setting).

The benchmark times ``lockstep``; the other two run in the untimed ``setup``. Ratios go to ``extra_info``
and are printed. Run (single thread; on a busy machine add ``--benchmark-timer time.process_time``)::

    OMP_NUM_THREADS=1 python -m pytest benchmarks/test_lockstep_speed.py --benchmark-only -s
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pytest
from ase import optimize
from conftest import model_under_test, timed

from omni_bench import data, plugins
from omni_bench.models.lockstep import relax_together
from omni_bench.task_registry import all_tasks

REPO = Path(__file__).resolve().parent.parent
FMAX = 0.01  # eV/A: cheaper than the task's 0.001 and 0.005, with the same number of cells per round
ROUNDS = 1


def strained_cells(index: int) -> list:
    """The four non-anchor cells of the ``index``-th smallest MOFSimBench curve, as the task loads them."""
    spec = all_tasks()["mofsimbench-eos"]
    root = Path(os.environ.get("OMNI_BENCH_DATA") or REPO.parent / "shared" / "data")
    item = plugins.load("loader", spec.loader).load(data.task_files(spec, root, "benchmark"), spec.loader_params)[index]
    anchor = item.meta["reference_index"]
    return [item.structures[f"V{k}"] for k in range(len(item.structures)) if k != anchor]


def ase_loop(model, cells) -> list[int]:
    steps = []
    for atoms in cells:
        atoms = model.attach(atoms)
        opt = optimize.LBFGS(atoms, logfile=None)
        assert opt.run(fmax=FMAX, steps=1000)
        steps.append(opt.nsteps)
    return steps


def lockstep(model, cells, max_atoms: int | None = None) -> list[int]:
    relaxed = relax_together(model, cells, fmax=FMAX, max_steps=1000, batched=True, max_atoms=max_atoms)
    assert all(r.converged for r in relaxed)
    return [r.steps for r in relaxed]


@pytest.mark.parametrize("name", ["7net-0", "chgnet"])
def test_lockstep_against_the_ase_loop(benchmark, clock, name):
    model = model_under_test(name).loaded
    cells = strained_cells(0)
    assert model.batched_forces
    ase_seconds, one_batch_seconds, ase_steps = [], [], []

    def setup():
        ase_seconds.append(timed(clock, lambda: ase_steps.append(ase_loop(model, cells))))
        one_batch_seconds.append(timed(clock, lockstep, model, cells, 10**6))
        return (model, cells), {}

    benchmark.group = "lock-step relaxation"
    steps = benchmark.pedantic(lockstep, setup=setup, rounds=ROUNDS, warmup_rounds=0)
    lockstep_seconds = list(benchmark.stats.stats.data)
    ratio = lockstep_seconds[0] / ase_seconds[0]
    one_batch_ratio = one_batch_seconds[0] / ase_seconds[0]
    benchmark.extra_info.update({
        "kind": "lockstep_vs_ase", "model": model.variant.label, "n_cells": len(cells), "n_atoms": len(cells[0]),
        "fmax": FMAX, "device": model.device, "steps_lockstep": steps, "steps_ase": ase_steps[0],
        "ase_seconds": ase_seconds, "lockstep_seconds": lockstep_seconds, "one_batch_seconds": one_batch_seconds,
        "ratio_lockstep_to_ase": ratio, "ratio_one_batch_to_ase": one_batch_ratio,
    })
    print(f"\n{model.variant.label}: {len(cells)} cells of {len(cells[0])} atoms, steps {steps} (ASE {ase_steps[0]}): "
          f"lock-step/ASE loop {ratio:.2f}, all cells in one batch/ASE loop {one_batch_ratio:.2f}")


def mamun_structures() -> list:
    """The 39 structures of mamun-noble-relaxed (slabs of 12-16 atoms, adsorbate-slabs, gases), as loaded."""
    spec = all_tasks()["mamun-noble-relaxed"]
    root = Path(os.environ.get("OMNI_BENCH_DATA") or REPO.parent / "shared" / "data")
    items = plugins.load("loader", spec.loader).load(data.task_files(spec, root, "benchmark"), spec.loader_params)
    return [item.structures[item.meta["kind"]] for item in items]


@pytest.mark.parametrize("name", ["7net-0", "chgnet"])
def test_lanes_against_intra_op_threads(benchmark, name):
    """Forces of the 39 Mamun structures on all of this machine's torch threads, three ways, wall time (lanes
    are threads, so CPU time would not show them): the calculator one structure at a time (what CatBench's
    loop does), batches of the CPU budget on one lane with every thread inside each operation, and the same
    batches split into one lane per thread (models/batched.py, ``in_lanes``)."""
    import torch

    from omni_bench.models import batched

    model = model_under_test(name).loaded
    prepared = [model.attach(atoms) for atoms in mamun_structures()]
    threads = torch.get_num_threads()
    batches = batched.plan_batches([len(atoms) for atoms in prepared], batched.CPU_BATCH_ATOMS)

    def calculator_loop():
        for atoms in prepared:
            atoms.calc.reset() if hasattr(atoms.calc, "reset") else None
            atoms.get_forces()

    def batches_on(lanes: int):
        original = batched.cpu_lanes
        batched.cpu_lanes = lambda device: lanes
        try:
            for batch in batches:
                model.energies_forces([prepared[i] for i in batch])
        finally:
            batched.cpu_lanes = original

    seconds = {"calculator": [], "one_lane": []}

    def setup():
        for key, run in (("calculator", calculator_loop), ("one_lane", lambda: batches_on(1))):
            start = time.perf_counter()
            run()
            seconds[key].append(time.perf_counter() - start)
        return (threads,), {}

    benchmark.group = "lanes"
    benchmark.pedantic(batches_on, setup=setup, rounds=3, warmup_rounds=1)
    lanes_seconds = list(benchmark.stats.stats.data)
    ratios = {key: statistics.median(lanes_seconds) / statistics.median(values) for key, values in seconds.items()}
    benchmark.extra_info.update({"kind": "lanes", "model": name, "threads": threads, "structures": len(prepared),
                                 "seconds": seconds, "lanes_seconds": lanes_seconds,
                                 "ratio_lanes_to_calculator": ratios["calculator"],
                                 "ratio_lanes_to_one_lane": ratios["one_lane"]})
    print(f"\n{name}, {threads} threads: lanes/calculator loop {ratios['calculator']:.2f}, "
          f"lanes/one lane {ratios['one_lane']:.2f}")
