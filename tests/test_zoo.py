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
from helpers import run_task, task_items

from omni_bench import cli
from omni_bench.executors.serial import run_serial
from omni_bench.models.environments import ENVS_VARIABLE, env_python, envs_root
from omni_bench.models.registry import find_card, resolve_models
from omni_bench.models.worker import PACKAGE_DIR, worker_environment
from omni_bench.run.options import RunOptions
from omni_bench.store import ResultStore
from omni_bench.task_registry import all_tasks

pytestmark = pytest.mark.slow

#: In the MACE environment, in one process (importing mace-torch costs ~7 s of CPU): build a small MACE with two
#: heads and random weights, saved as mace-torch saves models (the whole module); then energies computed directly
#: with mace-torch's calculator, as a user would, for each job (model file, heads, structures file); and whether
#: omni-bench's MACE factory refuses a head the model lacks (mace-torch alone falls back to the last head).
DIRECT_MACE = """
import json, sys
import mace  # first: lets torch load e3nn 0.4.4's constants
import numpy as np
import torch
from ase.io import read
from e3nn import o3
from mace import modules
from mace.calculators import MACECalculator

spec = json.loads(sys.argv[1])
torch.manual_seed(0)
block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
two_heads = modules.ScaleShiftMACE(
    r_max=5.0, num_bessel=8, num_polynomial_cutoff=5, max_ell=2, interaction_cls=block,
    interaction_cls_first=block, num_interactions=2, num_elements=4, hidden_irreps=o3.Irreps("8x0e + 8x1o"),
    MLP_irreps=o3.Irreps("8x0e"), atomic_energies=np.array([[-1.0, -2.0, -3.0, -4.0], [-1.5, -2.5, -3.5, -4.5]]),
    avg_num_neighbors=8.0, atomic_numbers=[1, 6, 7, 8], correlation=2, gate=torch.nn.functional.silu,
    heads=["pbe", "r2scan"], atomic_inter_scale=[1.0, 2.0], atomic_inter_shift=[0.0, 0.1])
torch.save(two_heads, spec["two_heads"])
out = {}
for name, (model, heads, structures) in spec["jobs"].items():
    for head in heads or [None]:
        calc = MACECalculator(model_paths=model, device="cpu", default_dtype="float64",
                              **({"head": head} if head else {}))
        out[f"{name}:{head}"] = [calc.get_potential_energy(atoms) for atoms in read(structures, ":")]
import importlib.util  # omni-bench's worker package, loaded by path as omni-bench loads it into workers
package = importlib.util.spec_from_file_location("omni_bench_worker", spec["worker_package"] + "/__init__.py",
                                                 submodule_search_locations=[spec["worker_package"]])
sys.modules["omni_bench_worker"] = importlib.util.module_from_spec(package)
package.loader.exec_module(sys.modules["omni_bench_worker"])
from omni_bench_worker.factories import mace as omni_bench_mace
try:
    omni_bench_mace(spec["two_heads"], head="omat_pbe")
except ValueError as exc:
    out["wrong head"] = str(exc)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def mace_python() -> Path:
    python = env_python("mace")
    if not python.is_file():
        pytest.fail(f"the MACE environment is missing (no {python}): build it with `omni-bench env create mace` "
                    f"(.ci/run does; ${ENVS_VARIABLE} chooses the folder, now {envs_root()})")
    return python


S22_ITEMS, GOLDDAC_ITEMS, TWO_HEAD_ITEMS = 3, 5, 2


def flat(items: list) -> list:
    return [atoms for item in items for atoms in item.structures.values()]


@pytest.fixture(scope="module")
def direct(tmp_path_factory, mace_python, data_root) -> dict:
    """Energies mace-torch computes directly in the MACE environment, and the two-head model file."""
    folder = tmp_path_factory.mktemp("direct")
    dac_structures = flat(task_items("s22", None, S22_ITEMS)) + flat(task_items("golddac", data_root, GOLDDAC_ITEMS))
    write(folder / "dac.traj", dac_structures)
    write(folder / "two-heads.traj", flat(task_items("s22", None, TWO_HEAD_ITEMS)))
    card = find_card("mace-dac-1")
    dac_checkpoint = card.resolve_checkpoint(worker_environment(card).package_dirs)
    spec = {"two_heads": str(folder / "two-heads.model"), "worker_package": PACKAGE_DIR,
            "jobs": {"dac": [str(dac_checkpoint), [], str(folder / "dac.traj")],
                     "two": [str(folder / "two-heads.model"), ["pbe", "r2scan"], str(folder / "two-heads.traj")]}}
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run([str(mace_python), "-c", DIRECT_MACE, json.dumps(spec)], capture_output=True, text=True,
                          env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "model": spec["two_heads"]}


def stored_values(store: Path, model: str, task: str) -> dict[tuple[str, str], dict]:
    """(channel, item id) -> values of ``model``'s ok items of ``task``."""
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT channel, item_id, values_json FROM results WHERE model LIKE ? AND task=? AND "
                          "status='ok'", (f"{model}%", task)).fetchall()
    return {(channel, item): json.loads(values) for channel, item, values in rows}


def run(models: list[str], task: str, folder: Path, limit: int, cache: dict, data_root: Path | None = None,
        channels: list[str] | None = None, trust_code: bool = False) -> None:
    store = ResultStore(folder / "store.sqlite")
    try:
        run_serial(resolve_models(models, channels, trust_code=trust_code), [all_tasks()[task]],
                       RunOptions(store=store, out_dir=folder / "out", data_root=data_root, device="cpu",
                                  limit=limit, progress=False, model_cache=cache))
    finally:
        store.close()


def check_interaction_energies(values: dict, channel: str, items: list, energies) -> None:
    """Each item's stored interaction energy against complex minus fragments from the direct energies."""
    for item in items:
        direct = {role: next(energies) for role in item.structures}
        expected = direct["complex"] - sum(e for role, e in direct.items() if role != "complex")
        assert values[(channel, item.id)]["interaction_energy"] == pytest.approx(expected, abs=1e-6)


def test_mace_dac_1_runs_in_its_environment_like_a_direct_call_and_joins_7net_0_on_the_leaderboard(
        tmp_path, data_root, direct):
    cache: dict = {}
    run(["mace-dac-1", "7net-0"], "s22", tmp_path, S22_ITEMS, cache)
    run(["mace-dac-1", "7net-0"], "golddac", tmp_path, GOLDDAC_ITEMS, cache, data_root)
    (worker_model,) = [m for m in cache.values() if m.variant.card.name == "mace-dac-1"]
    assert worker_model.batched_path == "worker:mace"  # MACE's own batches, in the worker

    energies = iter(direct["dac:None"])
    store = tmp_path / "store.sqlite"
    check_interaction_energies(stored_values(store, "mace-dac-1", "s22"), "", task_items("s22", None, S22_ITEMS),
                               energies)
    golddac = stored_values(store, "mace-dac-1", "golddac")
    for item in task_items("golddac", data_root, GOLDDAC_ITEMS):
        assert golddac[("", item.id)]["energy"] == pytest.approx(next(energies), abs=1e-6)

    record = json.loads((tmp_path / "out" / "mace-dac-1" / "golddac.json").read_text())
    assert record["card"]["in_domain"] == ["golddac"] and record["model"]["fingerprint"]["packages"]["e3nn"] == "0.4.4"
    stem = tmp_path / "leaderboard"
    assert cli.main(["leaderboard", "--results", str(tmp_path / "out"), "--out", str(stem), "--bootstrap", "50"]) == 0
    board = pd.read_csv(f"{stem}.csv")
    for task in ("s22", "golddac"):
        assert {"mace-dac-1", "7net-0"} <= set(board.loc[board["task"] == task, "model"])


def test_a_multi_head_mace_runs_as_channels_each_equal_to_a_direct_call_with_its_head(tmp_path, mace_python,
                                                                                        direct):
    card = tmp_path / "mace-two-heads.yaml"
    card.write_text(yaml.safe_dump({
        "name": "mace-two-heads", "description": "two-head MACE with random weights (mace-mh-1-style card)",
        "factory": "omni_bench_worker.factories:mace", "args": {"model": direct["model"], "default_dtype": "float64"},
        "channel_arg": "head", "python": str(mace_python), "trained_with_dispersion": False,
        "channels": {"pbe": {"level_of_theory": "PBE"}, "r2scan": {"level_of_theory": "r2SCAN"}},
        "packages": ["mace-torch", "e3nn", "torch"]}))
    run([str(card)], "s22", tmp_path, TWO_HEAD_ITEMS, {}, channels=["all"], trust_code=True)  # names python:
    values = stored_values(tmp_path / "store.sqlite", "mace-two-heads", "s22")
    items = task_items("s22", None, TWO_HEAD_ITEMS)
    for head in ("pbe", "r2scan"):
        check_interaction_energies(values, head, items, iter(direct[f"two:{head}"]))
    for item in items:
        assert not math.isclose(values[("pbe", item.id)]["interaction_energy"],
                                values[("r2scan", item.id)]["interaction_energy"], abs_tol=1e-3)
    assert direct["wrong head"] == "the model has no head 'omat_pbe'; its heads: pbe, r2scan"


def test_diep_runs_the_r2scan_element_task_in_process(tmp_path, data_root):
    (outcome,) = run_task("matpes-elements-r2scan", "diep", tmp_path, data_root, limit=5)
    assert outcome.n_items == 5 and outcome.n_failed == 0
    assert 0 < outcome.metrics["mae"]["value"] < 1.0  # eV/atom


def test_offline_a_zoo_model_that_downloads_its_weights_says_from_where_and_how_to_use_a_file(
        tmp_path, mace_python, monkeypatch, capsys):
    """mace-mh-1's weights come from mace-torch's download; with no route out (an unroutable proxy) the run
    ends in one line with the model, the URL and the --model-arg that takes a local file."""
    for variable in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))  # mace-torch caches in ~/.cache/mace
    assert cli.main(["run", "--model", "mace-mh-1", "--task", "s22", "--limit", "1", "--no-progress",
                     "--store", str(tmp_path / "store.sqlite"), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("omni-bench: error: model mace-mh-1@omat_pbe:")
    assert "https://github.com/ACEsuit/mace-foundations/releases/download/mace_mh_1/mace-mh-1.model" in error
    assert "--model-arg model=/path/to/mace-mh-1.model" in error
