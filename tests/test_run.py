"""The run core on EMT: plans (store key, claim, pending items, the skip rule), resume, rerun, limit, failures
and results files."""

from __future__ import annotations

import json
import sqlite3

import pandas as pd
import pytest
from helpers import edited_task, task_items

from omni_bench import plugins
from omni_bench.errors import OmniBenchError
from omni_bench.executors.serial import run_serial
from omni_bench.models.registry import resolve_models
from omni_bench.run.compute import ItemResult, compute_item
from omni_bench.run.options import RunOptions
from omni_bench.run.plan import RunPlan, plan_run
from omni_bench.run.prepare import first_scored_units
from omni_bench.store import ResultStore, StoredItem, StoreKey
from omni_bench.task_registry import all_tasks


def emt_run(tmp_path, tasks=("s22", "dcdft"), model="emt", model_args=None, **kwargs):
    store = ResultStore(tmp_path / "store.sqlite")
    options = RunOptions(store=store, out_dir=tmp_path / "out", progress=False, device="cpu", **kwargs)
    try:
        return {o.task: o for o in run_serial(resolve_models([model], model_args=model_args),
                                       [all_tasks()[t] for t in tasks], options)}
    finally:
        store.close()


def stored_rows(tmp_path):
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        return db.execute("SELECT task, item_id, status, error FROM results").fetchall()


def test_quick_suite_on_emt_scores_and_records_unsupported_elements_as_failures(tmp_path):
    out = emt_run(tmp_path)
    s22, dcdft = out["s22"], out["dcdft"]
    assert s22.n_items == 22 and s22.n_failed == 0 and s22.metrics["mae"]["n"] == 22
    assert s22.metrics["mae"]["unit"] == "kcal/mol" and s22.metrics["mae"]["value"] > 0
    # EMT has no Si, Ge, Rh, Ir, V, Nb, Ta, Mo, W: those items fail with the reason, the rest are scored.
    reasons = {f["item_id"]: f["error"] for f in dcdft.failures}
    assert "No EMT-potential for Si" in reasons["Si"]
    assert "Cu" not in reasons and dcdft.metrics["v0_mae"]["n"] == 16 - dcdft.n_failed
    assert dcdft.metrics["v0_mae"]["n_failed"] == dcdft.n_failed


def test_second_run_resumes_from_the_store_and_rerun_recomputes(tmp_path):
    first = emt_run(tmp_path, tasks=("s22",))["s22"]
    assert first.computed == 22
    again = emt_run(tmp_path, tasks=("s22",))["s22"]
    assert again.computed == 0 and again.metrics == first.metrics
    forced = emt_run(tmp_path, tasks=("s22",), rerun=True)["s22"]
    assert forced.computed == 22 and forced.metrics["mae"]["value"] == pytest.approx(first.metrics["mae"]["value"])
    assert len(stored_rows(tmp_path)) == 22  # replaced, not duplicated


def test_limit_runs_the_first_items_and_a_later_full_run_adds_the_rest(tmp_path):
    limited = emt_run(tmp_path, tasks=("s22",), limit=3)["s22"]
    assert limited.n_items == 3 and limited.metrics["mae"]["n"] == 3
    full = emt_run(tmp_path, tasks=("s22",))["s22"]
    assert full.computed == 19


@pytest.mark.parametrize("task", ["mamun-noble", "mor41", "ice13", pytest.param("golddac", marks=pytest.mark.slow),
                                  "wbm-formation", "organic-polymorphs"])
def test_limit_takes_whole_scored_units_with_every_item_they_need(task, data_root):
    """``--limit 2`` on a task scored from several items: the first two reactions, complexes or landscapes
    with exactly the items they need, so each is scored (a structure that scores nothing is not run)."""
    spec = all_tasks()[task]
    items = task_items(task, data_root)
    chosen = first_scored_units(spec, items, 2)
    protocol = spec.protocol_module
    needed = {item_id for unit in protocol.scored_units(items)[:2] for item_id in unit}
    assert {item.id for item in chosen} == needed and len(chosen) < len(items)
    assert [item.id for item in chosen] == [item.id for item in items if item.id in needed]  # the task's order
    every_value = dict.fromkeys(protocol.QUANTITIES, 1.0)
    stored = {item.id: StoredItem(item.id, "ok", every_value, None, [], 0.0) for item in chosen}
    scored = [p for p in protocol.derive(chosen, stored, spec.run_params) if p.reference is not None]
    assert len({p.id.split("@")[0] for p in scored}) >= 2 and all(p.value is not None for p in scored)


def test_limit_on_reactions_scores_the_first_reactions(tmp_path, data_root):
    """The new user's case: mamun-noble with --limit 2 scored 0 reactions and wrote mae=nan."""
    limited = emt_run(tmp_path, tasks=("mamun-noble",), limit=2, data_root=data_root)["mamun-noble"]
    assert limited.n_scored == 2 and limited.metrics["mae"]["n"] == 2


def test_nan_and_exceptions_become_failures_and_the_run_goes_on(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).parent))
    out = emt_run(tmp_path, tasks=("s22",), model="fake_models:faulty_emt",
                  model_args=["nan_for=H6N2", "raise_for=H4O2"])["s22"]
    errors = {f["item_id"]: f["error"] for f in out.failures}
    assert "non-finite energy" in errors["Ammonia_dimer"]
    assert "planted failure on H4O2" in errors["Water_dimer"]
    assert out.n_failed == 2 and out.metrics["mae"]["n"] == 20


def test_results_json_records_config_versions_hashes_and_predictions(tmp_path):
    out = emt_run(tmp_path, tasks=("s22",), limit=4)["s22"]
    record = json.loads(out.results_file.read_text())
    assert record["task"]["name"] == "s22" and record["task"]["version"] == 1
    assert len(record["task"]["file_sha256"]) == 64
    assert record["model"]["fingerprint"]["packages"]["ase"]
    assert record["environment"]["device"] == "cpu" and record["environment"]["packages"]["numpy"]
    assert record["config"]["limit"] == 4 and record["timing"]["items_computed"] == 4
    assert record["metrics"]["mae"]["value"] == out.metrics["mae"]["value"]
    predictions = pd.read_csv(out.results_file.parent / record["predictions_file"])
    assert len(predictions) == 4
    assert (predictions["error"] - (predictions["predicted"] - predictions["reference"])).abs().max() < 1e-12
    assert (predictions["predicted"] - predictions["reference"]).abs().mean() == pytest.approx(
        record["metrics"]["mae"]["value"])


def test_resample_by_must_name_a_group_every_scored_item_has(tmp_path):
    from omni_bench.errors import OmniBenchError

    task = edited_task(tmp_path / "s22", "s22", lambda d: d.update(resample_by="mof"))
    store = ResultStore(tmp_path / "store.sqlite")
    try:
        with pytest.raises(OmniBenchError, match=r"s22\.yaml: field 'resample_by' names group 'mof'"):
            run_serial(resolve_models(["emt"]), [task], RunOptions(store=store, progress=False))
    finally:
        store.close()


def test_a_task_file_edited_without_a_version_bump_does_not_reuse_stale_items(tmp_path):
    from omni_bench.errors import OmniBenchError

    def run(task, **kwargs):
        store = ResultStore(tmp_path / "store.sqlite")
        options = RunOptions(store=store, out_dir=tmp_path / "out", progress=False, device="cpu", limit=2, **kwargs)
        try:
            return run_serial(resolve_models(["emt"]), [task], options)[0]
        finally:
            store.close()

    first = run(all_tasks()["dcdft"])
    reworded = edited_task(tmp_path / "reworded", "dcdft", lambda d: d.update(description="Same inputs, other words."))
    assert run(reworded).computed == 0  # text, metrics and gates may change freely

    wider = edited_task(tmp_path / "wider", "dcdft", lambda d: d["protocol"]["params"].update(volume_strain=0.10))
    with pytest.raises(OmniBenchError, match=r"wider/dcdft\.yaml.*changed.*'version'.*--rerun"):
        run(wider)
    assert len(stored_rows(tmp_path)) == 2  # nothing stored is lost by the refusal

    replaced = run(wider, rerun=True)
    assert replaced.computed == 2 and replaced.metrics["v0_mae"]["value"] != first.metrics["v0_mae"]["value"]
    assert len(stored_rows(tmp_path)) == 2
    assert run(wider).computed == 0  # the new inputs are now the stored ones

    bumped = edited_task(tmp_path / "bumped", "dcdft", lambda d: d.update(version=2))
    assert run(bumped).computed == 2 and len(stored_rows(tmp_path)) == 4  # both versions kept side by side
    record = json.loads(replaced.results_file.read_text())
    assert len(record["config"]["inputs_hash"]) == 16


def test_a_time_limit_that_cannot_be_set_up_fails_the_run_and_stores_nothing(tmp_path, data_root):
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


def plan_of(tmp_path, n_items: int = 5) -> RunPlan:
    """A plan for emt on the first items of s22, with its key claimed in a fresh store."""
    (plan,) = plan_run(resolve_models(["emt"]), [all_tasks()["s22"]],
                       RunOptions(store=ResultStore(tmp_path / "store.sqlite"), device="cpu", limit=n_items))
    return plan


def test_a_stop_skips_every_later_item_whatever_order_results_come_back_in(tmp_path):
    """The skip rule of a cluster: a later item stored before an earlier StopTask is replaced by a skip, and a
    later result arriving after it is stored as a skip too; items before the stop keep their results."""
    plan = plan_of(tmp_path)
    ids = [item.id for item in plan.pending]
    assert not plan.record(ItemResult(ids[3], "ok", values={"energy": 1.0}))
    assert plan.record(ItemResult(ids[1], "failed", error="StopTask: out of memory", stop="out of memory"))
    assert not plan.record(ItemResult(ids[0], "ok", values={"energy": 2.0}))
    assert not plan.record(ItemResult(ids[4], "ok", values={"energy": 3.0}))
    assert not plan.record(ItemResult(ids[2], "failed", error="later StopTask", stop="later"))
    stored = plan.store.get(plan.key)
    assert stored[ids[0]].status == "ok" and stored[ids[1]].error == "StopTask: out of memory"
    assert [stored[i].error for i in ids[2:]] == ["skipped: out of memory"] * 3
    assert plan.written == set(ids)
    plan.store.close()


def test_a_plan_claims_its_key_and_knows_what_is_pending(tmp_path):
    plan = plan_of(tmp_path)
    assert plan.key == StoreKey(plan.fingerprint_id, "", "s22", 1)
    assert plan.store.inputs_hash(plan.key) == plan.task.identity.inputs_hash
    plan.record(ItemResult(plan.pending[0].id, "ok", values={"energy": 1.0}))
    plan.refresh_pending()
    assert len(plan.pending) == 4 and plan.position == {item.id: n for n, item in enumerate(plan.pending)}
    plan.store.close()
