"""The Dask executor on a real two-worker LocalCluster: same results as the serial runner, a killed worker's
chunk recomputed with nothing lost or duplicated, sweeps, and the pieces that need no cluster."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import distributed  # the optional extra omni-bench[dask]: the test environment must have it
import pytest
from ase.calculators.calculator import all_changes
from ase.calculators.emt import EMT
from helpers import edited_task, task_items

from omni_bench import task_registry
from omni_bench.cli import main
from omni_bench.errors import OmniBenchError, StopTask
from omni_bench.executors import dask as dask_executor
from omni_bench.executors.gpu import claim_slot
from omni_bench.executors.serial import run_serial
from omni_bench.executors.slurm import expected_workers, load_cluster_config, make_cluster
from omni_bench.models.registry import resolve_models
from omni_bench.run.compute import compute_item, thread_time_limit
from omni_bench.run.options import RunOptions
from omni_bench.store import ResultStore

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
#: EMT, and EMT that raises on one S22 monomer: the second model has failure records to carry over
MODELS = [(["emt"], []), (["fake_models:faulty_emt"], ["raise_for=H4O2"])]


def variants():
    return [v for specs, args in MODELS for v in resolve_models(specs, model_args=args)]


def rows(store: Path) -> list[tuple]:
    with sqlite3.connect(store) as db:
        return db.execute("SELECT fingerprint, channel, task, task_version, item_id, model, status, values_json, "
                          "error, notes FROM results ORDER BY fingerprint, task, item_id").fetchall()


def run_with(runner, tmp: Path, tasks, data_root, **kwargs):
    store = ResultStore(tmp / "store.sqlite")
    options = RunOptions(store=store, out_dir=tmp / "out", data_root=data_root, data_origin="test", device="cpu",
                         progress=False)
    try:
        return runner(variants(), tasks, options, **kwargs)
    finally:
        store.close()


@pytest.fixture(scope="module")
def client():
    """Two single-threaded worker processes, as ``--executor dask --workers 2`` starts them."""
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), previous) if p)  # workers import fake_models
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=":0") as cluster, distributed.Client(cluster) as dask_client:
            yield dask_client
    finally:
        if previous is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = previous


@pytest.fixture(scope="module")
def quick_suite():
    return task_registry.select([], ["quick"])


@pytest.fixture(scope="module")
def serial(tmp_path_factory, quick_suite, data_root):
    folder = tmp_path_factory.mktemp("serial")
    return folder, run_with(run_serial, folder, quick_suite, data_root)


def test_two_models_over_the_quick_suite_give_the_serial_results(client, serial, quick_suite, data_root, tmp_path):
    serial_folder, serial_outcomes = serial
    outcomes = run_with(lambda v, t, o: dask_executor.run_on_cluster(client, v, t, o, chunk_size=3), tmp_path,
                        quick_suite, data_root)
    assert [(o.model, o.task) for o in outcomes] == [(o.model, o.task) for o in serial_outcomes]
    for got, want in zip(outcomes, serial_outcomes, strict=True):
        assert got.metrics == want.metrics and got.failures == want.failures and got.computed == want.computed
    assert rows(tmp_path / "store.sqlite") == rows(serial_folder / "store.sqlite")
    assert any(o.failures for o in outcomes if o.model == "fake_models:faulty_emt")
    assert json.loads((tmp_path / "out" / "emt" / "s22.json").read_text())["metrics"] == \
        json.loads((serial_folder / "out" / "emt" / "s22.json").read_text())["metrics"]
    # Both workers took chunks of both models, and each loaded each model once however many chunks it ran.
    loads = client.run(lambda: dict(dask_executor.MODEL_LOADS))
    assert len(loads) == 2 and all(len(counts) == 2 and set(counts.values()) == {1} for counts in loads.values())
    again = run_with(lambda v, t, o: dask_executor.run_on_cluster(client, v, t, o), tmp_path, quick_suite, data_root)
    assert all(o.computed == 0 for o in again) and [o.metrics for o in again] == [o.metrics for o in outcomes]


def test_a_task_file_edited_since_the_stored_run_is_refused_before_any_chunk_is_sent(client, serial, tmp_path):
    import shutil

    serial_folder, _ = serial
    shutil.copy(serial_folder / "store.sqlite", tmp_path / "store.sqlite")
    fewer_points = edited_task(tmp_path / "edited", "dcdft", lambda d: d["protocol"]["params"].update(points=5))
    before = rows(tmp_path / "store.sqlite")
    with pytest.raises(OmniBenchError, match=r"dcdft\.yaml.*changed.*'version'"):
        run_with(lambda v, t, o: dask_executor.run_on_cluster(client, v, t, o), tmp_path, [fewer_points], None)
    assert rows(tmp_path / "store.sqlite") == before


def test_a_worker_killed_mid_chunk_has_its_chunk_recomputed_and_nothing_lost_or_duplicated(client, serial, tmp_path):
    store_path = tmp_path / "store.sqlite"
    s22 = task_registry.all_tasks()["s22"]
    killed: dict = {}
    finished = threading.Event()

    def kill_a_busy_worker() -> None:
        while not finished.is_set() and not killed:
            if store_path.exists() and _count(store_path) >= 1:  # one chunk stored, others in flight
                busy = {w: keys for w, keys in client.processing().items() if keys}
                if busy:
                    worker, keys = next(iter(busy.items()))
                    pid = client.run(os.getpid, workers=[worker])[worker]
                    os.kill(pid, signal.SIGKILL)
                    killed.update(keys=list(keys), at=time.time())
            time.sleep(0.02)

    killer = threading.Thread(target=kill_a_busy_worker)
    store = ResultStore(store_path)
    options = RunOptions(store=store, out_dir=tmp_path / "out", device="cpu", progress=False)
    writes = []
    put = store.put
    store.put = lambda key, model, item_id, *args, **kwargs: (writes.append(item_id), put(key, model, item_id,
                                                                                          *args, **kwargs))
    slow = resolve_models(["fake_models:slow_emt"], model_args=["delay=0.1"])
    killer.start()
    try:
        (outcome,) = dask_executor.run_on_cluster(client, slow, [s22], options, chunk_size=4)
    finally:
        finished.set()
        killer.join()
        store.close()
    assert killed, "no worker was busy while the sweep ran"
    assert sorted(writes) == sorted(set(writes)) and len(writes) == 22  # each item written once, none twice
    with sqlite3.connect(store_path) as db:
        stored = dict(db.execute("SELECT item_id, finished_at FROM results").fetchall())
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT item_id) FROM results").fetchone() == (22, 22)
        assert db.execute("SELECT DISTINCT status FROM results").fetchall() == [("ok",)]
    ids_in_order = [item.id for item in task_items("s22")]
    for key in killed["keys"]:  # every chunk lost with the worker was computed again, after the kill
        first = int(key.rsplit("-item", 1)[1].split("-")[0])
        for item_id in ids_in_order[first:first + 4]:
            assert stored[item_id] > killed["at"], item_id
    (emt_s22,) = [o for o in serial[1] if o.model == "emt" and o.task == "s22"]
    assert outcome.metrics == emt_s22.metrics and outcome.n_failed == 0


class _StopEMT(EMT):
    """EMT that raises StopTask on one formula, as a size ladder does when it runs out of memory."""

    def __init__(self, stop_for: str):
        super().__init__()
        self.stop_for = stop_for

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        if atoms is not None and atoms.get_chemical_formula() == self.stop_for:
            raise StopTask(f"planted stop on {self.stop_for}")
        super().calculate(atoms, properties, system_changes)


def stop_emt(stop_for: str) -> EMT:
    return _StopEMT(stop_for)


def test_stop_task_skips_the_same_items_as_the_serial_runner_although_chunks_run_at_once(client, tmp_path):
    s22 = task_registry.all_tasks()["s22"]
    items = task_items("s22")
    formula = items[12].structures["complex"].get_chemical_formula()
    first = next(n for n, item in enumerate(items)
                 if formula in {a.get_chemical_formula() for a in item.structures.values()})
    assert 3 <= first < 20  # a stop in a middle chunk, with chunks on both sides
    model = resolve_models(["test_dask:stop_emt"], model_args=[f"stop_for={formula}"])
    for name, runner in (("serial", run_serial),
                         ("dask", lambda v, t, o: dask_executor.run_on_cluster(client, v, t, o, chunk_size=3))):
        store = ResultStore(tmp_path / f"{name}.sqlite")
        try:
            runner(model, [s22], RunOptions(store=store, device="cpu", progress=False))
        finally:
            store.close()
    serial_rows = rows(tmp_path / "serial.sqlite")
    assert rows(tmp_path / "dask.sqlite") == serial_rows
    assert sum(r[8].startswith("skipped: planted stop") for r in serial_rows if r[8]) == 22 - first - 1


def test_a_sweep_file_runs_every_combination_skips_finished_items_and_rebuilds_the_leaderboard(
        client, tmp_path, monkeypatch):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("models:\n  - emt\n  - {model: 'fake_models:faulty_emt', args: {raise_for: H4O2}}\n"
                     "tasks: [s22]\nlimit: 6\ndevice: cpu\nstore: s.db\nout: results\n")
    monkeypatch.setattr(dask_executor, "open_client", lambda settings, device, progress=True: nullcontext(client))
    assert main(["sweep", str(sweep), "--no-progress", "--trust-code"]) == 0  # it names fake_models' factory
    faulty = json.loads((tmp_path / "results" / "fake_models_faulty_emt" / "s22.json").read_text())
    assert faulty["timing"]["items_computed"] == 6 and [f["item_id"] for f in faulty["failures"]] == ["Water_dimer"]
    assert "emt" in (tmp_path / "results" / "leaderboard.md").read_text()
    assert main(["sweep", str(sweep), "--no-progress", "--no-leaderboard", "--trust-code"]) == 0
    again = json.loads((tmp_path / "results" / "emt" / "s22.json").read_text())
    assert again["timing"] == {**again["timing"], "items_computed": 0, "items_from_store": 6}


def test_the_example_sweep_file_is_valid():
    from omni_bench.commands.sweep import load_sweep

    sweep = load_sweep(REPO / "examples" / "sweep.yaml")
    assert sweep.suites == ["quick"] and sweep.executor["name"] == "dask" and len(sweep.models) >= 2


@pytest.mark.parametrize(("text", "problem"), [
    ("suites: [quick]\n", "field 'models' is required"),
    ("models: [emt]\n", "field 'suites' or 'tasks' must name what to run"),
    ("models: [{model: emt, chanels: [PBE]}]\nsuites: [quick]\n", "field 'models[0].chanels' unknown key"),
    ("models: [emt]\nsuites: [quick]\nexecutor: {name: spark}\n", "field 'executor.name' must be one of"),
])
def test_sweep_file_mistakes_name_the_field(tmp_path, text, problem):
    from omni_bench.commands.sweep import load_sweep

    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    with pytest.raises(OmniBenchError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        load_sweep(path)


@pytest.mark.parametrize(("flags", "problem"), [
    (["--executor", "serial", "--workers", "2"], "--workers and --chunk-size need --executor dask or slurm"),
    (["--executor", "dask", "--scheduler", "tcp://x:1", "--workers", "2"], "an existing --scheduler has its own"),
    (["--executor", "slurm"], "--executor slurm needs --cluster-config"),
    (["--scheduler", "tcp://x:1"], "--scheduler needs --executor dask"),
    (["--executor", "dask", "--chunk-size", "0"], "--chunk-size must be at least 1"),
])
def test_executor_options_that_would_be_ignored_are_errors(flags, problem, capsys):
    assert main(["run", "--model", "emt", "--task", "s22", *flags]) == 2
    assert problem in capsys.readouterr().err


def test_item_timeout_reaches_a_dask_worker_thread():
    """SIGALRM only reaches the main thread; Dask runs tasks in worker threads."""
    def endless(item, model, params):
        while True:
            sum(range(100))

    protocol, model, item = SimpleNamespace(compute=endless), SimpleNamespace(notes=set()), SimpleNamespace(id="x")
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(result=compute_item(
        model, protocol, item, {}, 0.3, limit=thread_time_limit)))
    thread.start()
    thread.join(20)
    assert box["result"].status == "failed" and box["result"].error.startswith(
        "ItemTimeout: item took longer than --item-timeout 0.3 s")

    def finishes_in_time() -> None:  # a limit left in time must not fire later
        with thread_time_limit(0.1):
            pass
        time.sleep(0.3)
        box["after"] = "no stray timeout"

    thread = threading.Thread(target=finishes_in_time)
    thread.start()
    thread.join(5)
    assert box["after"] == "no stray timeout"


def test_a_worker_with_other_package_versions_refuses_to_compute_under_the_clients_fingerprint():
    (emt,) = resolve_models(["emt"])
    import ase

    dask_executor.check_worker_packages(emt, {"ase": ase.__version__})
    with pytest.raises(OmniBenchError, match=rf"ase {ase.__version__} \(client: 0.0.1\)"):
        dask_executor.check_worker_packages(emt, {"ase": "0.0.1"})


def test_each_worker_process_on_a_node_takes_a_different_gpu(tmp_path):
    first, second = claim_slot(["gpu-a", "gpu-b"], tmp_path), claim_slot(["gpu-a", "gpu-b"], tmp_path)
    assert (first[0], second[0]) == (0, 1)
    shared = claim_slot(["gpu-a", "gpu-b"], tmp_path)  # more workers than GPUs: share, hold no lock
    assert shared[1] is None and shared[0] in (0, 1)
    first[1].close()  # a worker that dies frees its GPU for the one that replaces it
    assert claim_slot(["gpu-a", "gpu-b"], tmp_path)[0] == 0


def test_slurm_cluster_config_becomes_the_job_script(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the example's log_directory is created relative to here
    config = load_cluster_config(REPO / "examples" / "slurm-cluster.yaml", trust_code=True)  # it has a prologue
    assert expected_workers(config) == 2 * 4  # jobs x processes (= cores): sizes chunks before jobs start
    cluster = make_cluster(config)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    for line in ("#SBATCH -p gpu", "#SBATCH -A my-project", "#SBATCH --gres=gpu:4", "--nthreads 1", "--nworkers 4"):
        assert line in script
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster: {queu: gpu, cores: 1, memory: 1GB}\n")
    with pytest.raises(OmniBenchError, match="not accepted by dask_jobqueue.SLURMCluster"):
        make_cluster(load_cluster_config(bad, trust_code=True))


@pytest.mark.slow
def test_run_command_with_a_local_dask_cluster_matches_the_serial_run(tmp_path):
    def cli(name: str, *extra: str) -> dict:
        assert main(["run", "--model", "emt", "--task", "s22", "--device", "cpu", "--store",
                     str(tmp_path / f"{name}.db"), "--out", str(tmp_path / name), "--no-progress", *extra]) == 0
        return json.loads((tmp_path / name / "emt" / "s22.json").read_text())

    distributed_run = cli("dask", "--executor", "dask", "--workers", "2")
    assert distributed_run["metrics"] == cli("serial")["metrics"]
    assert distributed_run["timing"]["items_computed"] == 22


def _count(store: Path) -> int:
    try:
        with sqlite3.connect(store, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_tasks_stored_as_one_computation_compute_each_item_once_on_the_cluster(client, tmp_path):
    """s22 and a variant that extends it (a second suite, the same computation) in one cluster run: the
    variant's items are left to s22's chunks, and it is summarised once they are stored."""
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "s22-again.yaml").write_text("name: s22-again\nextends: s22\nsuites: [again]\n")
    log = tmp_path / "computed.log"
    (logging,) = resolve_models(["fake_models:logging_emt"], model_args=[f"log={log}"])
    store = ResultStore(tmp_path / "store.sqlite")
    options = RunOptions(store=store, out_dir=tmp_path / "out", device="cpu", progress=False)
    tasks = [task_registry.all_tasks()["s22"], task_registry.all_tasks([folder])["s22-again"]]
    try:
        first, again = dask_executor.run_on_cluster(client, [logging], tasks, options, chunk_size=4)
    finally:
        store.close()
    computed = log.read_text().splitlines()
    assert len(computed) == len(set(computed)) == 3 * 22  # each complex and monomer once
    assert (first.computed, again.computed) == (22, 0) and first.metrics == again.metrics
