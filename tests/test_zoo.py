"""The model zoo with real weights: mace-dac-1 (weights in the dac-sim wheel) and a two-head MACE built here,
both through a worker in the MACE environment (mace-torch pins e3nn 0.4.4, which sevenn's environment cannot
have), and DIEP (weights in the diep wheel) in-process.

The MACE environment is required, never skipped: .ci/run builds it with ``omni-bench env create mace``; locally
run the same (``OMNI_BENCH_ENVS`` chooses the environments folder)."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from ase.io import write
from conftest import run_task, task_items

from omni_bench import cli
from omni_bench.errors import OmniBenchError
from omni_bench.models.environments import ENVS_VARIABLE, env_python, envs_root
from omni_bench.models.loaded import LoadedModel
from omni_bench.models.registry import resolve_models
from omni_bench.runner import RunOptions, run_benchmarks
from omni_bench.store import ResultStore
from omni_bench.task_registry import all_tasks

pytestmark = pytest.mark.slow

#: energies computed directly with mace-torch's calculator, in the MACE environment, as a user would
DIRECT_MACE = """
import json, sys
import mace  # first: lets torch load e3nn 0.4.4's constants
from ase.io import read
from mace.calculators import MACECalculator
model, structures, heads = sys.argv[1], sys.argv[2], sys.argv[3:] or [None]
out = {}
for head in heads:
    calc = MACECalculator(model_paths=model, device="cpu", default_dtype="float64", **({"head": head} if head else {}))
    out[str(head)] = [calc.get_potential_energy(atoms) for atoms in read(structures, ":")]
print(json.dumps(out))
"""

#: a small MACE with two heads and random weights, saved as mace-torch saves models (the whole module)
BUILD_TWO_HEADS = """
import sys
import mace
import numpy as np
import torch
from e3nn import o3
from mace import modules
torch.manual_seed(0)
block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
model = modules.ScaleShiftMACE(
    r_max=5.0, num_bessel=8, num_polynomial_cutoff=5, max_ell=2, interaction_cls=block,
    interaction_cls_first=block, num_interactions=2, num_elements=4, hidden_irreps=o3.Irreps("8x0e + 8x1o"),
    MLP_irreps=o3.Irreps("8x0e"), atomic_energies=np.array([[-1.0, -2.0, -3.0, -4.0], [-1.5, -2.5, -3.5, -4.5]]),
    avg_num_neighbors=8.0, atomic_numbers=[1, 6, 7, 8], correlation=2, gate=torch.nn.functional.silu,
    heads=["pbe", "r2scan"], atomic_inter_scale=[1.0, 2.0], atomic_inter_shift=[0.0, 0.1])
torch.save(model, sys.argv[1])
"""


@pytest.fixture(scope="module")
def mace_python() -> Path:
    python = env_python("mace")
    if not python.is_file():
        pytest.fail(f"the MACE environment is missing (no {python}): build it with `omni-bench env create mace` "
                    f"(.ci/run does; ${ENVS_VARIABLE} chooses the folder, now {envs_root()})")
    return python


def in_mace_env(python: Path, script: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run([str(python), "-c", script, *args], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def direct_energies(python: Path, model: str, structures: list, folder: Path, heads=()) -> dict[str, list[float]]:
    path = folder / "structures.traj"
    write(path, structures)
    return json.loads(in_mace_env(python, DIRECT_MACE, model, str(path), *heads).strip().splitlines()[-1])


def stored_values(store: Path, model: str, task: str) -> dict[tuple[str, str], dict]:
    """(channel, item id) -> values of ``model``'s ok items of ``task``."""
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT channel, item_id, values_json FROM results WHERE model LIKE ? AND task=? AND "
                          "status='ok'", (f"{model}%", task)).fetchall()
    return {(channel, item): json.loads(values) for channel, item, values in rows}


def run(models: list[str], task: str, folder: Path, limit: int, cache: dict, data_root: Path | None = None,
        channels: list[str] | None = None) -> None:
    store = ResultStore(folder / "store.sqlite")
    try:
        run_benchmarks(resolve_models(models, channels), [all_tasks()[task]],
                       RunOptions(store=store, out_dir=folder / "out", data_root=data_root, device="cpu",
                                  limit=limit, progress=False, model_cache=cache))
    finally:
        store.close()


def test_mace_dac_1_runs_in_its_environment_like_a_direct_call_and_joins_7net_0_on_the_leaderboard(
        tmp_path, data_root, mace_python):
    cache: dict = {}
    run(["mace-dac-1", "7net-0"], "s22", tmp_path, 3, cache)
    run(["mace-dac-1", "7net-0"], "golddac", tmp_path, 5, cache, data_root)
    (worker_model,) = [m for m in cache.values() if m.variant.card.name == "mace-dac-1"]
    assert worker_model.batched_path == "worker:mace"  # MACE's own batches, in the worker
    checkpoint = json.loads((tmp_path / "out" / "mace-dac-1" / "s22.json").read_text())["model"]["fingerprint"][
        "checkpoint"]

    s22 = task_items("s22", None, 3)
    golddac = task_items("golddac", data_root, 5)
    structures = [a for item in s22 for a in item.structures.values()] + [i.structures["structure"] for i in golddac]
    direct = direct_energies(mace_python, checkpoint, structures, tmp_path)["None"]
    by_structure = iter(direct)
    worker_s22 = stored_values(tmp_path / "store.sqlite", "mace-dac-1", "s22")
    for item in s22:
        energies = {role: next(by_structure) for role in item.structures}
        expected = energies["complex"] - sum(e for role, e in energies.items() if role != "complex")
        assert worker_s22[("", item.id)]["interaction_energy"] == pytest.approx(expected, abs=1e-6)
    worker_golddac = stored_values(tmp_path / "store.sqlite", "mace-dac-1", "golddac")
    for item in golddac:
        assert worker_golddac[("", item.id)]["energy"] == pytest.approx(next(by_structure), abs=1e-6)

    record = json.loads((tmp_path / "out" / "mace-dac-1" / "golddac.json").read_text())
    assert record["card"]["in_domain"] == ["golddac"] and record["model"]["fingerprint"]["packages"]["e3nn"] == "0.4.4"
    stem = tmp_path / "leaderboard"
    assert cli.main(["leaderboard", "--results", str(tmp_path / "out"), "--out", str(stem), "--bootstrap", "50"]) == 0
    board = pd.read_csv(f"{stem}.csv")
    for task in ("s22", "golddac"):
        assert {"mace-dac-1", "7net-0"} <= set(board.loc[board["task"] == task, "model"])


def test_a_multi_head_mace_runs_as_channels_each_equal_to_a_direct_call_with_its_head(tmp_path, mace_python):
    model_file = tmp_path / "two-heads.model"
    in_mace_env(mace_python, BUILD_TWO_HEADS, str(model_file))
    card = tmp_path / "mace-two-heads.yaml"
    card.write_text(yaml.safe_dump({
        "name": "mace-two-heads", "description": "two-head MACE with random weights (mace-mh-1-style card)",
        "factory": "omni_bench_worker.factories:mace", "args": {"model": str(model_file), "default_dtype": "float64"},
        "channel_arg": "head", "python": str(mace_python), "trained_with_dispersion": False,
        "channels": {"pbe": {"level_of_theory": "PBE"}, "r2scan": {"level_of_theory": "r2SCAN"}},
        "packages": ["mace-torch", "e3nn", "torch"]}))
    run([str(card)], "s22", tmp_path, 2, {}, channels=["all"])
    values = stored_values(tmp_path / "store.sqlite", "mace-two-heads", "s22")
    items = task_items("s22", None, 2)
    structures = [a for item in items for a in item.structures.values()]
    direct = direct_energies(mace_python, str(model_file), structures, tmp_path, heads=("pbe", "r2scan"))
    for head in ("pbe", "r2scan"):
        by_structure = iter(direct[head])
        for item in items:
            energies = {role: next(by_structure) for role in item.structures}
            expected = energies["complex"] - sum(e for role, e in energies.items() if role != "complex")
            assert values[(head, item.id)]["interaction_energy"] == pytest.approx(expected, abs=1e-6)
    for item in items:
        assert not math.isclose(values[("pbe", item.id)]["interaction_energy"],
                                values[("r2scan", item.id)]["interaction_energy"], abs_tol=1e-3)
    wrong = resolve_models([str(card)], ["pbe"])[0]
    wrong.channel = "omat_pbe"  # a head the model does not have: mace-torch alone would take the last head
    with pytest.raises(OmniBenchError, match="no head 'omat_pbe'; its heads: pbe, r2scan"):
        LoadedModel(wrong, "cpu")


def test_diep_runs_the_r2scan_element_task_in_process(tmp_path, data_root):
    (outcome,) = run_task("matpes-elements-r2scan", "diep", tmp_path, data_root, limit=5)
    assert outcome.n_items == 5 and outcome.n_failed == 0
    assert 0 < outcome.metrics["mae"]["value"] < 1.0  # eV/atom
