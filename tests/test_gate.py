"""The regression gate on real runs: an EMT-based model run through the runner, once as the baseline and again
with a planted regression (energies scaled), a planted failure, or a task left out."""

from __future__ import annotations

import json
import math
import shutil
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import edited_task, omni, run_emt, run_into

from omni_bench import cli
from omni_bench.reporting.gate import (
    FAIL,
    INFO,
    PASS,
    TABLE_HEADER,
    Check,
    Snapshot,
    compare,
    junit_xml,
    paired_worsening,
    table_rows,
)
from omni_bench.reporting.load import read_result, recomputed_metrics
from omni_bench.reporting.text import plain_table
from omni_bench.taskspec import GateSpec

# fake_models:scaled_emt is EMT with energies and forces times ``scale`` and an optional planted failure.
CARD = """\
name: emt-gate
description: EMT, optionally scaled, for gate tests
factory: fake_models:scaled_emt
level_of_theory: EMT
trained_with_dispersion: false
packages: [ase]
"""
TASKS = ["s22", "dcdft"]
DCDFT_ITEMS = 5  # Al Si Ge Cu Ag: EMT fails on Si and Ge


@pytest.fixture(scope="module")
def card(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("card") / "emt-gate.yaml"
    path.write_text(CARD)
    return str(path)


def run_emt_gate(folder: Path, card: str, *model_args: str, tasks: list[str] = TASKS) -> Path:
    """S22 in full and the first five Delta-test elements (--limit applies to both, so S22 runs separately)."""
    run_into(folder, [card], [t for t in tasks if t == "s22"], model_args=list(model_args))
    if "dcdft" in tasks:
        run_into(folder, [card], ["dcdft"], model_args=list(model_args), limit=DCDFT_ITEMS)
    return folder / "out"


@pytest.fixture(scope="module")
def baseline_run(tmp_path_factory, card) -> Path:
    return run_emt_gate(tmp_path_factory.mktemp("baseline"), card)


def gate(*args: str, capsys) -> tuple[int, str]:
    code = cli.main(["gate", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def failed_checks(junit: Path) -> list[tuple[str, str]]:
    root = ET.parse(junit).getroot()
    return [(case.get("classname"), case.get("name")) for case in root.iter("testcase")
            if case.find("failure") is not None]


def test_gate_passes_on_identical_results(baseline_run, tmp_path, card, capsys):
    baseline = tmp_path / "baseline.json"
    code, out = gate("--write-baseline", "--baseline", str(baseline), "--results", str(baseline_run), capsys=capsys)
    assert code == 0 and "2 results" in out
    # an independent rerun of the same model gives the same numbers and passes: 3 checks on s22, 4 on dcdft
    rerun = run_emt_gate(tmp_path / "rerun", card)
    junit = tmp_path / "gate.xml"
    code, out = gate("--baseline", str(baseline), "--model", "emt-gate", "--results", str(rerun),
                     "--junit", str(junit), capsys=capsys)
    assert code == 0, out
    assert "all" in out and "checks passed" in out
    for check in ("present", "failures", "mae", "v0_mae", "b0_mae"):
        assert f" {check} " in out
    root = ET.parse(junit).getroot()
    assert root.get("failures") == "0" and int(root.get("tests")) == 7 and not failed_checks(junit)


def test_gate_fails_on_a_planted_regression(baseline_run, tmp_path, card, capsys):
    baseline = tmp_path / "baseline.json"
    assert gate("--write-baseline", "--baseline", str(baseline), "--results", str(baseline_run), capsys=capsys)[0] == 0
    worse = run_emt_gate(tmp_path / "worse", card, "scale=1.3")  # every energy 30% too large
    junit = tmp_path / "gate.xml"
    code, out = gate("--baseline", str(baseline), "--model", "emt-gate", "--results", str(worse),
                     "--junit", str(junit), capsys=capsys)
    assert code == 1, out
    # S22 interaction energies scale with the energies: the MAE gets worse. V0 does not move with a scale.
    assert ("omni-bench.emt-gate.s22", "mae") in failed_checks(junit)
    assert ("omni-bench.emt-gate.dcdft", "v0_mae") not in failed_checks(junit)
    assert "worse by" in out


def test_gate_fails_on_more_failures(baseline_run, tmp_path, card, capsys):
    broken = run_emt_gate(tmp_path / "broken", card, "raise_for=Cu4")  # the Delta-test Cu cell
    junit = tmp_path / "gate.xml"
    code, out = gate("--baseline", str(baseline_run), "--results", str(broken), "--junit", str(junit),
                     capsys=capsys)
    assert code == 1, out
    assert ("omni-bench.emt-gate.dcdft", "failures") in failed_checks(junit)
    assert "1 item scored in the baseline failed now: Cu" in out  # named, whatever the other items did


def test_gate_fails_on_a_missing_task(baseline_run, tmp_path, card, capsys):
    only_s22 = run_emt_gate(tmp_path / "partial", card, tasks=["s22"])
    junit = tmp_path / "gate.xml"
    code, out = gate("--baseline", str(baseline_run), "--model", "emt-gate", "--results", str(only_s22),
                     "--junit", str(junit), capsys=capsys)
    assert code == 1, out
    assert failed_checks(junit) == [("omni-bench.emt-gate.dcdft", "present")]
    assert "task missing from the current results" in out


def test_gate_reads_a_leaderboard_csv_and_refuses_a_different_item_count(baseline_run, tmp_path, card, capsys):
    stem = tmp_path / "leaderboard"
    assert cli.main(["leaderboard", "--results", str(baseline_run), "--out", str(stem), "--bootstrap", "50"]) == 0
    capsys.readouterr()
    code, out = gate("--baseline", f"{stem}.csv", "--model", "emt-gate", "--results", str(baseline_run),
                     capsys=capsys)
    assert code == 0, out
    fewer = tmp_path / "fewer"
    run_into(fewer, [card], ["s22"], limit=4)
    run_into(fewer, [card], ["dcdft"], limit=DCDFT_ITEMS)
    code, out = gate("--baseline", f"{stem}.csv", "--results", str(fewer / "out"), capsys=capsys)
    assert code == 1 and "different number of items" in out


def test_gate_user_errors_exit_2(baseline_run, tmp_path, capsys):
    code, out = gate("--baseline", str(tmp_path / "none.json"), "--results", str(baseline_run), capsys=capsys)
    assert code == 2 and "does not exist" in out
    code, out = gate("--baseline", str(baseline_run), "--model", "7net-0", "--results", str(baseline_run),
                     capsys=capsys)
    assert code == 2 and "has no results for 7net-0" in out


def snap(value: float, statistic: str = "r2", direction: str = "higher", failed: int = 0) -> Snapshot:
    return Snapshot("m", "m", "", "t", 1, 10, failed, {"score": {"value": value, "statistic": statistic,
                                                                  "direction": direction}})


@pytest.mark.parametrize("baseline, current, expected", [
    (0.90, 0.86, PASS),  # 0.04 worse: more than abs 0.02, within rel 5% of 0.90 = 0.045
    (0.90, 0.85, FAIL),  # 0.05 worse than both tolerances
    (0.90, 0.99, PASS),  # better
    (0.90, math.nan, FAIL),  # no value any more
])
def test_tolerances_follow_the_metric_direction(baseline, current, expected):
    checks = compare([snap(baseline)], [snap(current)], {"t": {"score": GateSpec(abs=0.02, rel=0.05)}})
    assert [c.status for c in checks if c.check == "score"] == [expected]


def test_relative_tolerance_and_signed_errors():
    gates = {"t": {"score": GateSpec(abs=0.0, rel=0.1)}}
    lower = compare([snap(10.0, "mae", "lower")], [snap(10.9, "mae", "lower")], gates)
    assert [c.status for c in lower if c.check == "score"] == [PASS]
    lower = compare([snap(10.0, "mae", "lower")], [snap(11.1, "mae", "lower")], gates)
    assert [c.status for c in lower if c.check == "score"] == [FAIL]
    # a mean error that flips sign and grows is worse, though it is "lower"
    signed = compare([snap(1.0, "mean_error", "lower")], [snap(-2.0, "mean_error", "lower")], gates)
    assert [c.status for c in signed if c.check == "score"] == [FAIL]
    extra = compare([], [snap(1.0)], gates)
    assert [(c.status, c.note) for c in extra] == [(INFO, "not in the baseline")]


def test_gate_refuses_results_of_a_task_whose_inputs_changed_within_its_version(baseline_run, tmp_path, card,
                                                                                 capsys):
    """The same task name and version, but a wider EOS volume range: the numbers are not comparable."""
    wider = edited_task(tmp_path / "tasks", "dcdft", lambda d: d["protocol"]["params"].update(volume_strain=0.10))
    run_into(tmp_path, [card], [wider], limit=DCDFT_ITEMS)
    run_into(tmp_path, [card], ["s22"])
    stem = tmp_path / "leaderboard"
    assert cli.main(["leaderboard", "--results", str(baseline_run), "--out", str(stem), "--bootstrap", "50"]) == 0
    capsys.readouterr()
    for baseline in (str(baseline_run), f"{stem}.csv"):  # a results folder, and the leaderboard CSV
        junit = tmp_path / "gate.xml"
        code, out = gate("--baseline", baseline, "--results", str(tmp_path / "out"), "--junit", str(junit),
                         capsys=capsys)
        assert code == 1, out
        assert failed_checks(junit) == [("omni-bench.emt-gate.dcdft", "task inputs")]
        assert "raise the task's version" in out


def test_a_baseline_value_that_is_not_a_number(tmp_path, capsys):
    assert run_emt(tmp_path, capsys, "--limit", "3")[0] == 0
    baseline = tmp_path / "baseline.json"
    assert omni(capsys, "gate", "--write-baseline", "--baseline", str(baseline), "--results",
                str(tmp_path / "out"))[0] == 0
    payload = json.loads(baseline.read_text())
    payload["results"][0]["metrics"]["mae"]["value"] = "abc"
    baseline.write_text(json.dumps(payload))
    code, _, err = omni(capsys, "gate", "--baseline", str(baseline), "--results", str(tmp_path / "out"))
    assert code == 2 and "mae.value='abc', not a number" in err
    payload["results"][0]["metrics"]["mae"]["value"] = 1.0
    payload["results"][0]["item_errors"]["interaction_energy"]["1"] = "abc"
    baseline.write_text(json.dumps(payload))
    code, _, err = omni(capsys, "gate", "--baseline", str(baseline), "--results", str(tmp_path / "out"))
    assert code == 2 and "item_errors.interaction_energy, not a number" in err
    assert omni(capsys, "leaderboard", "--results", str(tmp_path / "out"), "--out", str(tmp_path / "lb"))[0] == 0
    board = pd.read_csv(tmp_path / "lb.csv", dtype=str, keep_default_na=False)
    board.loc[0, "value"] = "abc"
    board.to_csv(tmp_path / "lb.csv", index=False)
    code, _, err = omni(capsys, "gate", "--baseline", str(tmp_path / "lb.csv"), "--results", str(tmp_path / "out"))
    assert code == 2 and "is not a number where one is needed" in err


def test_gate_refuses_a_baseline_scored_in_other_units(baseline_run, emt_results, tmp_path, card, capsys):
    """A copy of s22 in eV, same name and version: the store's values are reused (units are applied when
    scoring), so only the units recorded in every results file tell the numbers apart."""
    in_ev = edited_task(tmp_path / "tasks", "s22", lambda d: d["units"].update(interaction_energy="eV"))
    current = run_into(tmp_path, [card], [in_ev])
    junit = tmp_path / "gate.xml"
    code, out = gate("--baseline", str(baseline_run / "emt-gate" / "s22.json"), "--results", str(current),
                     "--junit", str(junit), capsys=capsys)
    assert code == 1, out
    assert failed_checks(junit) == [("omni-bench.emt-gate.s22", "units")]
    (line,) = [line for line in out.splitlines() if " units " in line]
    assert "kcal/mol" in line and "eV" in line and "raise the task's version" in line and "better" not in out
    # nor are they ranked together, whichever of the two task files is the current one
    in_kcal = emt_results / "emt" / "s22.json"
    for tasks_dir, refused in (([], f"{current / 'emt-gate' / 's22.json'}: emt-gate"),
                               (["--tasks-dir", str(tmp_path / "tasks")], f"{in_kcal}: emt")):
        code, _, err = omni(capsys, *tasks_dir, "leaderboard", "--results", str(current), "--results", str(in_kcal),
                            "--bootstrap", "20")
        assert code == 2 and f"{refused} on s22 was scored with task units" in err


def test_junit_and_terminal_lines_escape_control_characters_and_surrogates(tmp_path, capsys):
    checks = [Check(FAIL, "emt\x01\x1b[2J", "s22\ud800", "mae", "1", "2", note="worse \x1b[31m")]
    root = ET.fromstring(junit_xml(checks).encode("utf-8"))  # well-formed, and writable as UTF-8
    (case,) = root.iter("testcase")
    assert case.get("classname") == r"omni-bench.emt\x01\x1b[2J.s22\ud800"
    table = plain_table(TABLE_HEADER, table_rows(checks))
    assert "\x1b" not in table and "\ud800" not in table and r"emt\x01\x1b[2J" in table
    # a label crafted into a results file, through the command
    assert run_emt(tmp_path, capsys, "--limit", "2")[0] == 0
    path = tmp_path / "out" / "emt" / "s22.json"
    record = json.loads(path.read_text())
    record["model"]["label"] = "emt\x01\x1b[2J"
    path.write_text(json.dumps(record))
    junit = tmp_path / "gate.xml"
    code, out = gate("--baseline", str(tmp_path / "out"), "--results", str(tmp_path / "out"), "--junit", str(junit),
                     capsys=capsys)
    assert code == 0 and "\x1b" not in out and r"emt\x01\x1b[2J" in out
    assert ET.parse(junit).getroot().get("failures") == "0"


def test_gate_is_scoped_by_suite_and_task(baseline_run, tmp_path, card, capsys):
    """--suite and --task choose the baseline's entries as they choose the results (s22 is in the suite
    molecules, dcdft in crystals): a run of s22 alone passes the gate of its suite."""
    only_s22 = run_emt_gate(tmp_path / "partial", card, tasks=["s22"])
    assert gate("--baseline", str(baseline_run), "--results", str(only_s22), capsys=capsys)[0] == 1
    for scope in (["--suite", "molecules"], ["--task", "s22"]):
        code, out = gate("--baseline", str(baseline_run), "--results", str(only_s22), *scope, capsys=capsys)
        assert code == 0 and " dcdft " not in out and " s22 " in out, (scope, out)
    code, out = gate("--baseline", str(baseline_run), "--results", str(only_s22), "--suite", "crystals",
                     capsys=capsys)
    assert code == 1 and "task missing from the current results" in out
    baseline = tmp_path / "baseline.json"
    code, out = gate("--write-baseline", "--baseline", str(baseline), "--results", str(baseline_run), "--task",
                     "dcdft", capsys=capsys)
    assert code == 0 and [r["task"] for r in json.loads(baseline.read_text())["results"]] == ["dcdft"]
    code, out = gate("--baseline", str(baseline), "--results", str(baseline_run), "--suite", "molecules",
                     capsys=capsys)
    assert code == 2 and "has no results for any model in suite molecules" in out


def shifted_copy(folder: Path, into: Path, task: str, delta: float) -> Path:
    """The results pair of ``task`` copied with ``delta`` added to every scored prediction, its errors and
    metrics rewritten to match (the references, and so ``reference_sha256``, are untouched)."""
    source = folder / "emt-gate" / f"{task}.json"
    shutil.copytree(folder, into)
    path = into / "emt-gate" / f"{task}.json"
    result = read_result(source)
    frame = pd.read_csv(path.with_name(result.record["predictions_file"]), dtype=str, keep_default_na=False)
    ok = frame["status"] == "ok"
    predicted = pd.to_numeric(frame.loc[ok, "predicted"]) + delta
    frame.loc[ok, "predicted"] = predicted.map(repr)
    frame.loc[ok, "error"] = (predicted - pd.to_numeric(frame.loc[ok, "reference"])).map(repr)
    frame.to_csv(path.with_name(result.record["predictions_file"]), index=False)
    numbers = result.predictions.copy()
    numbers.loc[ok, "predicted"] = predicted
    record = json.loads(path.read_text())
    for name, value in recomputed_metrics(replace(result, predictions=numbers)).items():
        record["metrics"][name]["value"] = value
    path.write_text(json.dumps(record))
    return into


def test_a_shift_of_the_predictions_is_judged_on_the_paired_items(baseline_run, tmp_path, capsys):
    """Every S22 interaction energy 2 kcal/mol higher: the paired interval of the MAE's worsening excludes zero,
    and the JUnit carries the smallest regression the gate detects. A baseline JSON written before per-item
    errors were recorded is still read, with the old comparison of values."""
    baseline = tmp_path / "baseline.json"
    assert gate("--write-baseline", "--baseline", str(baseline), "--results", str(baseline_run), capsys=capsys)[0] == 0
    assert json.loads(baseline.read_text())["results"][1]["item_errors"]["interaction_energy"]
    shifted = shifted_copy(baseline_run, tmp_path / "shifted", "s22", 2.0)
    junit = tmp_path / "gate.xml"
    code, out = gate("--baseline", str(baseline), "--results", str(shifted), "--junit", str(junit), capsys=capsys)
    assert code == 1 and failed_checks(junit) == [("omni-bench.emt-gate.s22", "mae")], out
    (line,) = [line for line in out.splitlines() if " s22 " in line and " mae " in line]
    assert "worse by" in line and "over 22 shared items" in line
    assert "smallest worsening detected with 80% power" in junit.read_text()
    payload = json.loads(baseline.read_text())
    for entry in payload["results"]:
        del entry["item_errors"], entry["failed_items"]
    payload["format"] = 1
    baseline.write_text(json.dumps(payload))
    code, out = gate("--baseline", str(baseline), "--results", str(shifted), capsys=capsys)
    assert code == 1 and "values compared: the baseline has no per-item errors" in out


@pytest.mark.parametrize("allowed", [0.0, 0.15])  # below the noise (1.96 SE = 0.078), and above it
def test_the_detectable_regression_is_caught_at_about_80_percent(allowed):
    """The stated detectable worsening, injected into the predictions of 100 items with fresh noise 100 times,
    is flagged about 80% of the time; no shift is flagged at most about 2.5% of the time (one side of a 95%
    interval). Baseline errors are all positive, so a shift of the predictions is the same shift of the MAE."""
    rng = np.random.default_rng(7)
    n, noise = 100, 0.4
    reference = rng.normal(0.0, 5.0, n)
    baseline_error = rng.uniform(2.0, 3.0, n)
    rows = pd.DataFrame({"id": [f"item{i}" for i in range(n)], "reference": reference})

    def judged(delta: float, draw: int):
        predicted = reference + baseline_error + delta + np.random.default_rng(draw).normal(0.0, noise, n)
        return paired_worsening(rows.assign(predicted=predicted), baseline_error, "mae", "lower", allowed,
                                key=("sim", str(draw)), n_resamples=500)

    detectable = judged(0.0, 0).detectable
    expected = max(1.96 * noise / math.sqrt(n), allowed) + 0.84 * noise / math.sqrt(n)
    assert detectable == pytest.approx(expected, rel=0.1)
    caught = np.mean([judged(detectable, draw).regressed(allowed) for draw in range(1, 101)])
    assert 0.65 <= caught <= 0.95, caught
    assert np.mean([judged(0.0, draw).regressed(allowed) for draw in range(101, 201)]) <= 0.08
