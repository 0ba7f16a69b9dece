"""Shared pieces of the harness-overhead benchmarks: the s22 task, models loaded once, and the two ways of
computing the same 66 single points (through the runner, and through a bare loop of calculator calls).

Run: ``python -m pytest benchmarks/ --benchmark-only --benchmark-json=reports/speed/benchmark.json``; on a machine
shared with other jobs add ``--benchmark-timer time.process_time`` (CPU time of this process, which other jobs
inflate far less than wall time; it leaves out waits for the disk).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from pytest_benchmark.utils import load_timer

from omni_bench import plugins
from omni_bench.executors.serial import run_serial
from omni_bench.items import Item
from omni_bench.models.fingerprint import fingerprint, fingerprint_id
from omni_bench.models.loaded import LoadedModel
from omni_bench.models.registry import ModelVariant, resolve_models
from omni_bench.run.options import RunOptions
from omni_bench.run.summary import TaskOutcome
from omni_bench.store import ResultStore
from omni_bench.taskspec import TaskSpec, load_task

REPO = Path(__file__).resolve().parent.parent
_LOADED: dict[str, ModelUnderTest] = {}


@dataclass
class ModelUnderTest:
    name: str
    variant: ModelVariant
    fingerprint_id: str
    loaded: LoadedModel


def model_under_test(name: str) -> ModelUnderTest:
    """A model built once per session and shared by the runner (through its model cache) and the bare loop,
    so that both call the very same calculator object."""
    if name not in _LOADED:
        (variant,) = resolve_models([name])
        _LOADED[name] = ModelUnderTest(name, variant, fingerprint_id(fingerprint(variant)),
                                       LoadedModel(variant, "cpu"))
    return _LOADED[name]


@pytest.fixture(scope="session")
def clock(request) -> Callable[[], float]:
    """The timer pytest-benchmark uses (``--benchmark-timer``), so that hand-timed code is comparable."""
    return load_timer(request.config.getoption("benchmark_timer")).target


@pytest.fixture(scope="session")
def s22_task() -> TaskSpec:
    return load_task(REPO / "tasks" / "s22.yaml")


@pytest.fixture(scope="session")
def s22_items(s22_task) -> list[Item]:
    return plugins.load("loader", s22_task.loader).load({}, s22_task.loader_params)


def bare_loop(model: ModelUnderTest, items: list[Item]) -> float:
    """What the runner's work costs without the runner: every structure of every item, one calculator call
    each, on a copy (as the runner's adapter copies too). Returns the sum of energies so nothing is elided."""
    total = 0.0
    for item in items:
        for atoms in item.structures.values():
            atoms = atoms.copy()
            atoms.calc = model.loaded.calc
            total += atoms.get_potential_energy()
    return total


class RunnerRounds:
    """Fresh store and output folder for every round, so that every round computes all items."""

    def __init__(self, tmp_path: Path, model: ModelUnderTest, task: TaskSpec, progress: bool = False,
                 limit: int | None = None):
        self.tmp_path, self.model, self.task, self.progress, self.limit = tmp_path, model, task, progress, limit
        self.counter = itertools.count()
        self.stores: list[ResultStore] = []

    def options(self) -> RunOptions:
        folder = self.tmp_path / f"round{next(self.counter)}"
        store = ResultStore(folder / "store.sqlite")
        self.stores.append(store)
        return RunOptions(store=store, out_dir=folder / "out", device="cpu", limit=self.limit,
                          progress=self.progress, model_cache={self.model.fingerprint_id: self.model.loaded},
                          batch_atoms=0)  # the bare loop calls the calculator per structure: so does the runner here

    def run(self, options: RunOptions) -> list[TaskOutcome]:
        return run_serial([self.model.variant], [self.task], options)

    def close(self) -> None:
        for store in self.stores:
            store.close()


def timed(clock: Callable[[], float], function, *args) -> float:
    start = clock()
    function(*args)
    return clock() - start
