"""Tasks that score one computation against another reference (or a subset of its items) share its stored items;
the claim is checked against both task files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from omni_bench import cli
from omni_bench.computed_as import store_identity
from omni_bench.errors import OmniBenchError
from omni_bench.task_registry import all_tasks
from omni_bench.taskspec import load_task, protocol_params

TASKS = Path(__file__).resolve().parents[1] / "tasks"


def test_the_bundled_variants_are_stored_as_their_full_task():
    tasks = all_tasks()
    full = store_identity(tasks["torsionnet500"], protocol_params(tasks["torsionnet500"]))
    for name in ("torsionnet500-small", "torsionnet500-wb97x", "torsionnet500-wb97x-small"):
        assert store_identity(tasks[name], protocol_params(tasks[name])) == full, name
    for subset, whole in [("csp-landscapes-small", "csp-landscapes"), ("elastic-moduli", "elastic-moduli-full"),
                          ("heat-capacity", "heat-capacity-full")]:
        assert store_identity(tasks[subset], protocol_params(tasks[subset])).name == whole


def test_a_second_reference_scores_the_stored_energies_without_computing_again(tmp_path, data_root):
    common = ["--model", "emt", "--store", str(tmp_path / "s.db"), "--out", str(tmp_path / "out"),
              "--data-dir", str(data_root), "--no-progress"]
    assert cli.main(["run", "--task", "torsionnet500-small", "--limit", "3", *common]) == 0
    assert cli.main(["run", "--task", "torsionnet500-wb97x-small", "--limit", "3", *common]) == 0
    first, second = (json.loads((tmp_path / "out" / "emt" / f"{t}.json").read_text())
                     for t in ("torsionnet500-small", "torsionnet500-wb97x-small"))
    assert first["timing"]["items_computed"] == 3 and second["timing"]["items_computed"] == 0
    assert second["timing"]["items_from_store"] == 3 and second["config"]["stored_as"] == "torsionnet500"
    # the same model energies against two references give two different scores
    assert first["metrics"]["relative_energy_mae"]["value"] != second["metrics"]["relative_energy_mae"]["value"]


def _pair(tmp_path: Path, change) -> Path:
    """torsionnet500 and a copy that claims to be computed as it, with ``change`` applied to the copy."""
    shutil.copy(TASKS / "torsionnet500.yaml", tmp_path / "torsionnet500.yaml")
    data = yaml.safe_load((TASKS / "torsionnet500-wb97x.yaml").read_text())
    data["name"] = "variant"
    change(data)
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("change, message", [
    (lambda d: d["protocol"].update(params={"barrier": "adjacent_extrema"}), "protocol.params differ"),
    (lambda d: d["dataset"]["params"].update(tabulated={}), "dataset.params other than reference, subset differ"),
    (lambda d: d.update(computed_as="torsionnet501"), "no torsionnet501.yaml beside it"),
])
def test_a_false_claim_names_the_file_the_field_and_the_difference(tmp_path, change, message):
    spec = load_task(_pair(tmp_path, change))
    with pytest.raises(OmniBenchError) as info:
        store_identity(spec, protocol_params(spec))
    text = str(info.value)
    assert text.startswith(str(spec.path)) and "'computed_as'" in text and message in text


def test_a_false_claim_stops_the_run_with_exit_code_2_before_any_model_runs(tmp_path, capsys, data_root):
    path = _pair(tmp_path, lambda d: d["protocol"].update(params={"barrier": "adjacent_extrema"}))
    code = cli.main(["--tasks-dir", str(tmp_path), "run", "--model", "emt", "--task", "variant",
                     "--store", str(tmp_path / "s.db"), "--out", str(tmp_path / "out"), "--data-dir", str(data_root),
                     "--no-progress"])
    assert code == 2 and f"{path}: field 'computed_as'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
