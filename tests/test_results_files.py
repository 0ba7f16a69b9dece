"""Results files: one consistency check for every command that reads them, writes that cannot half-succeed,
and a --limit run that never replaces a complete result."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import omni, run_emt

from omni_bench.reporting.load import load_results


def test_a_truncated_predictions_csv_is_refused_by_gate_leaderboard_and_report(tmp_path, capsys):
    assert run_emt(tmp_path, capsys)[0] == 0
    csv_path = tmp_path / "out" / "emt" / "s22.predictions.csv"
    csv_path.write_text("\n".join(csv_path.read_text().splitlines()[:-3]) + "\n")
    results = str(tmp_path / "out")
    for argv in (["gate", "--baseline", results, "--results", results],
                 ["leaderboard", "--results", results],
                 ["report", "--results", results, "--out", str(tmp_path / "report")]):
        code, _, err = omni(capsys, *argv)
        assert code == 2 and "the two files do not belong together" in err and "s22.predictions.csv" in err, argv


def test_a_failed_write_never_leaves_a_new_csv_beside_the_old_json(tmp_path, capsys, monkeypatch):
    assert run_emt(tmp_path, capsys, "--limit", "3")[0] == 0
    folder = tmp_path / "out" / "emt"
    old = {p.name: p.read_bytes() for p in folder.iterdir()}
    real_replace = Path.replace

    def failing_json_rename(self, target):
        if str(target).endswith(".json"):
            raise OSError(28, "No space left on device")
        return real_replace(self, target)
    monkeypatch.setattr(Path, "replace", failing_json_rename)
    code, _, err = run_emt(tmp_path, capsys, "--limit", "4")
    assert code == 2 and "cannot write results" in err and "No space left" in err
    assert not (folder / "s22.json").exists()  # the old JSON went first: no stale pair stands
    assert sorted(p.name for p in folder.iterdir()) == ["s22.predictions.csv"]
    assert load_results([tmp_path / "out"]) == []
    monkeypatch.undo()
    assert old["s22.predictions.csv"] != (folder / "s22.predictions.csv").read_bytes()
    assert run_emt(tmp_path, capsys, "--limit", "4")[0] == 0 and len(load_results([tmp_path / "out"])) == 1


def test_a_partial_run_does_not_replace_a_complete_result_unless_told(tmp_path, capsys):
    assert run_emt(tmp_path, capsys)[0] == 0
    complete = (tmp_path / "out" / "emt" / "s22.json").read_text()
    assert json.loads(complete)["complete"] is True
    code, _, err = run_emt(tmp_path, capsys, "--limit", "5")
    assert code == 2 and "holds a complete run of s22 (22 items)" in err and "--replace-complete" in err
    assert (tmp_path / "out" / "emt" / "s22.json").read_text() == complete
    assert run_emt(tmp_path, capsys, "--limit", "5", "--out", str(tmp_path / "partial"))[0] == 0
    assert run_emt(tmp_path, capsys, "--limit", "4", "--out", str(tmp_path / "partial"))[0] == 0  # partial over partial
    assert run_emt(tmp_path, capsys, "--limit", "5", "--replace-complete")[0] == 0
    assert json.loads((tmp_path / "out" / "emt" / "s22.json").read_text())["n_items"] == 5
