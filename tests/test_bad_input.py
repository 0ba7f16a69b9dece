"""Bad input gives one clear error naming the file and the field; nothing is computed on it."""

from __future__ import annotations

import math

import pytest
from ase.build import molecule

from omni_bench.errors import OmniBenchError
from omni_bench.items import Item, Quantity
from omni_bench.runner import check_items
from omni_bench.task_registry import all_tasks


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
