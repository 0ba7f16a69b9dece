"""How much the runner adds to the work it runs: s22 (22 dimers, 3 single points each) through
``run_serial`` (the serial executor) against the same structures through a bare loop of calculator calls.

Limits (issue 5): with 7net-0 the runner takes at most 5% longer than the bare loop; with a calculator that
does no work it adds at most 2 ms per item. Bare loop and runner alternate round by round (the bare loop
runs in the untimed ``setup`` of each runner round), so that a machine shared with other jobs slows both
alike, and the limits are checked on the median of the per-round pairs. The pairs are saved in
``extra_info`` for scripts/speed_report.py. Also measured, to explain the overhead: the runner on one item
(fixed cost per task), the runner with its progress bar, one store commit, and the model fingerprint.
"""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from ase.calculators.calculator import Calculator, all_changes
from conftest import RunnerRounds, bare_loop, model_under_test, timed

from omni_bench.models.fingerprint import fingerprint

ZERO = "test_harness_overhead:zero_energy"
GROUP = "s22 harness overhead"
#: (rounds, warm-up rounds): a round of 7net-0 on s22 takes seconds, one of the zero calculator milliseconds
ROUNDS = {ZERO: (15, 2), "7net-0": (3, 1)}
MAX_MS_PER_ITEM_TRIVIAL = 2.0
MAX_RATIO_7NET0 = 1.05


class ZeroEnergy(Calculator):
    """A calculator that does no work: energy and forces are zero. What remains is the harness."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results = {"energy": 0.0, "free_energy": 0.0, "forces": np.zeros((len(self.atoms), 3))}


def zero_energy(device: str = "cpu") -> Calculator:
    return ZeroEnergy()


@pytest.mark.parametrize("name", [ZERO, "7net-0"], ids=["zero", "7net-0"])
def test_runner_against_bare_loop(benchmark, clock, tmp_path, s22_task, s22_items, name):
    model = model_under_test(name)
    rounds, warmup = ROUNDS[name]
    runner = RunnerRounds(tmp_path, model, s22_task)
    bare_seconds: list[float] = []

    def setup():
        bare_seconds.append(timed(clock, bare_loop, model, s22_items))
        return (runner.options(),), {}

    benchmark.group = GROUP
    try:
        (outcome,) = benchmark.pedantic(runner.run, setup=setup, rounds=rounds, warmup_rounds=warmup)
    finally:
        runner.close()
    assert outcome.n_items == len(s22_items) == 22 and outcome.n_failed == 0 and outcome.computed == 22

    runner_seconds = list(benchmark.stats.stats.data)
    bare_seconds = bare_seconds[warmup:]
    ratios = [r / b for r, b in zip(runner_seconds, bare_seconds, strict=True)]
    ms_per_item = [1e3 * (r - b) / len(s22_items) for r, b in zip(runner_seconds, bare_seconds, strict=True)]
    ratio, overhead = statistics.median(ratios), statistics.median(ms_per_item)
    benchmark.extra_info.update({
        "kind": "runner_vs_bare", "model": model.variant.label, "items": len(s22_items),
        "single_points": sum(len(i.structures) for i in s22_items), "bare_seconds": bare_seconds,
        "runner_seconds": runner_seconds, "median_ratio": ratio, "median_overhead_ms_per_item": overhead,
    })
    if name == ZERO:
        assert overhead <= MAX_MS_PER_ITEM_TRIVIAL, f"runner adds {overhead:.2f} ms per item to a no-op calculator"
    else:
        assert ratio <= MAX_RATIO_7NET0, f"runner takes {ratio:.3f}x the bare loop with 7net-0"


@pytest.mark.parametrize("progress", [False, True], ids=["no-progress", "progress-bar"])
@pytest.mark.parametrize("limit", [1, None], ids=["one-item", "all-items"])
def test_runner_fixed_and_per_item_cost(benchmark, tmp_path, s22_task, limit, progress):
    """With the zero calculator: one item gives the fixed cost of a task run, all 22 the per-item cost;
    with and without the progress bar."""
    model = model_under_test(ZERO)
    runner = RunnerRounds(tmp_path, model, s22_task, progress=progress, limit=limit)
    benchmark.group = GROUP
    try:
        (outcome,) = benchmark.pedantic(runner.run, setup=lambda: ((runner.options(),), {}), rounds=15,
                                        warmup_rounds=2)
    finally:
        runner.close()
    assert outcome.computed == (limit or 22)
    benchmark.extra_info.update({"kind": "runner", "model": model.variant.label, "items": limit or 22,
                                 "progress": progress})


def test_store_commit(benchmark, tmp_path):
    """One ``ResultStore.put``: the SQLite commit the runner does after every item."""
    from omni_bench.store import ResultStore, StoreKey

    store = ResultStore(tmp_path / "store.sqlite")
    values = {"interaction_energy": -0.123}
    benchmark.group = GROUP
    try:
        benchmark.pedantic(store.put, args=(StoreKey("fp", "", "s22", 1), "zero", "item", "ok"),
                           kwargs={"values": values, "wall_s": 0.01}, rounds=300, warmup_rounds=10)
    finally:
        store.close()
    benchmark.extra_info.update({"kind": "store_put"})


def test_fingerprint_7net0(benchmark):
    """The model fingerprint (hashes the checkpoint), computed once per model and run."""
    model = model_under_test("7net-0")
    benchmark.group = GROUP
    result = benchmark.pedantic(fingerprint, args=(model.variant,), rounds=5, warmup_rounds=1)
    assert result["checkpoint_sha256"]
    benchmark.extra_info.update({"kind": "fingerprint", "model": model.variant.label})
