"""Helpers the test modules share (no test module imports another): real runs through the serial executor, a
task's items, edited copies of task files, models loaded once per session, and a batched evaluator with
planted failures."""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import yaml

from omni_bench import cli, data, plugins
from omni_bench.executors.serial import run_serial
from omni_bench.items import Item
from omni_bench.models import loaded
from omni_bench.models.fingerprint import fingerprint, fingerprint_id
from omni_bench.models.loaded import LoadedModel
from omni_bench.models.registry import resolve_models
from omni_bench.run.options import RunOptions
from omni_bench.run.prepare import first_scored_units
from omni_bench.store import ResultStore
from omni_bench.task_registry import all_tasks
from omni_bench.taskspec import TaskSpec, load_task

REPO = Path(__file__).resolve().parent.parent
#: loaded models by fingerprint id, shared by every test of the session (each real model loads once)
MODEL_CACHE: dict = {}


def run_task(task: str, model: str, tmp_path: Path, data_root: Path | None = None, limit: int | None = None,
             model_args: list[str] | None = None, channels: list[str] | None = None):
    """Run one task through the real serial executor with a fresh store; models stay loaded across tests."""
    store = ResultStore(tmp_path / "store.sqlite")
    options = RunOptions(store=store, out_dir=tmp_path / "out", data_root=data_root, data_origin="test",
                         device="cpu", limit=limit, progress=False, model_cache=MODEL_CACHE)
    try:
        return run_serial(resolve_models([model], channels, model_args), [all_tasks()[task]], options)
    finally:
        store.close()


def run_into(folder: Path, models: list[str], tasks: list, *, channels: list[str] | None = None,
             model_args: list[str] | None = None, limit: int | None = None) -> Path:
    """Run tasks (bundled task names or loaded task files) through the real serial executor, writing results
    JSON and predictions CSV under ``folder/out``."""
    store = ResultStore(folder / "store.sqlite")
    options = RunOptions(store=store, out_dir=folder / "out", device="cpu", limit=limit, progress=False)
    try:
        specs = [all_tasks()[t] if isinstance(t, str) else t for t in tasks]
        # the cards name fake_models' factories: the test trusts its own code
        run_serial(resolve_models(models, channels, model_args, trust_code=True), specs, options)
    finally:
        store.close()
    return folder / "out"


def task_items(task: str, data_root: Path | None = None, limit: int | None = None) -> list[Item]:
    """A bundled task's items as its loader gives them, from checksum-verified data files; with ``limit``, the
    items a ``--limit`` run computes (those of the first scored units)."""
    spec = all_tasks()[task]
    items = plugins.load("loader", spec.loader).load(data.task_files(spec, data_root, "test"), spec.loader_params)
    return items if limit is None else first_scored_units(spec, items, limit)


def single_points_of(task: str, data_root: Path, limit: int) -> list:
    """The structures the first ``limit`` items of a task take single points of."""
    spec = all_tasks()[task]
    return [atoms for item in task_items(task, data_root, limit)
            for atoms in spec.protocol_module.single_points(item, spec.run_params)]


def edited_task(folder: Path, name: str, edit) -> TaskSpec:
    """A bundled task file as one self-contained file (its ``extends`` merged in), in ``folder``, with
    ``edit`` applied to its YAML."""
    raw = {k: copy.deepcopy(v) for k, v in all_tasks()[name].raw.items() if k != "extends"}
    edit(raw)
    folder.mkdir()
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_task(path)


TWO_CHANNEL_CARD = """\
name: emt-channels
description: EMT with one exact and one scaled channel, to test channel matrices
factory: fake_models:scaled_emt
channels:
  exact: {level_of_theory: EMT}
  scaled: {level_of_theory: EMT x 1.3}
trained_with_dispersion: false
packages: [ase]
"""


def loaded_model(name: str) -> LoadedModel:
    """A model shared by every test of the session, so each loads once."""
    (variant,) = resolve_models([name])
    fid = fingerprint_id(fingerprint(variant))
    if fid not in MODEL_CACHE:
        MODEL_CACHE[fid] = LoadedModel(variant, "cpu")
    return MODEL_CACHE[fid]


class EMTBatch:
    """A batched evaluator on top of EMT, with failures planted: it raises for any batch holding a structure
    of ``raise_for`` (or every batch), returns NaN for ``nan_for``, and sleeps ``hang_s`` before each batch."""

    name = "emt-batch"

    def __init__(self, raise_for: str = "", nan_for: str = "", raise_always: bool = False, hang_s: float = 0.0):
        self.raise_for, self.nan_for, self.raise_always, self.hang_s = raise_for, nan_for, raise_always, hang_s
        self.batch_sizes: list[int] = []

    def supports(self, atoms) -> bool:
        return True

    def energies(self, structures) -> list[float]:
        from ase.calculators.emt import EMT

        time.sleep(self.hang_s)
        formulas = [atoms.get_chemical_formula() for atoms in structures]
        if self.raise_always or self.raise_for in formulas:
            raise RuntimeError("planted batch failure (out of memory)")
        self.batch_sizes.append(len(structures))
        energies = []
        for atoms, formula in zip(structures, formulas, strict=True):
            atoms = atoms.copy()
            atoms.calc = EMT()
            energies.append(math.nan if formula == self.nan_for else atoms.get_potential_energy())
        return energies


def emt_with(monkeypatch, evaluator: EMTBatch, factory: str = "emt", model_args: list[str] | None = None):
    """A fresh LoadedModel whose calculator gets ``evaluator`` as its batched path."""
    monkeypatch.setattr(loaded, "evaluator_for", lambda calc: evaluator)
    (variant,) = resolve_models([factory], None, model_args)
    return LoadedModel(variant, "cpu")


def omni(capsys, *argv: str) -> tuple[int, str, str]:
    """``omni-bench ARGV`` in this process: exit code, stdout, stderr."""
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_emt(tmp_path: Path, capsys, *extra: str, task: str = "s22", data_root: Path | None = None
            ) -> tuple[int, str, str]:
    """EMT on one task through the command line, with a store and results folder in ``tmp_path``."""
    where = ["--data-dir", str(data_root)] if data_root else []
    return omni(capsys, "run", "-m", "emt", "-t", task, "--store", str(tmp_path / "s.db"), "--out",
                str(tmp_path / "out"), "--no-progress", *where, *extra)


def card_file(folder: Path, name: str, factory: str, **fields) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "description": "test card", "factory": factory,
                                    "level_of_theory": "EMT", "trained_with_dispersion": False, **fields}))
    return path
