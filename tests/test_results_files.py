"""Results files: one consistency check for every command that reads them, writes that cannot half-succeed,
a --limit run that never replaces a complete result, always valid JSON, a schema and a confined predictions
file when read, references that must be the ones the run scored against, and one folder per model label."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from helpers import REPO, omni, run_emt, run_into
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omni_bench.errors import OmniBenchError
from omni_bench.reporting import load
from omni_bench.reporting.comparable import check_comparable
from omni_bench.reporting.leaderboard import annotate, build
from omni_bench.reporting.leaderboard_output import terminal
from omni_bench.reporting.load import load_results
from omni_bench.reporting.tables import metric_table
from omni_bench.task_registry import all_tasks

EMT_CARD = REPO / "omni_bench" / "models" / "cards" / "emt.yaml"


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


FAULTY_CARD = """\
name: emt-faulty
description: EMT that raises on one formula, for a metric of nothing
factory: fake_models:scaled_emt
level_of_theory: EMT
trained_with_dispersion: false
packages: [ase]
"""


def strict_json(path: Path):
    """JSON as any other language's reader takes it: bare NaN or Infinity is not JSON."""
    return json.loads(path.read_text(), parse_constant=lambda word: pytest.fail(f"{path} holds bare {word}"))


def copied(source: Path, folder: Path, label_folder: str = "emt", task: str = "s22") -> Path:
    """One results pair of ``source`` copied into ``folder/<label_folder>/``; returns the JSON's path."""
    (folder / label_folder).mkdir(parents=True, exist_ok=True)
    for path in (source / label_folder).glob(f"{task}.*"):
        shutil.copy(path, folder / label_folder / path.name)
    return folder / label_folder / f"{task}.json"


def edit_json(path: Path, edit) -> None:
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))


def test_a_metric_of_nothing_is_null_in_valid_json_and_read_as_not_scored(tmp_path, capsys):
    card = tmp_path / "emt-faulty.yaml"
    card.write_text(FAULTY_CARD)
    out = run_into(tmp_path, [str(card)], ["s22"], model_args=["raise_for=H6N2"], limit=1)  # the only dimer fails
    record = strict_json(out / "emt-faulty" / "s22.json")
    assert record["metrics"]["mae"]["value"] is None and record["metrics"]["mae"]["n"] == 0
    code, shown, _ = omni(capsys, "leaderboard", "--results", str(out), "--bootstrap", "20")
    assert code == 0 and "no result" in shown
    baseline = tmp_path / "baseline.json"
    assert omni(capsys, "gate", "--write-baseline", "--baseline", str(baseline), "--results", str(out))[0] == 0
    assert strict_json(baseline)["results"][0]["metrics"]["mae"]["value"] is None
    code, shown, _ = omni(capsys, "gate", "--baseline", str(baseline), "--results", str(out))
    assert code == 0 and "no baseline value" in shown
    assert omni(capsys, "report", "--results", str(out), "--out", str(tmp_path / "report"), "--bootstrap", "20")[0] == 0


@pytest.mark.parametrize("edit, field", [
    (lambda r: r.update(metrics=[1, 2]), "metrics"),
    (lambda r: r["task"].update(version="one"), "task.version"),
    (lambda r: r.update(n_items=-1), "n_items"),
    (lambda r: r["metrics"]["mae"].update(value="NaN"), "metrics.mae.value"),
    (lambda r: r["task"]["config"]["counts"].update(items="22"), "task.config.counts.items"),
    (lambda r: r["task"]["config"]["metrics"][0].update(statistic="median"), "task.config.metrics[0].statistic"),
    (lambda r: r["model"].pop("label"), "model.label"),
    (lambda r: r["notes"].update(x="3"), "notes.x"),
])
def test_a_results_file_of_the_wrong_shape_is_one_line_naming_the_field(emt_results, tmp_path, capsys, edit, field):
    path = copied(emt_results, tmp_path)
    edit_json(path, edit)
    for argv in (["leaderboard", "--results", str(tmp_path)], ["gate", "--baseline", str(path), "--results",
                                                               str(tmp_path)]):
        code, _, err = omni(capsys, *argv)
        assert code == 2 and f"{path}: field '{field}'" in err and len(err.splitlines()) == 1, argv


def test_the_predictions_file_is_a_plain_capped_file_beside_its_json(emt_results, tmp_path, capsys, monkeypatch):
    path = copied(emt_results, tmp_path / "results")
    csv_path = path.with_name("s22.predictions.csv")
    elsewhere = shutil.copy(csv_path, tmp_path / "elsewhere.csv")
    for name in (str(elsewhere), "../../elsewhere.csv", "/etc/shadow", "/dev/zero", ""):
        edit_json(path, lambda r, name=name: r.update(predictions_file=name))
        code, _, err = omni(capsys, "leaderboard", "--results", str(tmp_path / "results"))
        assert code == 2 and "predictions_file" in err, name
    (path.parent / "link.csv").symlink_to(elsewhere)
    (path.parent / "folder.csv").mkdir()
    for name, refusal in (("link.csv", "not a symbolic link"), ("folder.csv", "this is not a regular file")):
        edit_json(path, lambda r, name=name: r.update(predictions_file=name))
        code, _, err = omni(capsys, "leaderboard", "--results", str(tmp_path / "results"))
        assert code == 2 and f"{path.parent / name}: predictions file must be a regular file" in err and refusal in err
    edit_json(path, lambda r: r.update(predictions_file=csv_path.name))
    monkeypatch.setattr(load, "MAX_FILE_BYTES", 2**20)
    csv_path.write_text(csv_path.read_text() + " " * 2**20)
    code, _, err = omni(capsys, "leaderboard", "--results", str(tmp_path / "results"))
    assert code == 2 and "of at most 1 MB; this one is larger" in err


def forge_references(json_path: Path, keep_hash: bool) -> None:
    """References replaced by the predictions in the CSV, and the JSON's metrics made to match (all 0): the
    pair is consistent, and would rank first."""
    record = json.loads(json_path.read_text())
    csv_path = json_path.with_name(record["predictions_file"])
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    ok = frame["status"] == "ok"
    frame.loc[ok, "reference"], frame.loc[ok, "error"] = frame.loc[ok, "predicted"], "0.0"
    frame.to_csv(csv_path, index=False)
    record["metrics"] = {name: {**m, "value": 0.0} for name, m in record["metrics"].items()}
    if not keep_hash:  # as in a file written before the reference hash was recorded
        del record["reference_sha256"]
    json_path.write_text(json.dumps(record))


def test_references_replaced_by_the_predictions_are_refused(emt_results, tmp_path, capsys):
    folder = tmp_path / "results"
    path = copied(emt_results, folder)
    forge_references(path, keep_hash=True)
    for argv in (["leaderboard", "--results", str(folder)], ["report", "--results", str(folder), "--out",
                 str(tmp_path / "report")], ["gate", "--baseline", str(emt_results), "--results", str(folder)]):
        code, _, err = omni(capsys, *argv)
        assert code == 2 and f"{path}: the references in s22.predictions.csv are not the ones this run" in err, argv
    # without a recorded hash (older files), the results of other models on the same items outvote it
    forge_references(path, keep_hash=False)
    for label in ("emt-channels@exact", "emt-channels@scaled"):
        copied(emt_results, folder, label)
    code, _, err = omni(capsys, "leaderboard", "--results", str(folder))
    assert code == 2 and f"{path}: the reference interaction_energy of item" in err and "2 other results" in err
    code, _, err = omni(capsys, "leaderboard", "--results", str(folder), "--model", "emt", "--model",
                        "emt-channels@exact")
    assert code == 2 and str(path) in err and "no other result settles which is right" in err


def test_two_models_writing_to_one_results_folder_are_refused_before_computing(tmp_path, capsys):
    cards = []
    for i, name in enumerate(("a/b", "a_b")):
        cards.append(tmp_path / f"card{i}.yaml")
        cards[-1].write_text(f"name: {name}\n" + EMT_CARD.read_text().split("\n", 1)[1])
    code, _, err = omni(capsys, "run", "-m", str(cards[0]), "-m", str(cards[1]), "-t", "s22", "--store",
                        str(tmp_path / "s.db"), "--out", str(tmp_path / "out"), "--no-progress")
    assert code == 2 and "model labels 'a/b' and 'a_b' would both write to the results folder 'a_b'" in err
    assert not (tmp_path / "out").exists()


def fuzz_value():
    """Any JSON value, with what a hostile file would hold: huge and non-finite numbers, NaN as text, paths,
    control characters."""
    leaves = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8)
              | st.sampled_from(["NaN", "one", "", "..", "../x.csv", "/dev/zero", "/etc/shadow",
                                 "s22.predictions.csv", "emt\x01\x1b[2J", 10**400]))
    return st.recursive(leaves, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)


def paths_in(value, prefix=()):
    """Every path (keys and indices) to a value inside a parsed JSON document."""
    found = [prefix]
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, child in children:
        found += paths_in(child, (*prefix, key))
    return found


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_results_files_load_or_raise_one_clear_error(emt_results, tmp_path, data):
    """A real results JSON with keys dropped or values replaced, or any JSON document at all: the loader and
    everything downstream of it (comparison, metric table, leaderboard) accept it or raise OmniBenchError."""
    path = copied(emt_results, tmp_path / "results")
    record = json.loads(path.read_text())
    if data.draw(st.booleans()):
        for _ in range(data.draw(st.integers(1, 3))):
            where = data.draw(st.sampled_from(paths_in(record)[1:] or [()]))
            if not where:
                break
            parent = record
            for key in where[:-1]:
                parent = parent[key]
            if data.draw(st.booleans()):
                del parent[where[-1]]
            else:
                parent[where[-1]] = data.draw(fuzz_value())
    else:
        record = data.draw(fuzz_value())
    path.write_text(json.dumps(record))
    try:
        results = load.load_results([tmp_path / "results"])
        check_comparable(results, all_tasks())
        metrics, replicates = metric_table(results, n_resamples=10)
        terminal(annotate(build(metrics, replicates), results))
    except OmniBenchError:
        pass


def test_the_same_result_in_two_folders_joins_with_the_later_one_winning(emt_results, tmp_path, capsys):
    """A user's own rerun joins the committed results: the later --results folder wins, one line on stderr
    names both files, and --prefer makes a folder win whatever its place."""
    committed, mine = tmp_path / "committed", tmp_path / "mine"
    old_s22, dcdft = copied(emt_results, committed), copied(emt_results, committed, task="dcdft")
    new_s22 = copied(emt_results, mine)
    results = load_results([committed, mine])
    assert {r.task: r.path for r in results} == {"s22": new_s22, "dcdft": dcdft}
    assert capsys.readouterr().err.splitlines() == [
        f"note: emt on s22: {new_s22} replaces {old_s22} (the later --results wins)"]
    results = load_results([committed, mine], prefer=committed)
    assert {r.task: r.path for r in results} == {"s22": old_s22, "dcdft": dcdft}
    assert capsys.readouterr().err.splitlines() == [f"note: emt on s22: {old_s22} replaces {new_s22} (--prefer)"]
    # a folder given twice is read once, and a result file given beside its own folder is the same result
    assert len(load_results([committed, committed, old_s22])) == 2 and capsys.readouterr().err == ""
    # through the commands
    code, shown, err = omni(capsys, "gate", "--baseline", str(committed), "--results", str(committed), "--results",
                            str(mine))
    assert code == 0 and err.count("note: emt on s22") == 1, shown + err
    code, _, err = omni(capsys, "leaderboard", "--results", str(committed), "--results", str(mine), "--prefer",
                        str(tmp_path / "elsewhere"))
    assert code == 2 and "--prefer" in err and "is not one of the results folders" in err


def test_the_same_result_twice_in_one_folder_is_refused(emt_results, tmp_path):
    """Within one folder neither copy is later: either could be meant."""
    first = copied(emt_results, tmp_path)
    second = tmp_path / "emt-copy" / "s22.json"
    shutil.copytree(first.parent, second.parent)
    with pytest.raises(OmniBenchError, match="in one results folder") as raised:
        load_results([tmp_path])
    assert str(first) in str(raised.value) and str(second) in str(raised.value)
