"""The command line as a user meets it: subprocesses, exit codes, one-line errors, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
X23_CSV = "X23_DMC/lattice_energies_dmc.csv"


def omni(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(TESTS), **(env or {})}
    return subprocess.run([sys.executable, "-m", "omni_bench.cli", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=600)


def one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.slow
def test_end_to_end_7net0_on_three_s22_dimers(tmp_path):
    done = omni("run", "--model", "7net-0", "--task", "s22", "--limit", "3", "--store", str(tmp_path / "s.db"),
                "--out", str(tmp_path / "out"), "--device", "cpu", "--threads", "1")
    assert done.returncode == 0, done.stderr
    header, rule, row = done.stdout.splitlines()[:3]
    assert header.split()[:5] == ["model", "task", "items,", "scored", "failed"]
    assert row.split()[:5] == ["7net-0", "s22", "3", "dimers", "0"]
    record = json.loads((tmp_path / "out" / "7net-0" / "s22.json").read_text())
    assert record["environment"]["torch_threads"] == 1
    mae = record["metrics"]["mae"]
    assert mae["n"] == 3 and 0 < mae["value"] < 10  # kcal/mol; 7net-0 is about 2-3 kcal/mol on S22
    assert f"mae={mae['value']:.4g} kcal/mol" in row
    assert "s22" in done.stderr and "item/s" in done.stderr  # the progress bar with its rate


@pytest.mark.parametrize("args, expected", [
    (["run", "--model", "7net-O", "--suite", "quick"], "unknown model '7net-O' (did you mean '7net-0'?)"),
    (["run", "--model", "emt", "--task", "s222"], "unknown task 's222' (did you mean 's22'?)"),
    (["run", "--model", "emt", "--suite", "quik"], "unknown suite 'quik' (did you mean 'quick'?)"),
    (["run", "--model", "7net-mf-0", "--channel", "r2scan", "--suite", "quick"], "valid channels: PBE, R2SCAN"),
    (["run", "--model", "emt"], "choose what to run with --suite or --task"),
    (["run", "--model", "emt", "--task", "s22", "--threads", "0"], "--threads must be at least 1"),
])
def test_user_errors_exit_2_with_one_line(args, expected):
    assert expected in one_line_error(omni(*args))


def data_task(tmp_path: Path, sha256: str) -> Path:
    """A task that declares one real reference file, to exercise the data layer."""
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "needs-data.yaml").write_text(f"""
name: needs-data
version: 1
description: S22 with a declared data file, for data-layer tests
suites: [test]
dataset:
  loader: ase_s22
  source: test
  files: [{{path: {X23_CSV}, sha256: {sha256}}}]
reference: {{level_of_theory: CCSD(T), citation: test}}
protocol: {{name: interaction_energy}}
units: {{interaction_energy: kcal/mol}}
metrics: [{{name: mae, quantity: interaction_energy, statistic: mae, direction: lower}}]
""")
    return folder


def test_missing_data_root_and_corrupted_file_are_one_line_errors(tmp_path, data_root):
    from omni_bench.data import sha256_file

    good = sha256_file(data_root / X23_CSV)
    tasks = data_task(tmp_path, good)
    common = ["--tasks-dir", str(tasks), "run", "--model", "emt", "--task", "needs-data", "--limit", "1",
              "--store", str(tmp_path / "s.db"), "--out", str(tmp_path / "out")]
    line = one_line_error(omni(*common, "--data-dir", str(tmp_path / "nowhere")))
    assert "data root" in line and "does not exist" in line and "OMNI_BENCH_DATA" in line
    line = one_line_error(omni(*common, env={"OMNI_BENCH_DATA": str(tmp_path / "nowhere")}))
    assert "OMNI_BENCH_DATA" in line
    corrupted = tmp_path / "data"
    (corrupted / X23_CSV).parent.mkdir(parents=True)
    (corrupted / X23_CSV).write_bytes((data_root / X23_CSV).read_bytes()[:-10])
    line = one_line_error(omni(*common, "--data-dir", str(corrupted)))
    assert "sha256" in line and "needs-data.yaml" in line and "fetch it again" in line
    assert omni(*common, "--data-dir", str(data_root)).returncode == 0


def test_sigkill_mid_run_then_resume_gives_every_item_once_and_the_same_metrics(tmp_path):
    """A run killed at an arbitrary point loses at most the item in flight and resumes to the same result."""
    def command(store: Path, out: Path) -> list[str]:
        return [sys.executable, "-m", "omni_bench.cli", "run", "--model", "fake_models:slow_emt",
                "--model-arg", "delay=0.03", "--task", "s22", "--store", str(store), "--out", str(out),
                "--no-progress"]

    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    store = tmp_path / "killed.db"
    proc = subprocess.Popen(command(store, tmp_path / "killed"), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    done_before_kill = 0
    while time.time() < deadline and done_before_kill < 5:
        time.sleep(0.05)
        if store.exists():
            try:
                with sqlite3.connect(store) as db:
                    done_before_kill = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
            except sqlite3.OperationalError:
                pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 5 <= done_before_kill < 22, "the kill must land mid-run"

    resumed = subprocess.run(command(store, tmp_path / "killed"), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    clean = subprocess.run(command(tmp_path / "clean.db", tmp_path / "clean"), env=env, capture_output=True,
                           text=True)
    assert clean.returncode == 0, clean.stderr

    with sqlite3.connect(store) as db:
        ids = [row[0] for row in db.execute("SELECT item_id FROM results WHERE task='s22'")]
    assert len(ids) == len(set(ids)) == 22
    killed = json.loads((tmp_path / "killed" / "fake_models_slow_emt" / "s22.json").read_text())
    fresh = json.loads((tmp_path / "clean" / "fake_models_slow_emt" / "s22.json").read_text())
    assert killed["timing"]["items_computed"] <= 22 - done_before_kill + 1
    assert killed["metrics"] == fresh["metrics"]
