"""Bad input gives one clear error naming the file and the field; nothing is computed on it."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import pytest
from ase.build import molecule
from helpers import omni, run_emt, task_items

from omni_bench import plugins
from omni_bench.errors import OmniBenchError
from omni_bench.items import Item, Quantity
from omni_bench.models.registry import parse_model_arg
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
