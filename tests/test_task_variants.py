"""Task variants: a file that ``extends`` another states only what differs; where it computes what its parent
computes it is stored as its parent, by construction; one naming rule for CPU subsets; and every bundled task
keeps the store identity its committed results were computed under."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import REPO

from omni_bench import cli
from omni_bench.errors import OmniBenchError
from omni_bench.identity import StoreIdentity, store_identity
from omni_bench.schema import load_yaml
from omni_bench.task_registry import all_tasks
from omni_bench.taskspec import NOT_INHERITED, builtin_tasks_dir, load_task

COMMITTED_RESULTS = REPO / "reports" / "leaderboard-results"


def test_every_task_keeps_the_store_identity_of_its_committed_results():
    """What the committed leaderboard results were computed under (task name and version in the store, inputs
    hash) is what each task file gives now, so no stored item is computed again. A task renamed since keeps
    its results' figures (``renamed_from`` in the results file names the name it had)."""
    tasks = all_tasks()
    seen = set()
    for path in sorted(COMMITTED_RESULTS.glob("*/*.json")):
        record = json.loads(path.read_text())
        spec = tasks[record["task"]["name"]]
        recorded = StoreIdentity(record["config"]["stored_as"], record["task"]["version"],
                                 record["config"]["inputs_hash"])
        assert store_identity(spec) == recorded, path
        seen.add(spec.name)
    assert len(seen) == 30


def test_variants_that_compute_what_their_parent_computes_are_stored_as_it():
    tasks = all_tasks()
    torsions = store_identity(tasks["torsionnet500"])
    for name in ("torsionnet500-small", "torsionnet500-wb97x", "torsionnet500-wb97x-small"):
        assert store_identity(tasks[name]) == torsions, name
    assert store_identity(tasks["csp-landscapes-small"]).name == "csp-landscapes"
    # renamed full sets keep the name their items were stored under, and their subsets follow them
    for full, old in (("heat-capacity", "heat-capacity-full"), ("elastic-moduli", "elastic-moduli-full")):
        assert store_identity(tasks[full]).name == old == store_identity(tasks[f"{full}-small"]).name
    # a variant that computes something else is stored as itself: other files, or another force tolerance
    for name in ("mofsimbench-eos-small", "mofsimbench-eos-small-tight", "openff-torsions-wb97m", "x23-r2scan",
                 "mamun-noble-relaxed"):
        assert tasks[name].parent is not None and store_identity(tasks[name]).name == name


def test_the_naming_rule_a_full_set_is_plain_and_its_cpu_subset_is_name_small():
    tasks = all_tasks()
    subsets = {name: spec for name, spec in tasks.items() if spec.counts and spec.counts.subset_of}
    assert len(subsets) == 7
    for name, spec in subsets.items():
        full = tasks[spec.counts.subset_of]
        assert name == f"{full.name}-small", name
        assert full in spec.lineage or spec.parent.name.startswith(full.name.split("-")[0]), name
        assert "full" in full.suites and "full" not in spec.suites
    assert not [name for name in tasks if name.endswith("-full")]


def test_a_variant_states_only_what_differs_from_its_parent():
    """No key of a variant's own file repeats the value its parent already gives (it would be a copy to keep in
    step by hand)."""
    def repeated(own, parent, where=""):
        for key, value in own.items():
            if isinstance(value, dict) and isinstance(parent.get(key), dict):
                yield from repeated(value, parent[key], f"{where}{key}.")
            elif key in parent and parent[key] == value:
                yield f"{where}{key}"

    variants = [spec for spec in all_tasks().values() if spec.parent is not None]
    assert len(variants) == 14
    for spec in variants:
        own = {k: v for k, v in load_yaml(spec.path, "task file").items() if k not in NOT_INHERITED}
        assert list(repeated(own, spec.parent.raw)) == [], spec.name


def test_a_subset_and_a_second_reference_score_the_stored_energies_without_computing_again(tmp_path, data_root):
    common = ["--model", "emt", "--store", str(tmp_path / "s.db"), "--out", str(tmp_path / "out"),
              "--data-dir", str(data_root), "--no-progress"]
    assert cli.main(["run", "--task", "torsionnet500-small", "--limit", "3", *common]) == 0
    # in one run, the second task reads what the first just stored
    assert cli.main(["run", "--task", "torsionnet500-wb97x-small", "--task", "torsionnet500-wb97x", "--limit", "3",
                     *common]) == 0
    first, second, third = (json.loads((tmp_path / "out" / "emt" / f"{t}.json").read_text())
                            for t in ("torsionnet500-small", "torsionnet500-wb97x-small", "torsionnet500-wb97x"))
    assert first["timing"]["items_computed"] == 3
    assert second["timing"]["items_computed"] == 0 and second["timing"]["items_from_store"] == 3
    assert second["config"]["stored_as"] == third["config"]["stored_as"] == "torsionnet500"
    assert [p["name"] for p in second["task"]["extends"]] == ["torsionnet500-wb97x", "torsionnet500"]
    # the same model energies against two references give two different scores
    assert first["metrics"]["relative_energy_mae"]["value"] != second["metrics"]["relative_energy_mae"]["value"]


def write_child(folder: Path, text: str, name: str = "child") -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\n{text}")
    return path


def test_extends_merges_mappings_replaces_the_rest_and_null_removes(tmp_path):
    path = write_child(tmp_path, "extends: s22\nsuites: [mine]\ngate: {mae: {abs: 0.5}}\n"
                                 "metrics: [{name: mae, quantity: interaction_energy, statistic: mae, "
                                 "direction: lower}]\ncounts: null\n")
    spec, parent = load_task(path), load_task(builtin_tasks_dir() / "s22.yaml")
    assert spec.parent.name == "s22" and spec.suites == ["mine"] and spec.counts is None and parent.counts
    assert spec.gate["mae"].abs == 0.5 and spec.gate["mae"].rel == parent.gate["mae"].rel
    assert [m.name for m in spec.metrics] == ["mae"] and len(parent.metrics) > 1
    assert spec.loader == parent.loader and store_identity(spec) == store_identity(parent)  # nothing computed differs
    versioned = load_task(write_child(tmp_path, "extends: s22\nversion: 2\n", "other"))
    assert versioned.version == 2 and store_identity(versioned) == store_identity(parent)


@pytest.mark.parametrize("text, message", [
    ("extends: s222\n", "field 'extends' names 's222', but there is no s222.yaml beside it"),
    ("extends: ../s22.yaml\n", "field 'extends' must name a task"),
    ("extends: child\n", "field 'extends' names the task itself"),
    ("extends: s22\nnosuch: 1\n", "field 'nosuch' unknown key"),
    ("extends: s22\nmetrics: null\n", "field 'metrics' is required"),
])
def test_a_bad_extends_names_the_file_and_the_field(tmp_path, text, message):
    path = write_child(tmp_path, text)
    with pytest.raises(OmniBenchError) as info:
        load_task(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_a_loop_through_two_files_is_named(tmp_path):
    write_child(tmp_path, "extends: b\n", "a")
    path = write_child(tmp_path, "extends: a\n", "b")
    with pytest.raises(OmniBenchError, match="makes a loop"):
        load_task(path)


def test_a_user_task_may_extend_a_built_in_one_and_shares_its_stored_items(tmp_path):
    folder = tmp_path / "tasks"
    write_child(folder, "extends: s22\nsuites: [mine]\ndescription: S22 in a suite of my own\n", "my-s22")
    common = ["--store", str(tmp_path / "s.db"), "--out", str(tmp_path / "out"), "--no-progress"]
    assert cli.main(["--tasks-dir", str(folder), "run", "-m", "emt", "-s", "mine", "--limit", "2", *common]) == 0
    assert cli.main(["run", "-m", "emt", "-t", "s22", "--limit", "2", *common]) == 0
    mine, builtin = (json.loads((tmp_path / "out" / "emt" / f"{t}.json").read_text()) for t in ("my-s22", "s22"))
    assert mine["config"]["stored_as"] == "s22" and builtin["timing"]["items_computed"] == 0
    assert mine["metrics"]["mae"] == builtin["metrics"]["mae"] and mine["task"]["config"]["suites"] == ["mine"]
