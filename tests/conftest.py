"""Shared fixtures: the reference data root, a throw-away store, and real models loaded once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from omni_bench import data, plugins
from omni_bench.items import Item
from omni_bench.models.registry import resolve_models
from omni_bench.runner import RunOptions, run_benchmarks
from omni_bench.store import ResultStore
from omni_bench.task_registry import all_tasks
from omni_bench.taskspec import TaskSpec, load_task

REPO = Path(__file__).resolve().parent.parent
_MODEL_CACHE: dict = {}


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared reference data (CI exports OMNI_BENCH_DATA=../shared/data). Missing data is an error."""
    root = Path(os.environ.get("OMNI_BENCH_DATA") or REPO.parent / "shared" / "data")
    if not (root / "MANIFEST.md").is_file():
        pytest.fail(f"reference data not found at {root}: set OMNI_BENCH_DATA")
    return root


def run_task(task: str, model: str, tmp_path: Path, data_root: Path | None = None, limit: int | None = None,
             model_args: list[str] | None = None, channels: list[str] | None = None):
    """Run one task through the real runner with a fresh store; models stay loaded across tests."""
    store = ResultStore(tmp_path / "store.sqlite")
    options = RunOptions(store=store, out_dir=tmp_path / "out", data_root=data_root, data_origin="test",
                         device="cpu", limit=limit, progress=False, model_cache=_MODEL_CACHE)
    try:
        return run_benchmarks(resolve_models([model], channels, model_args), [all_tasks()[task]], options)
    finally:
        store.close()


def task_items(task: str, data_root: Path | None = None, limit: int | None = None) -> list[Item]:
    """A bundled task's items as its loader gives them, from checksum-verified data files."""
    spec = all_tasks()[task]
    items = plugins.load("loader", spec.loader).load(data.task_files(spec, data_root, "test"), spec.loader_params)
    return items[:limit]


def edited_task(folder: Path, name: str, edit) -> TaskSpec:
    """A copy of a bundled task file, in ``folder``, with ``edit`` applied to its parsed YAML."""
    import yaml

    raw = yaml.safe_load(all_tasks()[name].path.read_text())
    edit(raw)
    folder.mkdir()
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_task(path)
