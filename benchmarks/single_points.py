"""The structures whose single points the benchmarks and the GPU pack time, and the two ways of computing their
energies that they compare: one by one through the ASE calculator, or prefetched in batches."""

from __future__ import annotations

import os
from pathlib import Path

from omni_bench import data, plugins
from omni_bench.models.batched import default_batch_atoms
from omni_bench.models.loaded import LoadedModel
from omni_bench.task_registry import all_tasks

REPO = Path(__file__).resolve().parent.parent


def single_points(task: str, limit: int | None) -> list:
    """The structures the run core would prefetch for the first ``limit`` items of ``task``."""
    spec = all_tasks()[task]
    root = Path(os.environ.get("OMNI_BENCH_DATA") or REPO.parent / "shared" / "data")
    files = data.task_files(spec, root, "benchmark") if spec.files else {}
    items = plugins.load("loader", spec.loader).load(files, spec.loader_params)[:limit]
    return [atoms for item in items for atoms in spec.protocol_module.single_points(item, spec.run_params)]


def ase_loop(model: LoadedModel, structures: list) -> float:
    model.prefetch([], 0)
    return sum(model.energy(atoms) for atoms in structures)


def batched_loop(model: LoadedModel, structures: list, batch_atoms: int | None = None) -> float:
    model.prefetch(structures, batch_atoms or default_batch_atoms(model.device))
    total = sum(model.energy(atoms) for atoms in structures)
    model.prefetch([], 0)
    return total
