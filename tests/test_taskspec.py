"""Task files: every built-in one loads, and every kind of mistake names the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import edited_task, omni, run_emt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omni_bench import task_registry
from omni_bench.errors import OmniBenchError
from omni_bench.run.prepare import load_items
from omni_bench.schema import load_yaml
from omni_bench.task_registry import all_tasks, builtin_tasks_dir, select, suites
from omni_bench.taskspec import load_task

S22 = builtin_tasks_dir() / "s22.yaml"


def write_variant(tmp_path: Path, change, name: str = "s22") -> Path:
    data = yaml.safe_load(S22.read_text())
    change(data)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_builtin_tasks_load_and_form_the_quick_suite():
    tasks = all_tasks()
    assert {"s22", "dcdft"} <= set(tasks)
    assert {"s22", "dcdft"} <= set(suites()["quick"])
    spec = tasks["dcdft"]
    assert spec.protocol == "eos" and spec.units["bulk_modulus"] == "GPa"
    assert "Al" in spec.loader_params["elements"]


@pytest.mark.parametrize("change, field, hint", [
    (lambda d: d.update(metircs=d.pop("metrics")), "'metircs'", "did you mean 'metrics'"),
    (lambda d: d["protocol"].update(nmae="interaction_energy"), "'protocol.nmae'", "unknown key"),
    (lambda d: d["metrics"][0].update(statistic="rmsee"), "'metrics[0].statistic'", "did you mean 'rmse'"),
    (lambda d: d["metrics"][0].update(direction="down"), "'metrics[0].direction'", "lower, higher"),
    (lambda d: d["metrics"][0].update(quantity="energy"), "'metrics[0].quantity'", "has no unit"),
    (lambda d: d.pop("reference"), "'reference'", "is required"),
    (lambda d: d.update(version="one"), "'version'", "must be int"),
    (lambda d: d.update(name="s23"), "'name'", "rename one"),
    (lambda d: d["protocol"].update(name="interaction_enrgy"), "'protocol.name'", "did you mean"),
    (lambda d: d["protocol"].update(params={"complex_rol": "x"}), "'protocol.params.complex_rol'",
     "did you mean 'complex_role'"),
    (lambda d: d["units"].update(interaction_energy="kcal"), "'units.interaction_energy'", "unknown unit"),
    (lambda d: d["units"].update(barrier="eV"), "'units.barrier'", "not a quantity protocol"),
    (lambda d: d["dataset"].update(files=[{"path": "../x", "sha256": "0" * 64}]), "'dataset.files[0].path'",
     "without '..'"),
    (lambda d: d["dataset"].update(files=[{"path": "x.csv", "sha256": "abc"}]), "'dataset.files[0].sha256'",
     "64 lowercase hex"),
    (lambda d: d["gate"].update(mea={"abs": 1}), "'gate.mea'", "did you mean 'mae'"),
    (lambda d: d["gate"]["mae"].update(abs=-1), "'gate.mae.abs'", "negative"),
    (lambda d: d["gate"]["mae"].update(abs="1e-3"), "'gate.mae.abs'", "write it with a dot, e.g. 1.0e-3"),
    (lambda d: d.update(suites=[]), "'suites'", "non-empty"),
    (lambda d: d.update(resample_by=["mof"]), "'resample_by'", "must be str"),
    (lambda d: d["dataset"].update(files_from=["X23_DMC/nowhere/"]), "'dataset.files_from[0]'", "no file of the"),
    (lambda d: d["dataset"].update(files_from=["../X23_DMC"]), "'dataset.files_from[0]'", "relative to the data"),
    (lambda d: d["dataset"].update(files_from="X23_DMC"), "'dataset.files_from'", "must be list"),
    (lambda d: d["counts"].update(subset_of={"task": "s66", "items": 22}), "'counts.subset_of.items'",
     "more than this subset's 22"),
    (lambda d: d["counts"].update(subset_of={"task": "s66"}), "'counts.subset_of.items'", "is required"),
    (lambda d: d.update(scale={"null_predictor": "median"}), "'scale.null_predictor'", "one of zero, mean"),
    (lambda d: d.update(scale={"null_predictor": "zero", "value": 1.0}), "'scale'", "not both"),
    (lambda d: d.update(scale={}), "'scale'", "must give either"),
    (lambda d: d.update(scale={"value": 1.0, "unit": "kcal/mol"}), "'scale.source'", "is required with 'value'"),
    (lambda d: d.update(scale={"value": 0.0, "unit": "kcal/mol", "source": "x"}), "'scale.value'", "positive"),
    (lambda d: d.update(scale={"value": 1.0, "unit": "eV", "source": "x"}), "'scale.unit'",
     "the headline's unit 'kcal/mol'"),
    (lambda d: d.update(domain="molecule"), "'domain'", "did you mean 'molecules'"),
])
def test_mistakes_name_file_and_field(tmp_path, change, field, hint):
    path = write_variant(tmp_path, change)
    with pytest.raises(OmniBenchError) as info:
        load_task(path)
    message = str(info.value)
    assert str(path) in message and field in message and hint in message


def test_every_builtin_task_has_a_domain_and_every_scored_one_a_fixed_error_scale():
    """The leaderboard's domain scores and normalised errors need both; only the timing benchmark has no
    reference to make a null predictor from."""
    tasks = all_tasks()
    assert all(spec.domain for spec in tasks.values())
    assert {name for name, spec in tasks.items() if spec.scale is None} == {"md-speed"}
    assert tasks["s22"].scale.null_predictor == "zero" and tasks["dcdft"].scale.null_predictor == "mean"
    assert tasks["x23-r2scan"].domain == "r2scan-transfer" and tasks["x23"].domain == "molecular-crystals"


def test_a_stated_scale_with_its_source_loads(tmp_path):
    path = write_variant(tmp_path, lambda d: d.update(scale={"value": 1.0, "unit": "kcal/mol",
                                                             "source": "chemical accuracy"}))
    assert load_task(path).scale.describe() == "1 kcal/mol (chemical accuracy)"


def test_every_cpu_subset_names_its_full_task_with_the_same_data_protocol_and_item_count():
    tasks = all_tasks()
    subsets = {name: spec for name, spec in tasks.items() if spec.counts and spec.counts.subset_of}
    assert {"elastic-moduli-small", "heat-capacity-small", "mofsimbench-eos-small", "torsionnet500-small",
            "torsionnet500-wb97x-small", "csp-landscapes-small"} <= set(subsets)
    for name, spec in subsets.items():
        full = tasks[spec.counts.subset_of]
        assert full.counts.items == spec.counts.subset_of_items, name
        assert (full.loader, full.protocol, full.level_of_theory) == (spec.loader, spec.protocol, spec.level_of_theory)
        assert "full" in full.suites and "full" not in spec.suites, name


def test_files_from_takes_a_registry_folder_with_its_hashes(tmp_path):
    """A task may name a folder of the dataset registry instead of listing its files; the files and their
    sha256 become the task's, so they are verified before use and enter the inputs hash."""
    from omni_bench import datasets
    from omni_bench.identity import inputs_hash

    registered = {f.path: f.sha256 for f in datasets.get("X23_DMC").files if f.path.startswith("X23_DMC/solid/")}
    listed = load_task(write_variant(tmp_path, lambda d: d["dataset"].update(
        files=[{"path": p, "sha256": h} for p, h in registered.items()])))
    folder = load_task(write_variant(tmp_path, lambda d: d["dataset"].update(files_from=["X23_DMC/solid"])))
    assert len(registered) == 23 and {f.path: f.sha256 for f in folder.files} == registered
    assert inputs_hash(folder) == inputs_hash(listed)
    assert inputs_hash(folder) != inputs_hash(load_task(S22))


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(OmniBenchError, match="broken.yaml: not valid YAML"):
        load_task(path)


def test_select_unknown_suite_and_task_suggest_names():
    with pytest.raises(OmniBenchError, match="unknown suite 'quik' \\(did you mean 'quick'\\?\\)"):
        select([], ["quik"])
    with pytest.raises(OmniBenchError, match="unknown task 's222' \\(did you mean 's22'\\?\\)"):
        select(["s222"], [])
    assert [t.name for t in select(["s22"], ["quick"])].count("s22") == 1


_yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["name", "version", "suites", "dataset", "reference", "protocol", "units",
                            "metrics", "gate", "description"]), value=_yaml_values)
def test_fuzzed_fields_either_load_or_raise_a_clear_error(tmp_path, key, value):
    path = write_variant(tmp_path, lambda d: d.update({key: value}))
    try:
        load_task(path)
    except OmniBenchError as exc:
        assert str(path) in str(exc)


def _set_nested(data: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        data = data[int(part)] if isinstance(data, list) else data[part]
    if isinstance(data, list):
        data[int(last)] = value
    else:
        data[last] = value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dotted=st.sampled_from(["dataset.loader", "dataset.files", "dataset.params", "dataset.source",
                               "protocol.name", "protocol.params", "reference.level_of_theory",
                               "metrics.0", "metrics.0.name", "metrics.0.group_by", "gate.mae", "gate.mae.rel",
                               "units.interaction_energy", "suites.0"]), value=_yaml_values)
def test_fuzzed_nested_fields_either_load_or_raise_a_clear_error(tmp_path, dotted, value):
    path = write_variant(tmp_path, lambda d: _set_nested(d, dotted, value))
    try:
        load_task(path)
    except OmniBenchError as exc:
        assert str(path) in str(exc)


_documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(st.characters(blacklist_categories=("Cs",))),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["name", "extends", "version", "dataset", "protocol", "metrics", "units"]) | st.text(max_size=8)
        | st.integers(), inner, max_size=4),
    max_leaves=16)
#: YAML-ish text: anchors, aliases, merge keys, complex keys, tags, flow and block syntax, escapes
_yaml_ish = st.lists(st.sampled_from(["&a ", "*a", "<<: ", "? ", "- ", "[", "]", "{", "}", ": ", ", ", "\n", "  ",
                                      "!!python/object/apply:os.system ", "!!binary ", "'", '"', "name", "extends",
                                      "s22", "version", "1e3", "~", "#", "---\n", "\t", "\\x1b"])
                     | st.text(max_size=6), max_size=30).map("".join)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=_documents, text=_yaml_ish)
def test_fuzzed_documents_and_yaml_text_as_task_files_load_or_raise_one_line_errors(tmp_path, document, text):
    path = tmp_path / "fuzz.yaml"
    for content in (yaml.safe_dump(document), text):
        path.write_text(content)
        try:
            load_task(path)
        except OmniBenchError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)


def test_a_duplicate_key_in_a_task_file_is_an_error(tmp_path):
    path = tmp_path / "s22.yaml"
    text = all_tasks()["s22"].path.read_text()
    path.write_text(text.replace("version: 1\n", "version: 1\nversion: 2\n", 1))
    with pytest.raises(OmniBenchError, match=r"s22.yaml: not valid YAML \(task file, line 3, column 1\): key "
                                             r"'version' appears twice"):
        load_task(path)


def test_duplicate_keys_are_refused_in_cards_and_sweep_files_too(tmp_path):
    path = tmp_path / "card.yaml"
    path.write_text("name: a\nfactory: x:y\nname: b\n")
    with pytest.raises(OmniBenchError, match="key 'name' appears twice"):
        load_yaml(path, "model card")
    path.write_text("base: &b {a: 1}\nmerged: {<<: *b, a: 2}\n")  # an override through a merge key is fine
    assert load_yaml(path, "sweep file")["merged"] == {"a": 2}


def test_a_group_by_that_no_item_has_is_an_error(tmp_path):
    def add_metric(raw):
        raw["metrics"].append({"name": "mae_by_x", "quantity": "interaction_energy", "statistic": "mae",
                               "direction": "lower", "group_by": "nosuch"})
    spec = edited_task(tmp_path / "tasks", "s22", add_metric)
    with pytest.raises(OmniBenchError, match=r"field 'metrics\[4\].group_by' names group 'nosuch', which no "
                                             "interaction_energy value has"):
        load_items(spec, None)


def test_a_broken_task_file_blocks_only_itself(tmp_path, capsys, monkeypatch):
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


#: tasks whose loaders take seconds; their counts are checked by the same ``load_items`` whenever they run, as
#: they do in full in test_tasks_mofs.py (golddac and mofsimbench-eos with the tabulated model)
CHECKED_WHERE_THEY_RUN = {"golddac", "mofsimbench-eos"}


@pytest.mark.parametrize("task", sorted(set(all_tasks()) - CHECKED_WHERE_THEY_RUN))
def test_the_counts_each_task_file_declares_are_its_loaders(task, data_root):
    """load_items checks the declared counts against the loader; every bundled task declares them."""
    spec = all_tasks()[task]
    assert spec.counts is not None and all(all_tasks()[t].counts for t in CHECKED_WHERE_THEY_RUN)
    items = load_items(spec, data_root)
    assert len(items) == spec.counts.items


def test_wrong_declared_counts_name_the_field(tmp_path):
    spec = edited_task(tmp_path / "tasks", "s22", lambda raw: raw["counts"].update(items=21))
    with pytest.raises(OmniBenchError, match=r"s22.yaml: field 'counts.items' is 21, but the data .* give 22"):
        load_items(spec, None)


@pytest.mark.parametrize("subset_of, field, hint", [
    ({"task": "nonexistent-task", "items": 9999}, "counts.subset_of.task", "'nonexistent-task', which is no task"),
    ({"task": "s22", "items": 9999}, "counts.subset_of.items", "is 9999, but s22 has 22 items"),
])
def test_a_subset_names_an_existing_task_and_its_item_count(tmp_path, subset_of, field, hint):
    """``counts.subset_of`` is printed in the leaderboard ('5 of the 22 dimers of s22'): it must be true."""
    def subset(declared):
        return lambda data: data.update(name="s22-subset") or data["counts"].update(items=5, subset_of=declared)
    path = write_variant(tmp_path, subset(subset_of), name="s22-subset")
    message = task_registry.broken_tasks([tmp_path])["s22-subset"]
    assert "s22-subset" not in all_tasks([tmp_path])
    assert message.startswith(f"{path}: field '{field}'") and hint in message
    (tmp_path / "right").mkdir()
    write_variant(tmp_path / "right", subset({"task": "s22", "items": 22}), name="s22-subset")
    assert "s22-subset" in all_tasks([tmp_path / "right"])
