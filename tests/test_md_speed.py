"""md-speed: MD timings on a size ladder, stopped cleanly by a time budget or out of memory.

The fast tests run the real task file with a tiny ladder of fcc Cu cells (EMT has no Si parameters),
written to a temporary task folder; one slow test runs 7net-0 on the 64-atom Si cell.
"""

from __future__ import annotations

import json
import math
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from helpers import REPO, run_task

from omni_bench.protocols.md_speed import energy_drift, is_out_of_memory
from omni_bench.reporting.speed_plot import md_speed_frame, plot_md_speed

EMT_CU = {"element": "Cu", "crystalstructure": "fcc", "lattice_constant": 3.61}
QUICK = {"warmup_steps": 2, "steps": 4, "repeats": 2, "max_seconds_per_size": None}


class _EmtWithFaults(Calculator):
    """EMT that sleeps per atom (a model whose cost grows with size) or raises from a given size on."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, seconds_per_atom: float = 0.0, fail_from_atoms: int = 0, message: str = ""):
        super().__init__()
        self.inner, self.seconds_per_atom = EMT(), seconds_per_atom
        self.fail_from_atoms, self.message = fail_from_atoms, message

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if self.fail_from_atoms and len(self.atoms) >= self.fail_from_atoms:
            raise RuntimeError(self.message)
        time.sleep(self.seconds_per_atom * len(self.atoms))
        self.inner.calculate(self.atoms, properties, system_changes)
        self.results = dict(self.inner.results)


def sleepy_emt(seconds_per_atom: float) -> Calculator:
    return _EmtWithFaults(seconds_per_atom=seconds_per_atom)


def failing_emt(fail_from_atoms: int, message: str) -> Calculator:
    return _EmtWithFaults(fail_from_atoms=fail_from_atoms, message=message)


def write_speed_task(folder: Path, name: str, loader_params: dict, protocol_params: dict) -> str:
    """The shipped md-speed task file with another name, ladder and protocol settings."""
    raw = yaml.safe_load((REPO / "tasks" / "md-speed.yaml").read_text())
    raw["name"] = name
    raw["dataset"]["params"] = loader_params
    raw["counts"] = {**raw["counts"], "items": len(loader_params["repeats"])}  # one item per size
    raw["protocol"]["params"] = {**raw["protocol"]["params"], **protocol_params}
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return name


def run_ladder(tmp_path: Path, monkeypatch, model: str, repeats: list[int], protocol_params: dict,
               model_args: list[str] | None = None, cell: dict | None = None):
    folder = tmp_path / "tasks"
    folder.mkdir()
    monkeypatch.setenv("OMNI_BENCH_TASKS", str(folder))
    name = write_speed_task(folder, "md-speed-test", {"repeats": repeats, **(EMT_CU if cell is None else cell)},
                            {**QUICK, **protocol_params})
    (outcome,) = run_task(name, model, tmp_path, model_args=model_args)
    return outcome


def messages(outcome) -> dict[str, str]:
    return {f["item_id"]: f["error"] for f in outcome.failures}


@pytest.fixture(scope="module")
def emt_ladder(tmp_path_factory):
    """EMT on 4- and 32-atom Cu cells, run once for the tests that read its results."""
    tmp_path = tmp_path_factory.mktemp("emt_ladder")
    with pytest.MonkeyPatch.context() as monkeypatch:
        outcome = run_ladder(tmp_path, monkeypatch, "emt", [1, 2], {})
    return outcome, tmp_path


def test_emt_ladder_records_consistent_timings_in_their_units(emt_ladder):
    outcome, _ = emt_ladder
    assert outcome.n_items == 2 and outcome.n_failed == 0, outcome.failures
    frame = md_speed_frame([outcome.results_file], task="md-speed-test")
    values = frame.pivot(index="n_atoms", columns="quantity", values="value")
    units = dict(zip(frame["quantity"], frame["unit"], strict=True))
    assert units["ns_per_day"] == "ns/day" and units["us_per_atom_step"] == "us/step/atom"
    assert units["peak_memory"] == "MB" and units["energy_drift"] == "meV/atom"
    assert list(values.index) == [4, 32] and list(values["n_atoms"]) == [4.0, 32.0]
    for n_atoms, row in values.iterrows():
        assert row["steps_per_second"] > 0
        # 1 fs per step: ns/day = steps/s * 1e-6 ns * 86400 s/day; us/atom/step = 1e6 / (steps/s * atoms)
        assert row["ns_per_day"] == pytest.approx(row["steps_per_second"] * 1e-6 * 86400, rel=1e-9)
        assert row["us_per_atom_step"] == pytest.approx(1e6 / (row["steps_per_second"] * n_atoms), rel=1e-9)
        assert 10 < row["peak_memory"] < 100_000  # the whole Python process, in MB
        assert math.isfinite(row["energy_drift"]) and 0 <= row["energy_drift"] < 1.0  # EMT Cu at 300 K, 8 fs
        assert row["load_average"] >= 0
    assert outcome.metrics["largest_size"]["value"] == 32
    assert outcome.metrics["ns_per_day[n_atoms=4]"]["unit"] == "ns/day"
    assert outcome.metrics["ns_per_day[n_atoms=32]"]["value"] == pytest.approx(values.loc[32, "ns_per_day"])


def test_results_are_stored_per_device_and_host(emt_ladder):
    outcome, tmp_path = emt_ladder
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        keys = {row[0] for row in db.execute("SELECT DISTINCT fingerprint FROM results WHERE task='md-speed-test'")}
    assert len(keys) == 1
    (key,) = keys
    assert key.endswith(f"/cpu@{socket.gethostname()}")
    record = json.loads(outcome.results_file.read_text())
    assert record["environment"]["device"] == "cpu" and record["environment"]["device_name"]
    assert key.startswith(record["model"]["fingerprint_id"])


def test_time_budget_stops_the_ladder_and_skips_larger_sizes(tmp_path, monkeypatch):
    # 1 ms of sleep per atom and force call: 32 atoms take ~0.05 s per step, 864 atoms at least 0.86 s, so the
    # 6 timed steps of the 864-atom cell are estimated at >= 5 s, over the 2 s budget, whatever the machine.
    outcome = run_ladder(tmp_path, monkeypatch, "test_md_speed:sleepy_emt", [2, 6, 7],
                         {"steps": 3, "repeats": 2, "max_seconds_per_size": 2},
                         model_args=["seconds_per_atom=0.001"])
    failed = messages(outcome)
    assert set(failed) == {"Cu864", "Cu1372"}
    assert failed["Cu864"].startswith("StopTask: 864 atoms: about") and "max_seconds_per_size=2" in failed["Cu864"]
    assert failed["Cu1372"].startswith("skipped: 864 atoms")
    assert outcome.metrics["largest_size"]["value"] == 32
    assert outcome.metrics["largest_size"]["n_failed"] == 2


def test_out_of_memory_stops_the_ladder(tmp_path, monkeypatch):
    outcome = run_ladder(tmp_path, monkeypatch, "test_md_speed:failing_emt", [1, 5, 6], {},
                         model_args=["fail_from_atoms=100", "message=CUDA out of memory. Tried to allocate 2.00 GiB"])
    failed = messages(outcome)
    assert set(failed) == {"Cu500", "Cu864"}
    assert failed["Cu500"].startswith("StopTask: out of memory at 500 atoms")
    assert failed["Cu864"].startswith("skipped: out of memory at 500 atoms")
    assert outcome.metrics["largest_size"]["value"] == 4


def test_other_errors_fail_one_size_without_stopping_the_ladder(tmp_path, monkeypatch):
    outcome = run_ladder(tmp_path, monkeypatch, "test_md_speed:failing_emt", [1, 2, 3], {},
                         model_args=["fail_from_atoms=30", "message=planted failure"])
    failed = messages(outcome)
    assert failed == {"Cu32": "RuntimeError: planted failure", "Cu108": "RuntimeError: planted failure"}


def test_out_of_memory_is_recognised_from_torch_and_python_errors():
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"))
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 GB"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_energy_drift_is_the_fitted_change_per_atom_and_rejects_explosions():
    # 64 atoms, total energy rising 0.064 eV per step for 2 steps: 0.002 eV/atom over the run
    assert energy_drift([-10.0, -9.936, -9.872], 64) == pytest.approx(2.0)
    noisy = -10.0 + 0.064 * np.arange(11) + 0.01 * np.array([1, -1] * 5 + [1])
    assert energy_drift(list(noisy), 64) == pytest.approx(10.0, rel=0.02)
    with pytest.raises(ValueError, match="exploded"):
        energy_drift([-10.0, float("nan")], 64)


def test_plot_of_ns_per_day_is_written_as_png(emt_ladder, tmp_path):
    outcome, _ = emt_ladder
    frame = md_speed_frame([outcome.results_file.parent.parent], task="md-speed-test")
    png = plot_md_speed(frame, tmp_path / "plots" / "speed.png")
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
    with pytest.raises(ValueError, match="no successful"):
        plot_md_speed(frame.iloc[0:0], tmp_path / "empty.png")


def test_speed_report_tabulates_the_results_files(emt_ladder, tmp_path):
    outcome, _ = emt_ladder
    report = tmp_path / "speed.md"
    subprocess.run([sys.executable, str(REPO / "scripts" / "speed_report.py"), "--task", "md-speed-test",
                    "--results", str(outcome.results_file.parent.parent), "--out", str(report),
                    "--plot", str(tmp_path / "speed.png")], check=True, capture_output=True, text=True)
    text = report.read_text()
    frame = md_speed_frame([outcome.results_file], task="md-speed-test")
    ns_per_day = frame[(frame["quantity"] == "ns_per_day") & (frame["n_atoms"] == 32)]["value"].iloc[0]
    assert "| emt | cpu |" in text and f"{ns_per_day:.3g}" in text
    assert (tmp_path / "speed.png").is_file()


@pytest.mark.slow
def test_7net0_runs_md_on_the_64_atom_cell(tmp_path, monkeypatch):
    si = {"element": "Si", "crystalstructure": "diamond", "lattice_constant": 5.43}
    outcome = run_ladder(tmp_path, monkeypatch, "7net-0", [2], {"warmup_steps": 1, "steps": 2, "repeats": 1},
                         cell=si)
    assert outcome.n_failed == 0, outcome.failures
    frame = md_speed_frame([outcome.results_file], task="md-speed-test")
    values = dict(zip(frame["quantity"], frame["value"], strict=True))
    assert values["n_atoms"] == 64 and values["ns_per_day"] > 0
    assert 0 <= values["energy_drift"] < 5.0  # 2 fs of NVE at 300 K: a sane model barely drifts
    assert values["peak_memory"] > 100  # torch and the model are resident
    assert values["torch_threads"] >= 1
    assert outcome.metrics["largest_size"]["value"] == 64
