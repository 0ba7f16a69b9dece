"""The command line as a user meets it: exit codes, one-line errors, what the tables and listings show, and
(in a real process) the entry point, the progress bar, and kill and resume."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import REPO, omni, run_emt

from omni_bench import cli
from omni_bench.commands.run import describe_channels, format_table
from omni_bench.models.registry import resolve_models
from omni_bench.run.summary import TaskOutcome

TESTS = Path(__file__).resolve().parent
X23_CSV = "X23_DMC/lattice_energies_dmc.csv"


def omni_process(*args: str) -> subprocess.CompletedProcess:
    """``python -m omni_bench.cli ARGS`` in a process of its own, as a user's shell starts it."""
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    return subprocess.run([sys.executable, "-m", "omni_bench.cli", *args], capture_output=True, text=True,
                          env=env, timeout=600)


def one_line_error(capsys, *argv: str) -> str:
    """``omni-bench ARGV`` in this process must exit 2 with exactly one line on stderr, and no traceback."""
    code, _, err = omni(capsys, *argv)
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.slow
def test_end_to_end_7net0_on_three_s22_dimers(tmp_path):
    done = omni_process("run", "--model", "7net-0", "--task", "s22", "--limit", "3", "--store", str(tmp_path / "s.db"),
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
    (["run", "--model", "emt", "--task", "s22", "--device", "quantum"], "--device 'quantum' is not a device"),
])
def test_user_errors_exit_2_with_one_line(args, expected, capsys):
    assert expected in one_line_error(capsys, *args)


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


def test_missing_data_root_and_corrupted_file_are_one_line_errors(tmp_path, data_root, capsys, monkeypatch):
    from omni_bench.data import sha256_file

    good = sha256_file(data_root / X23_CSV)
    tasks = data_task(tmp_path, good)
    common = ["--tasks-dir", str(tasks), "run", "--model", "emt", "--task", "needs-data", "--limit", "1",
              "--store", str(tmp_path / "s.db"), "--out", str(tmp_path / "out")]
    line = one_line_error(capsys, *common, "--data-dir", str(tmp_path / "nowhere"))
    assert "data root" in line and "does not exist" in line and "OMNI_BENCH_DATA" in line
    monkeypatch.setenv("OMNI_BENCH_DATA", str(tmp_path / "nowhere"))
    line = one_line_error(capsys, *common)
    assert "OMNI_BENCH_DATA" in line
    corrupted = tmp_path / "data"
    (corrupted / X23_CSV).parent.mkdir(parents=True)
    (corrupted / X23_CSV).write_bytes((data_root / X23_CSV).read_bytes()[:-10])
    line = one_line_error(capsys, *common, "--data-dir", str(corrupted))
    assert "sha256" in line and "needs-data.yaml" in line and "fetch it again" in line
    assert omni(capsys, *common, "--data-dir", str(data_root), "--no-progress")[0] == 0


@pytest.mark.slow
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


@pytest.mark.parametrize("argv", [[], *([name] for name in cli._command_modules()),
                                  ["data", "list"], ["data", "verify"], ["data", "fetch"]])
def test_help_works_on_every_command(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main([*argv, "--help"])
    assert exited.value.code == 0
    assert "usage: omni-bench" in capsys.readouterr().out


def test_the_channel_that_runs_is_named_with_the_default_and_the_others(capsys):
    (variant,) = resolve_models(["7net-mf-0"])
    assert describe_channels([variant]) == [
        "7net-mf-0: channel PBE, the model's default (others: R2SCAN; choose with 7net-mf-0@CHANNEL, --channel, "
        "or --channel all)"]
    assert describe_channels(resolve_models(["7net-mf-0@R2SCAN", "emt"]))[0].startswith(
        "7net-mf-0: channel R2SCAN (others: PBE;")
    code, out, _ = omni(capsys, "list", "models")
    assert re.search(r"^7net-mf-0 +channels: PBE \(default\), R2SCAN$", out, re.MULTILINE)


def test_the_table_counts_items_whose_charge_or_spin_was_dropped(tmp_path, capsys, data_root):
    code, out, _ = run_emt(tmp_path, capsys, "--limit", "6", task="rost61", data_root=data_root)
    assert code == 0
    header, _, row = out.splitlines()[:3]
    column = header.index("charge/spin not passed")
    record = json.loads((tmp_path / "out" / "emt" / "rost61.json").read_text())
    dropped = record["notes"]["charge/spin not passed: the model does not accept them"]
    assert dropped > 0 and row[column:].split()[0] == str(dropped)


def _outcome(task: str, metrics: dict, **sizes) -> TaskOutcome:
    return TaskOutcome("some-model", task, 39, 0, metrics, 0, **sizes)


def test_table_leaves_out_unit_one_and_fits_the_terminal():
    metrics = {f"metric_{i}": {"value": 0.6573, "unit": "1" if i == 0 else "eV/atom"} for i in range(30)}
    table = format_table([_outcome("wbm-formation", metrics)], width=100)
    assert re.search(r"metric_0=0.6573(  |$)", table, re.MULTILINE) and "0.6573 1" not in table
    assert all(len(line) <= 100 for line in table.splitlines())
    assert set(table.splitlines()[1]) == {"-"}


def test_list_tasks_columns_line_up(capsys):
    code, out, _ = omni(capsys, "list", "tasks")
    lines = out.splitlines()
    assert code == 0 and len({re.search(r" v\d+ ", line).start() for line in lines}) == 1


def test_list_suites_reads_no_data_file_and_imports_no_loader(tmp_path):
    code = ("import sys; from omni_bench.cli import main; main(['list', 'suites']); "
            "print(sorted(m for m in sys.modules if m.startswith(('omni_bench.loaders.', 'omni_bench.protocols.', "
            "'ase.io', 'torch'))))")
    env = {**os.environ, "OMNI_BENCH_DATA": str(tmp_path / "nothing-here"),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "mor41 (95 molecules, 41 reactions)" in done.stdout and done.stdout.splitlines()[-1] == "[]"


def test_the_table_shows_structures_and_reactions_by_name(capsys):
    table = format_table([_outcome("mamun-noble", {"mae": {"value": 0.41, "unit": "eV"}}, n_scored=31,
                                   item_name="structures", scored_name="reactions")])
    assert "items, scored" in table.splitlines()[0] and "39 structures, 31 reactions" in table
    code, out, _ = omni(capsys, "list", "suites")
    assert "mamun-noble (39 structures, 31 reactions)" in out and "s22 (22 dimers)" in out


def test_a_run_reports_what_its_items_and_scored_values_are(tmp_path, capsys, data_root):
    code, out, _ = run_emt(tmp_path, capsys, "--limit", "2", task="mor41", data_root=data_root)
    assert code == 0 and re.search(r"\b\d+ molecules, 2 reactions\b", out)
    assert textwrap.dedent(out).splitlines()[0].split()[:4] == ["model", "task", "items,", "scored"]


def test_threads_are_the_usable_cores_less_those_other_work_keeps_busy(monkeypatch):
    from omni_bench.commands.run import choose_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert choose_threads(None, cores=2, load=0.2)[0] == 2
    threads, why = choose_threads(None, cores=2, load=1.1)
    assert threads == 1 and "1 kept busy by other work (1-minute load 1.1)" in why
    assert choose_threads(None, cores=16, load=40.0)[0] == 1  # never below one
    assert choose_threads(3, cores=2, load=5.0) == (3, "--threads")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert choose_threads(None, cores=16, load=0.0) == (2, "OMP_NUM_THREADS")


def test_the_run_header_says_how_many_threads_and_why(tmp_path, capsys):
    assert cli.main(["run", "--model", "emt", "--task", "s22", "--limit", "1", "--threads", "1", "--no-progress",
                     "--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().err.splitlines()[0] == "threads: 1 (--threads)"
