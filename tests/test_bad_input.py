"""Bad input gives one clear error naming the file and the field; nothing is computed on it."""

from __future__ import annotations

import json
import math
import re
import shutil
import textwrap
import time
from pathlib import Path

import pytest
from ase.build import molecule
from helpers import omni, run_emt, task_items

from omni_bench import plugins
from omni_bench.commands.sweep import load_sweep
from omni_bench.errors import OmniBenchError
from omni_bench.executors.slurm import load_cluster_config
from omni_bench.items import Item, Quantity
from omni_bench.models.card import card_from_dict, load_card
from omni_bench.models.registry import parse_model_arg, resolve_models
from omni_bench.run.prepare import check_items
from omni_bench.scored import check_scored
from omni_bench.task_registry import all_tasks
from omni_bench.taskspec import load_task


def dimer_item(item_id: str, reference: Quantity) -> Item:
    water = molecule("H2O")
    return Item(item_id, {"complex": water + water, "monomer_1": water, "monomer_2": water},
                reference={"interaction_energy": reference})


def test_missing_reference_value_names_task_item_and_quantity():
    spec = all_tasks()["s22"]
    with pytest.raises(OmniBenchError, match="item 'w2' has no valid reference interaction_energy"):
        check_items(spec, [dimer_item("w1", Quantity(-0.2, "eV")), dimer_item("w2", Quantity(math.nan, "eV"))])


def test_reference_in_a_unit_of_another_dimension_names_the_task_file_field():
    spec = all_tasks()["s22"]
    with pytest.raises(OmniBenchError) as info:
        check_items(spec, [dimer_item("w1", Quantity(1.0, "GPa"))])
    message = str(info.value)
    assert str(spec.path) in message and "'units.interaction_energy'" in message and "'GPa'" in message


def test_duplicate_item_ids_are_refused():
    spec = all_tasks()["s22"]
    with pytest.raises(OmniBenchError, match="item id 'w1' appears twice"):
        check_items(spec, [dimer_item("w1", Quantity(-0.2, "eV"))] * 2)


def test_structure_file_that_does_not_parse_names_the_file(tmp_path, data_root, capsys):
    """A user's copy of MOR41 with one corrupted coord file whose hash the task file accepts: the loader's
    error names the file."""
    import shutil

    import yaml

    from omni_bench.cli import main
    from omni_bench.data import sha256_file

    root = tmp_path / "data"
    shutil.copytree(data_root / "MOR41" / "geometries", root / "MyMOR41")
    broken = root / "MyMOR41" / "AcCl" / "coord"
    lines = broken.read_text().splitlines()
    broken.write_text("\n".join(lines[:1] + ["  0.0 zero 0.0 c"] + lines[2:]) + "\n")
    spec = all_tasks()["mor41"]
    task = yaml.safe_load(spec.path.read_text())
    for entry in task["dataset"]["files"]:
        entry["path"] = entry["path"].replace("MOR41/geometries/", "MyMOR41/")
        entry["sha256"] = sha256_file(root / entry["path"])
    task["dataset"]["params"]["structures"] = "MyMOR41"
    tasks_dir = tmp_path / "tasks"
    tasks_dir.mkdir()
    (tasks_dir / "mor41.yaml").write_text(yaml.safe_dump(task))
    shutil.copy(spec.path.parent / "mor41-reactions.csv", tasks_dir)
    code = main(["--tasks-dir", str(tasks_dir), "run", "--model", "emt", "--task", "mor41", "--data-dir", str(root),
                 "--store", str(tmp_path / "s.db"), "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 2
    error = capsys.readouterr().err
    assert "MyMOR41/AcCl/coord: not a readable TURBOMOLE coord file" in error and "zero" in error
    assert not (tmp_path / "out").exists()  # nothing computed on bad input


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
def test_a_nan_or_inf_reference_names_file_row_and_field(mor41_copy, value):
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


def test_a_duplicate_reaction_id_with_another_value_names_both_rows(mor41_copy):
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


def test_an_empty_reaction_table_is_an_error(mor41_copy):
    _edit_reactions(mor41_copy, lambda lines: lines[:1])
    with pytest.raises(OmniBenchError, match=f"{MOR41_TABLE}: no reactions: the table is empty"):
        _load_mor41(mor41_copy)


def test_a_nan_reference_that_a_derive_step_builds_is_caught_for_every_task(data_root):
    """Reactions of mamun-noble are built by its loader without a table: the runner's check catches them."""
    spec = all_tasks()["mamun-noble"]
    items = task_items("mamun-noble", data_root)
    adslab = next(i for i in items if i.meta.get("reactions"))
    adslab.meta["reactions"][0]["reference"] = Quantity(math.nan, "eV")
    reaction = re.escape(adslab.meta["reactions"][0]["id"])
    with pytest.raises(OmniBenchError, match=f"task 'mamun-noble': '{reaction}' has no valid reference "
                                             r"adsorption_energy \(nan\) in Mamun2019"):
        check_scored(spec, items)


@pytest.mark.parametrize("seconds", ["-5", "0", "nan"])
def test_a_timeout_that_is_not_positive_is_refused(tmp_path, capsys, seconds):
    code, _, err = run_emt(tmp_path, capsys, "--item-timeout", seconds)
    assert code == 2 and "--item-timeout must be a positive number of seconds" in err
    assert not (tmp_path / "out").exists()


def test_a_sweep_file_timeout_that_is_not_positive_names_the_field(tmp_path, capsys):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("models: [emt]\ntasks: [s22]\nitem_timeout: -5\n")
    code, _, err = omni(capsys, "sweep", str(sweep))
    assert code == 2 and "field 'item_timeout' must be a positive number of seconds" in err


def test_a_device_that_is_not_one_is_refused_from_the_command_line_and_a_sweep_file(tmp_path, capsys):
    code, _, err = run_emt(tmp_path, capsys, "--device", "quantum")
    assert code == 2 and "--device 'quantum' is not a device" in err and not (tmp_path / "out").exists()
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("models: [emt]\ntasks: [s22]\ndevice: quantum\n")
    code, _, err = omni(capsys, "sweep", str(sweep))
    assert code == 2 and "field 'device' 'quantum' is not a device: use auto" in err


@pytest.mark.parametrize("command", [["run", "--model", "emt", "--task", "s22", "--out", ""],
                                     ["data", "mirror", "X23_DMC", "--out", " "],
                                     ["gate", "--baseline", "", "--results", "x"]])
def test_an_empty_path_is_refused_rather_than_read_as_this_folder(tmp_path, capsys, command, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_code:
        omni(capsys, *command)
    assert exit_code.value.code == 2 and "an empty path" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_folders_that_cannot_be_made_are_one_line_errors(tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    code, _, err = omni(capsys, "data", "mirror", "X23_DMC", "--out", str(a_file))
    assert code == 2 and err.strip() == f"omni-bench: error: --out {a_file} is a file; give the folder to write " \
                                        "the mirror into"
    code, _, err = omni(capsys, "data", "fetch", "MOR41", "--data-dir", str(a_file / "x"), "--no-progress")
    line = err.strip()
    assert code == 2 and line.startswith(f"omni-bench: error: {a_file / 'x'}/") and line.endswith("Not a directory")


def test_files_that_are_not_utf8_name_themselves(tmp_path, capsys):
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


def test_a_model_arg_that_is_not_yaml(capsys):
    with pytest.raises(OmniBenchError, match=r"--model-arg 'foo=\[1,2': the value is not valid YAML"):
        parse_model_arg("foo=[1,2")


def test_a_data_root_that_is_a_file(tmp_path, capsys):
    afile = tmp_path / "data"
    afile.write_text("")
    for argv in (["run", "-m", "emt", "-t", "mor41", "--data-dir", str(afile)],
                 ["data", "fetch", "MOR41", "--data-dir", str(afile), "--mirror", str(tmp_path)]):
        code, _, err = omni(capsys, *argv)
        assert code == 2 and f"the data root {afile} (--data-dir) is a file, not a folder" in err


def alias_bomb(flow: bool = False) -> str:
    """10^9 leaves from nine lines: every level lists the previous one ten times."""
    levels = [f"&l0 [{', '.join(['x'] * 10)}]"] + [f"&l{n} [{', '.join([f'*l{n - 1}'] * 10)}]" for n in range(1, 9)]
    return f"[{', '.join(levels)}]" if flow else "".join(f"k{n}: {level}\n" for n, level in enumerate(levels))


ALIAS_BOMB = alias_bomb()
CARD_HEAD = ("name: bomb\ndescription: d\nfactory: omni_bench.models.factories:emt\nlevel_of_theory: EMT\n"
             "trained_with_dispersion: false\n")


def _load_user_settings(path: Path, monkeypatch):
    from omni_bench import user_config

    monkeypatch.setattr(user_config, "config_path", lambda: path)
    return user_config.load()


@pytest.mark.parametrize("what, text, load", [
    ("card args", CARD_HEAD + "args:\n" + textwrap.indent(ALIAS_BOMB, "  "), lambda p, _: load_card(p)),
    ("sweep models[].args", "tasks: [s22]\nmodels:\n  - model: emt\n    args:\n" + textwrap.indent(ALIAS_BOMB, " " * 6),
     lambda p, _: load_sweep(p)),
    ("task file", ALIAS_BOMB, lambda p, _: load_task(p)),
    ("cluster config", "cluster:\n" + textwrap.indent(ALIAS_BOMB, "  "), lambda p, _: load_cluster_config(p)),
    ("settings file", ALIAS_BOMB, _load_user_settings),
])
def test_an_alias_bomb_in_any_user_file_is_refused_in_one_line_at_once(tmp_path, monkeypatch, what, text, load):
    path = tmp_path / "file.yaml"
    path.write_text(text)
    started = time.perf_counter()
    with pytest.raises(OmniBenchError, match=rf"^{re.escape(str(path))}: .* refused: its aliases \(\*name\) expand"):
        load(path, monkeypatch)
    assert time.perf_counter() - started < 1.0


def test_an_alias_bomb_in_a_model_arg_and_a_value_that_contains_itself_are_refused(tmp_path):
    with pytest.raises(OmniBenchError, match=r"^--model-arg key: the value is refused: its aliases"):
        parse_model_arg(f"key={alias_bomb(flow=True)}")
    card = tmp_path / "card.yaml"
    card.write_text(CARD_HEAD + "args: &loop {key: *loop}\n")
    with pytest.raises(OmniBenchError, match="line 6: a value contains itself through an alias"):
        load_card(card)
    card.write_text(CARD_HEAD + "args: &shared {device: cpu}\nnotes: {<<: *shared, copy: *shared}\n")
    assert load_card(card).args == {"device": "cpu"}  # a few shared values are fine


@pytest.mark.parametrize("name", ["emt\x01\x1b[2J", "\ud800", " ", "x" * 201])
def test_names_with_control_characters_lone_surrogates_or_no_text_are_refused_where_they_enter(tmp_path, name):
    with pytest.raises(OmniBenchError, match="field 'name' "):
        card_from_dict({"name": name, "description": "d", "factory": "omni_bench.models.factories:emt",
                        "level_of_theory": "EMT", "trained_with_dispersion": False}, tmp_path / "card.yaml")
    with pytest.raises(OmniBenchError, match="field 'channels' channel name "):
        card_from_dict({"name": "ok", "description": "d", "factory": "omni_bench.models.factories:tabulated",
                        "channel_arg": "key", "channels": {name: {"level_of_theory": "EMT"}},
                        "trained_with_dispersion": False}, tmp_path / "card.yaml")
    if name.strip():
        with pytest.raises(OmniBenchError, match="field 'name' "):  # --model package.module:factory names a model too
            resolve_models([f"omni_bench.models.factories:emt{name}"])
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(json.dumps({"models": [{"model": "emt", "channels": [name]}], "tasks": ["s22"]}))
    refused = r"(field 'models\[0\]\.channels' name |not valid YAML .*invalid Unicode)"  # YAML refuses surrogates
    with pytest.raises(OmniBenchError, match=rf"{re.escape(str(sweep))}: {refused}"):
        load_sweep(sweep)


def test_sweep_models_and_argument_names_with_control_characters_are_refused(tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text('models: ["emt\\x1b[2J"]\ntasks: [s22]\n')
    with pytest.raises(OmniBenchError, match=r"field 'models\[0\].model' 'emt\\x1b\[2J' holds control"):
        load_sweep(sweep)
    sweep.write_text('models: [{model: emt, args: {"\\x1b[2J": 1}}]\ntasks: [s22]\n')
    with pytest.raises(OmniBenchError, match=r"field 'models\[0\].args' keys must be argument names"):
        load_sweep(sweep)
    card = tmp_path / "card.yaml"
    card.write_text(CARD_HEAD + 'args: {"\\x1b[2J": 1}\n')
    with pytest.raises(OmniBenchError, match=r"field 'args' keys must be argument names"):
        load_card(card)
    with pytest.raises(OmniBenchError, match=r"must look like key=value, the key an argument name"):
        parse_model_arg("\x1b[2J=1")


@pytest.mark.parametrize("name", ["../../x", "/tmp/elsewhere", "", "..", "a/b", "ok\n"])
def test_env_create_refuses_names_that_are_not_one_folder_under_the_environments_root(tmp_path, capsys, monkeypatch,
                                                                                       name):
    root = tmp_path / "a" / "envs"
    monkeypatch.setenv("OMNI_BENCH_ENVS", str(root))
    code, _, err = omni(capsys, "env", "create", name, "--model", "emt")
    assert code == 2 and f"environment name {name!r}: use letters" in err and err.count("\n") == 1
    assert not any(tmp_path.rglob("pyvenv.cfg")) and not root.exists()


@pytest.mark.parametrize("manifest", ["{not json", "[1, 2]", '{"cards": "emt"}', b"\xff\xfe"])
def test_env_list_with_a_damaged_manifest_names_it_in_one_line(tmp_path, capsys, monkeypatch, manifest):
    monkeypatch.setenv("OMNI_BENCH_ENVS", str(tmp_path))
    path = tmp_path / "broken" / "omni-bench-env.json"
    path.parent.mkdir()
    path.write_bytes(manifest if isinstance(manifest, bytes) else manifest.encode())
    code, _, err = omni(capsys, "env", "list")
    assert code == 2 and f"{path}: damaged environment manifest" in err and "env create broken" in err
    assert err.count("\n") == 1


def test_a_card_path_too_long_for_the_file_system_and_a_list_as_a_mapping_key(tmp_path, capsys):
    code, _, err = omni(capsys, "run", "-m", "c" * 300 + ".yaml", "-t", "s22")
    assert code == 2 and "File name too long" in err and err.count("\n") == 1
    card = tmp_path / "card.yaml"
    card.write_text(CARD_HEAD + "? [a, b]\n: 1\n")
    code, _, err = omni(capsys, "run", "-m", str(card), "-t", "s22")
    assert code == 2 and f"{card}: not valid YAML (model card, line 6, column 3): a mapping key must be a single " \
                         "value, not a list" in err
