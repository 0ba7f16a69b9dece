"""What a worker process costs per single point (issue 14): the same model in this process and in a worker
(``--isolate``: this interpreter, so both compute the very same numbers), the same structures, timed round by
round so that a shared machine slows both alike. Targets: at most 1 ms per single point with a trivial model,
and at most 5% with 7net-0.

- ``per_structure``: ``LoadedModel.energy`` per structure, one request to the worker each (the ASE path:
  relaxations, and models without batches): the worst case for a worker;
- ``runner_path``: what the runner does for single points by default (prefetch, then ``energy``): one request
  per batch.

The trivial model returns a number stored on the structure (``factories:tabulated``), so that what is timed is
the overhead. Two clocks: wall time (``time.perf_counter``), and CPU time of both processes (this one's
``process_time`` plus the worker's run time from ``/proc/PID/schedstat``, in ns). On an idle machine the
wall-time overhead is about the CPU-time overhead; on a loaded one it also holds the waits for a free core
at every hand-over between the two processes, which no code here can remove, so the 1 ms target is checked
on CPU time and both are reported. 7net-0's ratio is wall time (its work dwarfs the hand-overs). Medians of
the per-round figures go to ``extra_info`` and are printed. Run (single thread, Linux)::

    OMP_NUM_THREADS=1 python -m pytest benchmarks/test_worker_overhead.py --benchmark-only -s
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path

import pytest
from conftest import model_under_test
from single_points import ase_loop, batched_loop, single_points

from omni_bench.models.loaded import LoadedModel

GROUP = "worker overhead"
ROUNDS, WARMUP_ROUNDS = 5, 1
#: model name -> (what the runner is told, copies of S22's 66 single points: distinct, slightly moved structures)
MODELS = {"trivial": ("omni_bench.models.factories:tabulated", 30), "7net-0": ("7net-0", 1)}
TABULATED_KEY = "stored energy"


def structures_for(name: str) -> list:
    copies = []
    for copy in range(MODELS[name][1]):
        for atoms in single_points("s22", None):
            atoms = atoms.copy()
            atoms.positions += 1e-6 * copy  # a distinct structure each, or the batched path would compute it once
            atoms.info[TABULATED_KEY] = -1.0
            copies.append(atoms)
    return copies


def models(name: str) -> tuple[LoadedModel, LoadedModel]:
    spec = MODELS[name][0]
    if name == "trivial":
        from omni_bench.models.registry import resolve_models

        (variant,) = resolve_models([spec], model_args=[f"key={TABULATED_KEY}"])
        here = LoadedModel(variant, "cpu")
    else:
        variant, here = model_under_test(spec).variant, model_under_test(spec).loaded
    return here, LoadedModel(dataclasses.replace(variant, isolate=True), "cpu")


def cpu_seconds(worker: LoadedModel) -> float:
    """CPU time of this process and of the worker so far."""
    pid = worker.base_calc.process.process.pid
    return time.process_time() + int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) * 1e-9


def clocked(function, model: LoadedModel, structures: list, worker: LoadedModel) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), cpu_seconds(worker)
    function(model, structures)
    return time.perf_counter() - wall, cpu_seconds(worker) - cpu


@pytest.mark.parametrize("path", ["per_structure", "runner_path"])
@pytest.mark.parametrize("name", list(MODELS))
def test_worker_against_in_process(benchmark, name, path):
    here, worker = models(name)
    structures = structures_for(name)
    loop = ase_loop if path == "per_structure" else batched_loop
    assert loop(here, structures) == pytest.approx(loop(worker, structures), abs=1e-9)  # same numbers
    here_times: list[tuple[float, float]] = []
    worker_times: list[tuple[float, float]] = []

    def setup():
        here_times.append(clocked(loop, here, structures, worker))
        return (), {}

    benchmark.group = GROUP
    benchmark.pedantic(lambda: worker_times.append(clocked(loop, worker, structures, worker)), setup=setup,
                       rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS)
    pairs = list(zip(here_times[WARMUP_ROUNDS:], worker_times[WARMUP_ROUNDS:], strict=True))
    n = len(structures)
    figures = {
        "single_points": n, "worker": worker.batched_path,
        "in_process_s": statistics.median(h[0] for h, _ in pairs),
        "worker_s": statistics.median(w[0] for _, w in pairs),
        "ratio": statistics.median(w[0] / h[0] for h, w in pairs),
        "wall_overhead_ms": statistics.median((w[0] - h[0]) / n * 1e3 for h, w in pairs),
        "cpu_overhead_ms": statistics.median((w[1] - h[1]) / n * 1e3 for h, w in pairs),
    }
    benchmark.extra_info.update(figures)
    print(f"\n{name} {path}: {n} single points, in-process {figures['in_process_s']:.3f} s, worker "
          f"{figures['worker_s']:.3f} s (ratio {figures['ratio']:.3f}); overhead per single point: wall "
          f"{figures['wall_overhead_ms']:.3f} ms, CPU {figures['cpu_overhead_ms']:.3f} ms")
    if name == "trivial":
        assert figures["cpu_overhead_ms"] <= 1.0
    elif path == "runner_path":
        assert figures["ratio"] <= 1.05
