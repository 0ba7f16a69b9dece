"""Regression tests for issue 15: what an adversarial run and a newcomer's run found (security, silent wrong
numbers, tracebacks, confusing output). One section per finding, numbered as in the issue."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, edited_task, task_items

from omni_bench import cli, plugins, task_registry
from omni_bench.commands.run import describe_channels, format_table
from omni_bench.errors import OmniBenchError
from omni_bench.items import Quantity
from omni_bench.models import checkpoints, registry
from omni_bench.models.registry import find_card, parse_model_arg, resolve_models
from omni_bench.reporting.load import load_results
from omni_bench.runner import RunOptions, TaskOutcome, compute_item, load_items, run_benchmarks
from omni_bench.schema import load_yaml
from omni_bench.scored import check_scored
from omni_bench.store import ResultStore
from omni_bench.task_registry import all_tasks
from omni_bench.taskspec import load_task

TESTS = Path(__file__).resolve().parent


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


# --- 1. A model card or sweep file must not run any callable -------------------------------------------------

def test_1_a_card_file_naming_a_foreign_factory_is_refused_and_runs_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = card_file(tmp_path, "evil", "os:system", args={"command": f"touch {tmp_path / 'PWNED'}"})
    code, _, err = omni(capsys, "run", "-m", str(evil), "-t", "s22", "--store", str(tmp_path / "s.db"),
                        "--out", str(tmp_path / "out"), "--no-progress")
    assert code == 2 and "factory 'os:system'" in err and "--trust-code" in err
    assert not (tmp_path / "PWNED").exists()


def test_1_a_sweep_file_naming_a_foreign_factory_is_refused(tmp_path, capsys):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"models:\n  - {{model: 'os:system', args: {{command: 'touch {tmp_path / 'PWNED'}'}}}}\n"
                     "tasks: [s22]\nexecutor: {name: serial}\n")
    code, _, err = omni(capsys, "sweep", str(sweep), "--store", str(tmp_path / "s.db"), "--no-progress")
    assert code == 2 and f"sweep file {sweep} names factory 'os:system'" in err
    assert not (tmp_path / "PWNED").exists()


def test_1_trust_code_runs_a_foreign_factory_with_a_warning_and_records_it(tmp_path, capsys):
    card = card_file(tmp_path, "ase-emt", "ase.calculators.emt:EMT")
    argv = ["run", "-m", str(card), "-t", "s22", "--limit", "2", "--store", str(tmp_path / "s.db"),
            "--out", str(tmp_path / "out"), "--no-progress"]
    assert omni(capsys, *argv)[0] == 2
    code, _, err = omni(capsys, *argv, "--trust-code")
    assert code == 0 and "warning: --trust-code" in err
    record = json.loads((tmp_path / "out" / "ase-emt" / "s22.json").read_text())
    assert record["config"]["trust_code"] == f"{card}: factory ase.calculators.emt:EMT"


def test_1_what_a_file_may_name_without_trust(tmp_path, monkeypatch):
    """omni-bench's own factories and the plug-ins' are allowed; a command-line factory needs no trust."""
    own = card_file(tmp_path, "own", "omni_bench.models.factories:emt")
    assert resolve_models([str(own)])[0].trusted_code is None
    assert resolve_models(["ase.calculators.emt:EMT"])[0].trusted_code is None  # the user typed it

    class EntryPoint:
        name, value = "demo", "demo_plugin.models:make"
    monkeypatch.setattr(registry, "entry_points", lambda group: [EntryPoint()])
    assert registry.allowed_factory("demo_plugin.models:make") and not registry.allowed_factory("demo_plugin:other")


# --- 2. Checkpoints a package unpickles are checked first ----------------------------------------------------

class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_2_a_pickled_checkpoint_that_runs_code_is_refused_before_sevenn_sees_it(tmp_path, capsys):
    import torch

    evil = tmp_path / "evil.pth"
    torch.save({"config": _RunsCode(tmp_path / "PWNED")}, evil)
    code, _, err = omni(capsys, "run", "-m", "7net-0", "--model-arg", f"model={evil}", "-t", "s22", "--limit", "1",
                        "--store", str(tmp_path / "s.db"), "--out", str(tmp_path / "out"), "--no-progress")
    assert code == 2 and "sevenn unpickles its checkpoint" in err and "posix.system" in err and "--trust-code" in err
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "out").exists()


def test_2_plain_pickles_are_refused_and_trust_code_lets_a_file_through_on_record(tmp_path):
    import pickle

    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"weights": [1.0]}))
    (variant,) = resolve_models(["7net-0"], model_args=[f"model={plain}"])
    with pytest.raises(OmniBenchError, match="not a zip-based torch checkpoint"):
        checkpoints.check_model_files(variant)
    (trusting,) = resolve_models(["7net-0"], model_args=[f"model={plain}"], trust_code=True)
    checkpoints.check_model_files(trusting)  # nothing is loaded here
    assert trusting.trusted_code.startswith(f"checkpoint {plain}: not a zip-based torch checkpoint")


def test_2_bundled_checkpoints_pass_the_check_and_copies_of_them_too(tmp_path):
    (variant,) = resolve_models(["7net-0"])
    bundled = variant.card.resolve_checkpoint()
    assert variant.card.is_packaged(bundled)
    assert checkpoints.unsafe_globals(bundled) == []  # numpy arrays in sevenn's config are allowed
    copy = tmp_path / "copy.pth"
    shutil.copy(bundled, copy)
    (user,) = resolve_models(["7net-0"], model_args=[f"model={copy}"])
    checkpoints.check_model_files(user)
    assert user.trusted_code is None and not user.card.is_packaged(copy)
    assert checkpoints.unsafe_globals(REPO / "reference_model" / "omni.pth") == []


def test_2_the_reference_model_reads_its_resume_file_without_unpickling_code(tmp_path):
    """reference_model.train loads its resume state with weights_only=True: the state it saves must load so."""
    import torch

    from reference_model.train import read_resume

    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.ones(2, 3)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, 0.1, total_iters=5)
    config = torch.load(REPO / "reference_model" / "omni.pth", weights_only=True, map_location="cpu")["config"]
    path = tmp_path / "resume.pt"
    torch.save({"recipe": {"epochs": 5}, "training_set_sha256": "x", "sevenn_config": config,
                "model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict(),
                "scheduler_state_dict": scheduler.state_dict(), "history": [{"epoch": 1, "lr": 0.01}],
                "wall_s": 1.0}, path)
    assert read_resume(path)["sevenn_config"] == config
    torch.save({"evil": _RunsCode(tmp_path / "PWNED")}, path)
    with pytest.raises(Exception, match="Weights only load failed"):
        read_resume(path)
    assert not (tmp_path / "PWNED").exists()


# --- 3. Reference tables: NaN, duplicates and empty tables are errors naming file, row and field ------------

@pytest.fixture
def mor41_copy(tmp_path, data_root) -> dict[str, Path]:
    """The MOR41 files in a scratch folder, for the loader to read after an edit."""
    spec = all_tasks()["mor41"]
    files = {}
    for entry, root in [(e, data_root) for e in spec.files] + [(e, spec.path.parent) for e in spec.tables]:
        target = tmp_path / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / entry.path, target)
        files[entry.path] = target
    return files


MOR41_TABLE = "mor41-reactions.csv"


def _provenance_lines(files) -> int:
    """The shipped table's '#' header: file rows count from the line after it."""
    return sum(line.startswith("#") for line in files[MOR41_TABLE].read_text().splitlines())


def _edit_reactions(files: dict[str, Path], edit) -> None:
    """Edit the CSV rows (header first) below the table's provenance comment."""
    path = files[MOR41_TABLE]
    lines = path.read_text().splitlines()
    comments = [line for line in lines if line.startswith("#")]
    path.write_text("\n".join(comments + edit(lines[len(comments):])) + "\n")


def _load_mor41(files):
    spec = all_tasks()["mor41"]
    return plugins.load("loader", "mor41").load(files, spec.loader_params)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_3_a_nan_or_inf_reference_names_file_row_and_field(mor41_copy, value):
    header = _load_header(mor41_copy)
    column = header.index("ref_energy_kcal_mol")

    def edit(lines):
        cells = lines[5].split(",")
        cells[column] = value
        lines[5] = ",".join(cells)
        return lines
    _edit_reactions(mor41_copy, edit)
    row = 6 + _provenance_lines(mor41_copy)
    with pytest.raises(OmniBenchError, match=rf"{MOR41_TABLE} row {row} \(reaction .*\): field "
                                             r"'ref_energy_kcal_mol' is (nan|-?inf), not a reference value"):
        _load_mor41(mor41_copy)


def _load_header(files) -> list[str]:
    lines = files[MOR41_TABLE].read_text().splitlines()
    return lines[_provenance_lines(files)].split(",")


def test_3_a_duplicate_reaction_id_with_another_value_names_both_rows(mor41_copy):
    column = _load_header(mor41_copy).index("ref_energy_kcal_mol")

    def edit(lines):
        cells = lines[3].split(",")
        cells[column] = "12.5"
        return [*lines, ",".join(cells)]
    _edit_reactions(mor41_copy, edit)
    offset = _provenance_lines(mor41_copy)
    expected = rf"row {43 + offset} .*appears twice \(also {MOR41_TABLE} row {4 + offset}"
    with pytest.raises(OmniBenchError, match=expected):
        _load_mor41(mor41_copy)


def test_3_an_empty_reaction_table_is_an_error(mor41_copy):
    _edit_reactions(mor41_copy, lambda lines: lines[:1])
    with pytest.raises(OmniBenchError, match=f"{MOR41_TABLE}: no reactions: the table is empty"):
        _load_mor41(mor41_copy)


def test_3_a_nan_reference_that_a_derive_step_builds_is_caught_for_every_task(data_root):
    """Reactions of mamun-noble are built by its loader without a table: the runner's check catches them."""
    spec = all_tasks()["mamun-noble"]
    items = task_items("mamun-noble", data_root)
    adslab = next(i for i in items if i.meta.get("reactions"))
    adslab.meta["reactions"][0]["reference"] = Quantity(math.nan, "eV")
    reaction = re.escape(adslab.meta["reactions"][0]["id"])
    with pytest.raises(OmniBenchError, match=f"task 'mamun-noble': '{reaction}' has no valid reference "
                                             r"adsorption_energy \(nan\) in Mamun2019"):
        check_scored(spec, items)


# --- 4. --item-timeout <= 0 is refused, and harness failures are never stored --------------------------------

@pytest.mark.parametrize("seconds", ["-5", "0", "nan"])
def test_4_a_timeout_that_is_not_positive_is_refused(tmp_path, capsys, seconds):
    code, _, err = run_emt(tmp_path, capsys, "--item-timeout", seconds)
    assert code == 2 and "--item-timeout must be a positive number of seconds" in err
    assert not (tmp_path / "out").exists()


def test_4_a_sweep_file_timeout_that_is_not_positive_names_the_field(tmp_path, capsys):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("models: [emt]\ntasks: [s22]\nitem_timeout: -5\n")
    code, _, err = omni(capsys, "sweep", str(sweep))
    assert code == 2 and "field 'item_timeout' must be a positive number of seconds" in err


def test_4_a_time_limit_that_cannot_be_set_up_fails_the_run_and_stores_nothing(tmp_path, data_root):
    from contextlib import contextmanager

    from omni_bench.models.loaded import LoadedModel

    @contextmanager
    def broken_limit(seconds):
        raise ValueError("itimer_error")
        yield

    (variant,) = resolve_models(["emt"])
    item = task_items("s22")[0]
    protocol = plugins.load("protocol", "interaction_energy")
    with pytest.raises(OmniBenchError, match="cannot enforce --item-timeout 2: ValueError: itimer_error"):
        compute_item(LoadedModel(variant, "cpu"), protocol, item, {}, 2, limit=broken_limit)


# --- 5. One consistency check for gate, leaderboard and report; --out writes that cannot half-succeed ---------

def test_5_a_truncated_predictions_csv_is_refused_by_gate_leaderboard_and_report(tmp_path, capsys):
    assert run_emt(tmp_path, capsys)[0] == 0
    csv_path = tmp_path / "out" / "emt" / "s22.predictions.csv"
    csv_path.write_text("\n".join(csv_path.read_text().splitlines()[:-3]) + "\n")
    results = str(tmp_path / "out")
    for argv in (["gate", "--baseline", results, "--results", results],
                 ["leaderboard", "--results", results],
                 ["report", "--results", results, "--out", str(tmp_path / "report")]):
        code, _, err = omni(capsys, *argv)
        assert code == 2 and "the two files do not belong together" in err and "s22.predictions.csv" in err, argv


def test_5_a_failed_write_never_leaves_a_new_csv_beside_the_old_json(tmp_path, capsys, monkeypatch):
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


# --- 6. A --limit run never replaces a complete result ---------------------------------------------------------

def test_6_a_partial_run_does_not_replace_a_complete_result_unless_told(tmp_path, capsys):
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


# --- 7. A runaway or unconverged SCF is a recorded failure ----------------------------------------------------

M117 = """
import json
from omni_bench import data, plugins, task_registry
from omni_bench.models.loaded import LoadedModel
from omni_bench.models.registry import resolve_models
from omni_bench.runner import compute_item, load_items
spec = task_registry.all_tasks()["rost61"]
items = {i.id: i for i in load_items(spec, *data.resolve_data_root())}
model = LoadedModel(resolve_models(["gfn2-xtb"])[0], "cpu")
protocol = plugins.load("protocol", "reaction_energy")
print(json.dumps({k: vars(compute_item(model, protocol, items[k], {}))
                  for k in ("m116", "m117")}))
"""


@pytest.mark.slow
def test_7_gfn2_xtb_runaway_scf_on_rost61_m117_is_a_failure(data_root):
    """With one OpenMP thread the SCF 'converges' to -6.1 e on Ti (169 eV too low); the card's charge bound
    makes that a failure. (With more threads it does not converge, which tblite reports as a failure too.)"""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMNI_BENCH_DATA": str(data_root),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", M117], env=env, capture_output=True, text=True, timeout=300)
    results = json.loads(done.stdout.splitlines()[-1])
    assert results["m116"]["status"] == "ok"
    failed = results["m117"]
    assert failed["status"] == "failed"
    assert ("ImplausibleResult: partial charge -6.14 e on Ti" in failed["error"]
            or "SCF not converged" in failed["error"])


def test_7_sanity_bounds_are_per_card_and_documented(tmp_path):
    from ase.build import molecule

    from omni_bench.models.loaded import ImplausibleResult, LoadedModel

    gfn2 = find_card("gfn2-xtb")
    assert gfn2.sanity.max_abs_charge == 3.0 and find_card("7net-0").sanity.max_abs_charge is None
    bounded = card_file(tmp_path, "bounded", "omni_bench.models.factories:tabulated", args={"key": "e"},
                        sanity={"energy_per_atom": [-20, 5], "why": "test"})
    (variant,) = resolve_models([str(bounded)])
    model = LoadedModel(variant, "cpu")
    water, ammonia = molecule("H2O"), molecule("NH3")
    water.info["e"] = -30.0  # -10 eV/atom: inside
    assert model.energy(water) == -30.0
    ammonia.info["e"] = -4000.0
    with pytest.raises(ImplausibleResult, match="energy -1000 eV/atom is outside the card's sanity bounds"):
        model.energy(ammonia)
    with pytest.raises(OmniBenchError, match="field 'sanity.energy_per_atom' must be"):
        resolve_models([str(card_file(tmp_path, "bad", "omni_bench.models.factories:emt",
                                      sanity={"energy_per_atom": [5, -5]}))])


# --- 8. wbm-formation scores each model against the reference in its own energy convention ---------------------

def test_8_each_model_is_scored_against_the_reference_in_its_own_convention(tmp_path, data_root, capsys):
    """The tabulated model returns the data's energies: raw ones for a 'raw' card, corrected ones for an
    'mp2020-corrected' card; each then reproduces its own reference exactly and misses the other."""
    assert find_card("chgnet").energy_convention == "mp2020-corrected"
    assert find_card("7net-0").energy_convention == "raw"
    raw = card_file(tmp_path, "raw", "omni_bench.models.factories:tabulated", args={"key": "ref_energy:PBE"})
    corrected = card_file(tmp_path, "corrected", "omni_bench.models.factories:tabulated",
                          args={"key": "ref_energy:PBE+MP2020"}, energy_convention="mp2020-corrected")
    undeclared = card_file(tmp_path, "undeclared", "omni_bench.models.factories:tabulated",
                           args={"key": "ref_energy:PBE+MP2020"})  # corrected energies, card says raw (default)
    store = ResultStore(tmp_path / "s.db")
    options = RunOptions(store=store, out_dir=tmp_path / "out", data_root=data_root, device="cpu", limit=150,
                         progress=False)
    outcomes = run_benchmarks(resolve_models([str(raw), str(corrected), str(undeclared)]),
                              [all_tasks()["wbm-formation"]], options)
    store.close()
    assert [o.reference_convention for o in outcomes] == ["raw", "mp2020-corrected", "raw"]
    assert [o.metrics["mae"]["value"] for o in outcomes[:2]] == pytest.approx([0, 0], abs=1e-6)
    assert outcomes[1].metrics["mae_by_mp2020[mp2020=corrected]"]["n"] > 10
    assert outcomes[2].metrics["mae"]["value"] > 0.05  # the convention matters on this slice
    outcomes.pop()
    for label in ("raw", "corrected"):
        record = json.loads((tmp_path / "out" / label / "wbm-formation.json").read_text())
        assert record["card"]["energy_convention"] == ("raw" if label == "raw" else "mp2020-corrected")
    table = format_table(outcomes)
    assert "reference" in table.splitlines()[0] and "mp2020-corrected" in table
    shutil.rmtree(tmp_path / "out" / "undeclared")
    for result in load_results([tmp_path / "out"]):  # each CSV holds the reference its model was scored against
        rows = result.predictions
        assert (rows["predicted"] - rows["reference"]).abs().max() < 1e-6


# --- 9. Duplicate YAML keys and a group_by that no item has are errors -------------------------------------------

def test_9_a_duplicate_key_in_a_task_file_is_an_error(tmp_path):
    path = tmp_path / "s22.yaml"
    text = all_tasks()["s22"].path.read_text()
    path.write_text(text.replace("version: 1\n", "version: 1\nversion: 2\n", 1))
    with pytest.raises(OmniBenchError, match=r"s22.yaml: not valid YAML \(task file, line 3, column 1\): key "
                                             r"'version' appears twice"):
        load_task(path)


def test_9_duplicate_keys_are_refused_in_cards_and_sweep_files_too(tmp_path):
    path = tmp_path / "card.yaml"
    path.write_text("name: a\nfactory: x:y\nname: b\n")
    with pytest.raises(OmniBenchError, match="key 'name' appears twice"):
        load_yaml(path, "model card")
    path.write_text("base: &b {a: 1}\nmerged: {<<: *b, a: 2}\n")  # an override through a merge key is fine
    assert load_yaml(path, "sweep file")["merged"] == {"a": 2}


def test_9_a_group_by_that_no_item_has_is_an_error(tmp_path):
    def add_metric(raw):
        raw["metrics"].append({"name": "mae_by_x", "quantity": "interaction_energy", "statistic": "mae",
                               "direction": "lower", "group_by": "nosuch"})
    spec = edited_task(tmp_path / "tasks", "s22", add_metric)
    with pytest.raises(OmniBenchError, match=r"field 'metrics\[4\].group_by' names group 'nosuch', which no "
                                             "interaction_energy value has"):
        load_items(spec, None)


# --- 10. --help works for every command -----------------------------------------------------------------------

@pytest.mark.parametrize("argv", [[], *([name] for name in cli._command_modules()),
                                  ["data", "list"], ["data", "verify"], ["data", "fetch"]])
def test_10_help_works_on_every_command(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main([*argv, "--help"])
    assert exited.value.code == 0
    assert "usage: omni-bench" in capsys.readouterr().out


# --- 11. One clear line instead of a traceback ---------------------------------------------------------------------

def test_11_files_that_are_not_utf8_name_themselves(tmp_path, capsys):
    bad_task = tmp_path / "s22.yaml"
    bad_task.write_bytes(all_tasks()["s22"].path.read_bytes().replace(b"CCSD", b"CCSD\xff"))
    with pytest.raises(OmniBenchError, match="s22.yaml: task file is not UTF-8 text"):
        load_task(bad_task)
    assert run_emt(tmp_path, capsys, "--limit", "2")[0] == 0
    for name in ("baseline.json", "baseline.csv"):
        (tmp_path / name).write_bytes(b"\xff\xfe{}")
        code, _, err = omni(capsys, "gate", "--baseline", str(tmp_path / name), "--results", str(tmp_path / "out"))
        assert code == 2 and f"cannot read baseline {tmp_path / name}" in err and "utf-8" in err.lower()
    csv_path = tmp_path / "out" / "emt" / "s22.predictions.csv"
    csv_path.write_bytes(csv_path.read_bytes().replace(b"kcal/mol", b"kcal/mol\xff", 1))
    code, _, err = omni(capsys, "leaderboard", "--results", str(tmp_path / "out"))
    assert code == 2 and "s22.predictions.csv: predictions file is not UTF-8 text" in err


def test_11_a_model_arg_that_is_not_yaml(capsys):
    with pytest.raises(OmniBenchError, match=r"--model-arg 'foo=\[1,2': the value is not valid YAML"):
        parse_model_arg("foo=[1,2")


def test_11_a_corrupted_store_says_what_is_readable_and_how_to_salvage_it(tmp_path, capsys):
    assert run_emt(tmp_path, capsys)[0] == 0
    store = tmp_path / "s.db"
    with sqlite3.connect(store) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = db.execute("PRAGMA page_size").fetchone()[0]
        root = db.execute("SELECT rootpage FROM sqlite_master WHERE name='task_inputs'").fetchone()[0]
    with open(store, "r+b") as fh:  # overwrite the task_inputs table's root page
        fh.seek((root - 1) * page)
        fh.write(b"\x0d" + b"\xff" * (page - 1))
    code, _, err = run_emt(tmp_path, capsys)
    assert code == 2 and err.count("\n") == 1
    assert "is damaged" in err and "readable: 22 results rows" in err and ".recover" in err


def test_11_a_stored_row_with_bad_values_json_is_computed_again(tmp_path, capsys):
    assert run_emt(tmp_path, capsys, "--limit", "3")[0] == 0
    with sqlite3.connect(tmp_path / "s.db") as db:
        db.execute("UPDATE results SET values_json='{bad' WHERE item_id='Ammonia_dimer'")
    code, _, err = run_emt(tmp_path, capsys, "--limit", "3")
    assert code == 0 and "'Ammonia_dimer' (s22) cannot be read" in err and "computed again" in err
    record = json.loads((tmp_path / "out" / "emt" / "s22.json").read_text())
    assert record["timing"]["items_computed"] == 1 and record["n_failed"] == 0


def test_11_a_baseline_value_that_is_not_a_number(tmp_path, capsys):
    assert run_emt(tmp_path, capsys, "--limit", "3")[0] == 0
    baseline = tmp_path / "baseline.json"
    assert omni(capsys, "gate", "--write-baseline", "--baseline", str(baseline), "--results",
                str(tmp_path / "out"))[0] == 0
    payload = json.loads(baseline.read_text())
    payload["results"][0]["metrics"]["mae"]["value"] = "abc"
    baseline.write_text(json.dumps(payload))
    code, _, err = omni(capsys, "gate", "--baseline", str(baseline), "--results", str(tmp_path / "out"))
    assert code == 2 and "mae.value='abc', not a number" in err
    assert omni(capsys, "leaderboard", "--results", str(tmp_path / "out"), "--out", str(tmp_path / "lb"))[0] == 0
    board = pd.read_csv(tmp_path / "lb.csv", dtype=str, keep_default_na=False)
    board.loc[0, "value"] = "abc"
    board.to_csv(tmp_path / "lb.csv", index=False)
    code, _, err = omni(capsys, "gate", "--baseline", str(tmp_path / "lb.csv"), "--results", str(tmp_path / "out"))
    assert code == 2 and "is not a number where one is needed" in err


def test_11_a_data_root_that_is_a_file(tmp_path, capsys):
    afile = tmp_path / "data"
    afile.write_text("")
    for argv in (["run", "-m", "emt", "-t", "mor41", "--data-dir", str(afile)],
                 ["data", "fetch", "MOR41", "--data-dir", str(afile), "--mirror", str(tmp_path)]):
        code, _, err = omni(capsys, *argv)
        assert code == 2 and f"the data root {afile} (--data-dir) is a file, not a folder" in err


# --- 12. A card path may contain '@'; a card named '..' stays inside --out ----------------------------------------

def test_12_card_paths_with_at_signs_and_a_card_named_dot_dot(tmp_path, capsys):
    folder = tmp_path / "runs@2"
    folder.mkdir()
    card = card_file(folder, "dots", "omni_bench.models.factories:emt")
    card.write_text(card.read_text().replace("name: dots", "name: '..'"))
    (variant,) = resolve_models([str(card)])
    assert variant.channel is None and variant.card.source == str(card)
    code, _, err = omni(capsys, "run", "-m", str(card), "-t", "s22", "--limit", "1", "--store", str(tmp_path / "s.db"),
                        "--out", str(tmp_path / "out" / "inner"), "--no-progress")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out" / "inner").iterdir()) == ["__"]
    assert not (tmp_path / "out" / "s22.json").exists()
    multi = card_file(folder, "multi", "omni_bench.models.factories:emt",
                      channels={"A": {"level_of_theory": "EMT"}, "B": {"level_of_theory": "EMT"}})
    assert [v.channel for v in resolve_models([f"{multi}@B"])] == ["B"]


# --- 13. One broken task file fails only when its task is asked for ---------------------------------------------

def test_13_a_broken_task_file_blocks_only_itself(tmp_path, capsys, monkeypatch):
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "broken.yaml").write_text("name: broken\nversion: [1\n")
    monkeypatch.setenv(task_registry.TASK_PATH_ENV, str(extra))
    assert "s22" in all_tasks() and "broken" not in all_tasks()
    code, out, _ = omni(capsys, "list", "tasks")
    assert code == 0 and any(line.startswith("broken") and "BROKEN" in line and "not valid YAML" in line
                             for line in out.splitlines())
    assert run_emt(tmp_path, capsys, "--limit", "1")[0] == 0
    code, _, err = omni(capsys, "run", "-m", "emt", "-t", "broken", "--store", str(tmp_path / "s.db"))
    assert code == 2 and "broken.yaml: not valid YAML" in err
    code, _, err = omni(capsys, "run", "-m", "emt", "-s", "quick", "--limit", "1", "--store", str(tmp_path / "s.db"),
                        "--out", str(tmp_path / "out"), "--no-progress")
    assert code == 0 and "could not be read and are left out" in err and "broken" in err


# --- 14. Which channel ran ---------------------------------------------------------------------------------------

def test_14_the_channel_that_runs_is_named_with_the_default_and_the_others(capsys):
    (variant,) = resolve_models(["7net-mf-0"])
    assert describe_channels([variant]) == [
        "7net-mf-0: channel PBE, the model's default (others: R2SCAN; choose with 7net-mf-0@CHANNEL, --channel, "
        "or --channel all)"]
    assert describe_channels(resolve_models(["7net-mf-0@R2SCAN", "emt"]))[0].startswith(
        "7net-mf-0: channel R2SCAN (others: PBE;")
    code, out, _ = omni(capsys, "list", "models")
    assert re.search(r"^7net-mf-0 +channels: PBE \(default\), R2SCAN$", out, re.MULTILINE)


# --- 15. 'charge/spin not passed' shows in the terminal table ---------------------------------------------------

def test_15_the_table_counts_items_whose_charge_or_spin_was_dropped(tmp_path, capsys, data_root):
    code, out, _ = run_emt(tmp_path, capsys, "--limit", "6", task="rost61", data_root=data_root)
    assert code == 0
    header, _, row = out.splitlines()[:3]
    column = header.index("charge/spin not passed")
    record = json.loads((tmp_path / "out" / "emt" / "rost61.json").read_text())
    dropped = record["notes"]["charge/spin not passed: the model does not accept them"]
    assert dropped > 0 and row[column:].split()[0] == str(dropped)


# --- 16. Output details --------------------------------------------------------------------------------------------

def _outcome(task: str, metrics: dict, **sizes) -> TaskOutcome:
    return TaskOutcome("some-model", task, 39, 0, metrics, 0, **sizes)


def test_16_table_leaves_out_unit_one_and_fits_the_terminal():
    metrics = {f"metric_{i}": {"value": 0.6573, "unit": "1" if i == 0 else "eV/atom"} for i in range(30)}
    table = format_table([_outcome("wbm-formation", metrics)], width=100)
    assert re.search(r"metric_0=0.6573(  |$)", table, re.MULTILINE) and "0.6573 1" not in table
    assert all(len(line) <= 100 for line in table.splitlines())
    assert set(table.splitlines()[1]) == {"-"}


def test_16_list_tasks_columns_line_up(capsys):
    code, out, _ = omni(capsys, "list", "tasks")
    lines = out.splitlines()
    assert code == 0 and len({line.index(" v1 ") for line in lines}) == 1


def test_16_list_suites_reads_no_data_file_and_imports_no_loader(tmp_path):
    code = ("import sys; from omni_bench.cli import main; main(['list', 'suites']); "
            "print(sorted(m for m in sys.modules if m.startswith(('omni_bench.loaders.', 'omni_bench.protocols.', "
            "'ase.io', 'torch'))))")
    env = {**os.environ, "OMNI_BENCH_DATA": str(tmp_path / "nothing-here"),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "mor41 (95 molecules, 41 reactions)" in done.stdout and done.stdout.splitlines()[-1] == "[]"


#: tasks whose loaders take seconds; their counts are checked by the same ``load_items`` whenever they run, as
#: they do in full in test_tasks_mofs.py (golddac and mofsimbench-eos with the tabulated model)
CHECKED_WHERE_THEY_RUN = {"golddac", "mofsimbench-eos"}


@pytest.mark.parametrize("task", sorted(set(all_tasks()) - CHECKED_WHERE_THEY_RUN))
def test_16_the_counts_each_task_file_declares_are_its_loaders(task, data_root):
    """load_items checks the declared counts against the loader; every bundled task declares them."""
    spec = all_tasks()[task]
    assert spec.counts is not None and all(all_tasks()[t].counts for t in CHECKED_WHERE_THEY_RUN)
    items = load_items(spec, data_root)
    assert len(items) == spec.counts.items


def test_16_wrong_declared_counts_name_the_field(tmp_path):
    spec = edited_task(tmp_path / "tasks", "s22", lambda raw: raw["counts"].update(items=21))
    with pytest.raises(OmniBenchError, match=r"s22.yaml: field 'counts.items' is 21, but the data .* give 22"):
        load_items(spec, None)


# --- 17. Both the structure count and the scored-reaction count, named ----------------------------------------------

def test_17_the_table_shows_structures_and_reactions_by_name(capsys):
    table = format_table([_outcome("mamun-noble", {"mae": {"value": 0.41, "unit": "eV"}}, n_scored=31,
                                   item_name="structures", scored_name="reactions")])
    assert "items, scored" in table.splitlines()[0] and "39 structures, 31 reactions" in table
    code, out, _ = omni(capsys, "list", "suites")
    assert "mamun-noble (39 structures, 31 reactions)" in out and "s22 (22 dimers)" in out


def test_17_a_run_reports_what_its_items_and_scored_values_are(tmp_path, capsys, data_root):
    code, out, _ = run_emt(tmp_path, capsys, "--limit", "8", task="mor41", data_root=data_root)
    assert code == 0 and "8 molecules, " in out and " reactions" in out
    assert textwrap.dedent(out).splitlines()[0].split()[:4] == ["model", "task", "items,", "scored"]
