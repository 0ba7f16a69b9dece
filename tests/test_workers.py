"""Models in worker processes (models/worker.py) with real processes and EMT: the wire format, --isolate, the
crash boundary (SIGKILL, segfault, abort, hang), and cards whose interpreter or packages are missing. The MACE
environment's tests are in test_mace_worker.py."""

from __future__ import annotations

import base64
import json
import os
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from hypothesis import given, settings
from hypothesis import strategies as st

from omni_bench import cli
from omni_bench.errors import OmniBenchError
from omni_bench.executors.serial import run_serial
from omni_bench.models import worker
from omni_bench.models.batched import AbandonBatches
from omni_bench.models.checks import CheckedCalculator, InvalidResult
from omni_bench.models.environments import install_plan
from omni_bench.models.registry import find_card, resolve_models
from omni_bench.models.worker import (
    Interpreter,
    WorkerBatch,
    WorkerCalculator,
    WorkerCrashed,
    WorkerError,
    WorkerProcess,
)
from omni_bench.run.options import RunOptions
from omni_bench.store import ResultStore
from omni_bench.task_registry import all_tasks
from omni_bench_worker import wire

TESTS = Path(__file__).resolve().parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)}


@pytest.fixture(autouse=True)
def fake_models_importable(monkeypatch):
    """Isolated workers inherit the environment: let them import tests/fake_models.py."""
    monkeypatch.setenv("PYTHONPATH", ENV["PYTHONPATH"])


def run_here(tmp_path: Path, model: str, model_args: list[str] | None = None, limit: int = 4, isolate: bool = True,
             **options) -> dict[str, tuple[str, str | None, str | None]]:
    """Run s22 through the runner in this process (the model in a worker when ``isolate``); the stored rows."""
    store = ResultStore(tmp_path / "s.db")
    try:
        run_serial(resolve_models([model], None, model_args, isolate=isolate, trust_code=True),
                       [all_tasks()["s22"]],
                       RunOptions(store=store, out_dir=tmp_path / "out", device="cpu", limit=limit, progress=False,
                                  **options))
    finally:
        store.close()
    return stored(tmp_path / "s.db")


def stored(store: Path) -> dict[str, tuple[str, str | None, str | None]]:
    try:
        with sqlite3.connect(store) as db:
            return {r[0]: r[1:] for r in db.execute("SELECT item_id, status, values_json, error FROM results")}
    except sqlite3.OperationalError:  # not created yet
        return {}


def test_wire_round_trip_is_bit_exact_and_refuses_what_is_not_data():
    left, right = socket.socketpair()
    atoms = bulk("Cu", "fcc", a=3.6) * (2, 1, 1)
    atoms.positions += np.random.default_rng(0).normal(scale=0.1, size=atoms.positions.shape)
    atoms.info.update(charge=-1, spin=2, name="Cu2", ignored=[1, 2])
    wire.send(left, {"atoms": wire.atoms_to_message(atoms), "e": float("nan"), "f32": np.ones(3, np.float32),
                     "n": np.int32(7)})
    got = wire.receive(right)
    back = wire.atoms_from_message(got["atoms"])
    assert back.positions.tobytes() == atoms.positions.tobytes()
    assert back.cell.array.tobytes() == atoms.cell.array.tobytes()
    assert list(back.pbc) == [True] * 3 and back.info == {"charge": -1, "spin": 2, "name": "Cu2"}
    assert np.isnan(got["e"]) and got["f32"].dtype == np.float64 and got["n"] == 7
    with pytest.raises(TypeError):
        wire.send(left, {"objects": np.array([object()])})
    with pytest.raises(TypeError):
        wire.send(left, {"callable": print})
    payload = json.dumps({"x": {"__ndarray__": "AAAA", "dtype": "|O", "shape": [1]}}).encode()
    left.sendall(len(payload).to_bytes(8, "big") + payload)
    with pytest.raises(ValueError, match="refused"):
        wire.receive(right)
    left.close()
    with pytest.raises(wire.ConnectionLost):
        wire.receive(right)


def test_isolated_model_gives_the_in_process_numbers_under_the_same_fingerprint(tmp_path):
    """--isolate moves the model into a worker; values are bit-identical, so the stored items are shared."""
    (tmp_path / "here").mkdir()
    (tmp_path / "isolated").mkdir()
    assert run_here(tmp_path / "here", "emt", isolate=False) == run_here(tmp_path / "isolated", "emt")
    here, isolated = (json.loads((tmp_path / f / "out" / "emt" / "s22.json").read_text()) for f in ("here", "isolated"))
    assert isolated["config"]["single_points"]["batched_evaluator"] == "worker:ase"
    assert here["model"]["fingerprint_id"] == isolated["model"]["fingerprint_id"]
    run_here(tmp_path / "here", "emt")  # the in-process store already has every item: nothing to compute
    assert json.loads((tmp_path / "here" / "out" / "emt" / "s22.json").read_text())["timing"]["items_computed"] == 0


def _worker_of(pid: int) -> int | None:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    found = children.read_text().split() if children.exists() else []
    return int(found[0]) if found else None


@pytest.mark.slow
def test_sigkill_of_the_worker_fails_the_item_in_flight_and_the_run_goes_on(tmp_path):
    """A worker killed mid-task (as the out-of-memory killer would) costs at most one item: the one in flight is
    recorded failed with the signal (none when the kill lands between two requests), a new worker takes over,
    and every other item is computed exactly once."""
    log, store = tmp_path / "computed.log", tmp_path / "s.db"
    run = subprocess.Popen(
        [sys.executable, "-m", "omni_bench.cli", "run", "--isolate", "--no-batch", "--model",
         "fake_models:logging_emt", "--model-arg", f"log={log}", "--model-arg", "delay=0.05", "--task", "s22",
         "--store", str(store), "--out", str(tmp_path / "out"), "--no-progress"],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while (not store.exists() or len(stored(store)) < 3) and time.time() < deadline:
        time.sleep(0.05)
    victim = _worker_of(run.pid)
    assert victim is not None, "no worker process found"
    os.kill(victim, signal.SIGKILL)
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr
    rows = stored(store)
    failed = {item: row for item, row in rows.items() if row[0] == "failed"}
    assert len(rows) == 22 and len(failed) <= 1, failed
    assert all("WorkerCrashed" in row[2] and "SIGKILL" in row[2] for row in failed.values())
    lines = log.read_text().splitlines()
    assert len(lines) == len(set(lines)) and len(lines) >= 21 * 3  # no structure computed twice


@pytest.mark.parametrize(("how", "signal_name"), [("segfault", "SIGSEGV"), ("abort", "SIGABRT")])
def test_a_segfault_or_abort_in_the_model_fails_only_its_item(tmp_path, how, signal_name):
    rows = run_here(tmp_path, "fake_models:crashing_emt", ["crash_for=H3N", f"how={how}"])
    assert [item for item, row in rows.items() if row[0] == "failed"] == ["Ammonia_dimer"]
    assert signal_name in rows["Ammonia_dimer"][2] and len(rows) == 4


def test_a_model_hanging_inside_its_worker_is_cut_by_the_item_timeout(tmp_path):
    rows = run_here(tmp_path, "fake_models:hanging_emt", ["hang_for=H3N"], limit=3, item_timeout=2, batch_atoms=0)
    assert rows["Ammonia_dimer"][0] == "failed" and "--item-timeout 2 s" in rows["Ammonia_dimer"][2]
    assert [rows[i][0] for i in ("Water_dimer", "Formic_acid_dimer")] == ["ok", "ok"]


def _card(tmp_path: Path, **fields) -> Path:
    card = {"name": "emt-elsewhere", "description": "EMT in a worker", "factory": "omni_bench.models.factories:emt",
            "level_of_theory": "EMT", "trained_with_dispersion": False, "packages": ["ase"], **fields}
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(card))
    return path


@pytest.mark.parametrize(("fields", "expected"), [
    ({"python": "/no/such/venv/bin/python"}, ["field 'python'", "/no/such/venv/bin/python does not exist",
                                              "environment: NAME"]),
    ({"environment": "missing-env"}, ["field 'environment'", "omni-bench env create missing-env"]),
    ({"python": sys.executable, "packages": ["ase", "no-such-package-omni==1.0"]},
     ["field 'packages'", "no-such-package-omni not installed", "-m pip install no-such-package-omni==1.0"]),
    ({"python": sys.executable, "weights_packages": ["no-such-weights-omni"]},
     ["field 'weights_packages'", "pip install --no-deps no-such-weights-omni"]),
])
def test_a_card_whose_interpreter_or_packages_are_missing_fails_before_any_item(tmp_path, monkeypatch, capsys,
                                                                                fields, expected):
    monkeypatch.setenv("OMNI_BENCH_ENVS", str(tmp_path / "envs"))
    card = _card(tmp_path, **fields)
    code = cli.main(["run", "--model", str(card), "--trust-code", "--task", "s22", "--limit", "2", "--store",
                     str(tmp_path / "s.db"), "--out", str(tmp_path / "out"), "--no-progress"])
    *warnings, message = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and all("warning: --trust-code" in line for line in warnings)
    assert "model emt-elsewhere" in message and str(card) in message
    for text in expected:
        assert text in message
    assert not (tmp_path / "s.db").exists() or not stored(tmp_path / "s.db")


def test_a_card_in_another_interpreter_runs_there(tmp_path):
    """The same card with ``python:`` (here this interpreter, as any other venv would be): EMT through a worker
    whose PYTHONPATH is cleared, with the interpreter's version in the fingerprint."""
    rows = run_here(tmp_path, str(_card(tmp_path, python=sys.executable)), limit=2, isolate=False)
    assert [row[0] for row in rows.values()] == ["ok", "ok"]
    record = json.loads((tmp_path / "out" / "emt-elsewhere" / "s22.json").read_text())
    fp = record["model"]["fingerprint"]
    assert fp["python"] == sys.executable and fp["python_version"] == ".".join(map(str, sys.version_info[:3]))
    assert record["config"]["single_points"]["batched"] == 6


def test_a_card_file_naming_an_interpreter_needs_trust_code(tmp_path, capsys):
    """A card file is data: starting the interpreter it names is running code of its choosing."""
    card = _card(tmp_path, python=sys.executable)
    code = cli.main(["run", "--model", str(card), "--task", "s22", "--limit", "1", "--store",
                     str(tmp_path / "s.db"), "--out", str(tmp_path / "out"), "--no-progress"])
    message = capsys.readouterr().err.strip()
    assert code == 2 and "names an interpreter to start" in message and "--trust-code" in message
    assert not stored(tmp_path / "s.db")
    code = cli.main(["env", "create", "x", "--model", str(card)])
    assert code == 2 and "--trust-code" in capsys.readouterr().err


def test_card_fields_for_environments_are_checked(tmp_path):
    with pytest.raises(OmniBenchError, match="field 'python' and 'environment' both"):
        find_card(str(_card(tmp_path, python="/x/python", environment="mace")))
    with pytest.raises(OmniBenchError, match="field 'torch' must be a quoted version"):
        find_card(str(_card(tmp_path, environment="mace", torch=2.5)))
    with pytest.raises(OmniBenchError, match="field 'environment' must be a name"):
        find_card(str(_card(tmp_path, environment="../elsewhere")))


def test_env_create_plan_merges_the_cards_of_one_environment_and_refuses_conflicts():
    mace_cards = [find_card(n) for n in ("mace-mh-1", "mace-dac-1", "mace-off23")]
    plan = install_plan("mace", mace_cards)
    assert plan["torch"] == "2.13.0" and plan["weights_packages"] == ["dac-sim==0.0.3"]
    assert plan["packages"] == ["ase", "numpy", "mace-torch==0.3.16", "e3nn==0.4.4", "torch"]
    other = find_card("orb-v3")
    other.torch = "2.5.1"
    with pytest.raises(OmniBenchError, match="different torch versions in field 'torch'"):
        install_plan("mace", [*mace_cards, other])


def test_every_zoo_card_says_where_it_runs_and_how_to_get_its_weights():
    for name in ("mace-mh-1", "mace-mp-0", "mace-omat-0", "mace-off23", "mace-dac-1", "uma-s-1p1", "orb-v3",
                 "mattersim-v1", "pet-mad", "diep"):
        card = find_card(name)
        assert card.license and card.weights and card.training_data and card.provenance, name
        assert card.factory.startswith("omni_bench_worker.factories:"), name
        assert card.environment or name == "diep", name
        assert all(info.level_of_theory for info in card.channels.values())
    assert find_card("mace-dac-1").in_domain == ["golddac"] and find_card("7net-0").in_domain == []
    assert list(find_card("uma-s-1p1").channels) == ["omat", "omol", "oc20", "odac", "omc"]


def test_a_model_that_cannot_be_built_in_its_worker_is_one_clear_error(tmp_path):
    card = _card(tmp_path, python=sys.executable, args={"no_such_argument": 1})
    with pytest.raises(OmniBenchError, match=r"model emt-elsewhere: omni_bench.models.factories:emt\(\*\*\{'no_such_"
                                             r"argument': 1.*failed in python .*TypeError: .*no_such_argument"):
        run_here(tmp_path, str(card), limit=1, isolate=False)


@pytest.mark.parametrize(("frame", "batch_atoms"), [("reply", 0), ("list", 256)])
def test_a_frame_the_model_writes_to_the_socket_fails_its_own_item_and_shifts_no_energy(tmp_path, frame,
                                                                                     batch_atoms):
    """A model writing a frame of its own (a reply without the request's id, or JSON that is not an object)
    breaks the protocol: its item fails saying so, the worker is replaced, and every other item gets its own
    energies. Before, one by one, every later item got the energy of the structure before it and was stored
    as ok; in batches, every item failed."""
    (tmp_path / "emt").mkdir()
    expected = run_here(tmp_path / "emt", "emt", isolate=False)
    rows = run_here(tmp_path, "fake_models:socket_writing_emt", ["write_for=H3N", f"frame={frame}"], item_timeout=20,
                    batch_atoms=batch_atoms)
    assert rows["Ammonia_dimer"][0] == "failed" and "broke the protocol" in rows["Ammonia_dimer"][2]
    assert "WorkerCrashed" in rows["Ammonia_dimer"][2]
    del rows["Ammonia_dimer"], expected["Ammonia_dimer"]
    assert rows == expected


def test_a_batch_that_crashes_its_worker_fails_only_the_structures_that_crash(tmp_path):
    """Two dimers of six abort the worker: the batch holding all six crashes, is computed again one structure
    at a time, and only the two fail (before, the batch's crash counted against the model and the third crash
    in a row stopped the task: the four healthy items were stored as failed, and stayed so)."""
    rows = run_here(tmp_path, "fake_models:crashing_on", ["formulas=H6N2,H4O2"], limit=6)
    failed = {item: row[2] for item, row in rows.items() if row[0] == "failed"}
    assert sorted(failed) == ["Ammonia_dimer", "Water_dimer"] and len(rows) == 6
    assert all("SIGABRT" in error for error in failed.values())
    record = json.loads((tmp_path / "out" / "fake_models_crashing_on" / "s22.json").read_text())
    assert record["config"]["single_points"]["batched_evaluator"] == "worker:ase"


def _emt_worker() -> WorkerProcess:
    return WorkerProcess(Interpreter(sys.executable, "this interpreter", same_as_omni_bench=True),
                         {"op": "load", "factory": "omni_bench.models.factories:emt", "kwargs": {}, "device": "cpu"},
                         "emt")


def test_a_worker_that_died_or_spoke_while_idle_is_replaced_before_the_next_request():
    """Nobody's structure is failed for what an idle worker did: it is started again, and the request goes on."""
    process = _emt_worker()
    message = {"op": "calculate", "atoms": wire.atoms_to_message(bulk("Cu")), "properties": ["energy"],
               "parameters": {}}
    try:
        energy = process.request(message)["results"]["energy"]
        os.kill(process.process.pid, signal.SIGKILL)
        process.process.wait()
        assert process.request(message)["results"]["energy"] == energy and process.starts == 2
        wire.send(process.sock, {**message, "id": 0})  # an answer nobody reads: it is waiting, out of turn
        assert select.select([process.sock], [], [], 10)[0]
        assert process.request(message)["results"]["energy"] == energy and process.starts == 3
        assert process.crashes == 0
    finally:
        process.stop()


def test_a_worker_started_by_a_thread_that_ends_lives_on():
    """The kernel's parent-death signal follows the starting thread: a Dask thread may end before its model
    does, so only the main thread asks for it (the worker watches its parent process either way)."""
    process = _emt_worker()
    starter = threading.Thread(target=process.start)
    starter.start()
    starter.join()
    try:
        time.sleep(0.5)
        message = {"op": "calculate", "atoms": wire.atoms_to_message(bulk("Cu")), "properties": ["energy"],
                   "parameters": {}}
        assert process.request(message)["ok"] and process.starts == 1
    finally:
        process.stop()


def test_a_dead_workers_notice_reads_only_the_end_of_its_log():
    """A worker that wrote 32 MB before dying costs its notice 8 kB of memory, not the whole log (300 MB of
    output drove omni-bench to 1 GB)."""
    process = _emt_worker()
    process.log = tempfile.TemporaryFile()
    process.log.write((b"x" * 1023 + b"\n") * (32 * 1024) + b"the last words\n")
    tracemalloc.start()
    try:
        tail = process._log_tail()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        process.log.close()
    assert tail.endswith("the last words") and peak < 1 << 20


class _FakeProcess:
    """What ``WorkerProcess`` asks of its process, for a worker played by the test over a socket pair."""

    pid = 0

    def poll(self):
        return None

    def wait(self, timeout=None):
        return 0

    def kill(self):
        pass


RIGHT_ID = "<the request's id>"
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12)
_arrays = st.builds(lambda data, dtype, shape: {"__ndarray__": base64.b64encode(data).decode(), "dtype": dtype,
                                                "shape": shape},
                    st.binary(max_size=80), st.sampled_from(["<f8", "<i8", "|b1", "|O", "<f4", None]),
                    st.lists(st.integers(-1, 4), max_size=3) | _json_values)
_results = st.dictionaries(st.sampled_from(["energy", "free_energy", "forces", "stress", "magmom", "x"]),
                           _json_values | _arrays, max_size=4)
_replies = st.fixed_dictionaries({}, optional={
    "id": st.just(RIGHT_ID) | _json_values, "ok": st.booleans() | _json_values,
    "results": _results | _json_values, "energies": st.lists(_json_values | _arrays, max_size=3) | _json_values,
    "error": st.text(max_size=10) | _json_values})


def _array(shape: tuple[int, ...], fill: float) -> dict:
    return {"__ndarray__": base64.b64encode(np.full(shape, fill, "<f8").tobytes()).decode(), "dtype": "<f8",
            "shape": list(shape)}


_good_replies = st.fixed_dictionaries({
    "id": st.just(RIGHT_ID), "ok": st.just(True),
    "results": st.fixed_dictionaries({"energy": st.floats()}, optional={
        "forces": st.builds(lambda rows, fill: _array((rows, 3), fill), st.integers(0, 3), st.floats()),
        "stress": st.builds(_array, st.sampled_from([(6,), (3, 3), (5,)]), st.floats())}),
    "energies": st.lists(st.floats(), max_size=2)})


def _frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(8, "big") + payload


def _encoded(reply) -> Callable[[int | None], bytes]:
    def frame(request_id: int | None) -> bytes:
        value = {**reply, "id": request_id} if reply.get("id") == RIGHT_ID else reply
        return _frame(json.dumps(value).encode())
    return frame


_frames = (st.binary(max_size=80).map(lambda data: lambda request_id: data)
           | st.binary(max_size=80).map(lambda data: lambda request_id: _frame(data))
           | _json_values.map(lambda value: lambda request_id: _frame(json.dumps(value).encode()))
           | _replies.map(_encoded) | _good_replies.map(_encoded))


@settings(max_examples=300, deadline=None)
@given(frame=_frames, op=st.sampled_from(["energy", "forces", "stress", "energies"]))
def test_fuzzed_worker_replies_give_a_checked_result_or_a_declared_error(frame, op):
    """Whatever a worker sends back (bytes, JSON of any shape, replies with wrong ids, keys or types, arrays of
    any dtype and shape), the parent's side returns checked numbers or raises one of the declared errors, and
    never waits for ever: the test's worker closes its end after its one frame."""
    ours, theirs = socket.socketpair()
    ours.settimeout(worker.POLL_SECONDS)
    theirs.settimeout(10)

    def play_worker() -> None:
        try:
            theirs.sendall(frame(wire.receive(theirs).get("id")))
        finally:
            theirs.close()

    process = _emt_worker()
    process.process, process.sock, process.log = _FakeProcess(), ours, tempfile.TemporaryFile()
    process.loaded = {"implemented_properties": ["energy", "forces", "stress"], "device": "cpu"}
    player = threading.Thread(target=play_worker, daemon=True)
    player.start()
    calc = CheckedCalculator(WorkerCalculator(process))
    atoms = bulk("Cu")
    try:
        if op == "energies":
            energies = WorkerBatch(calc.model).energies([atoms])
            assert all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in energies)
        else:
            value = calc.get_property(op, atoms)
            assert np.isfinite(value).all()
            assert np.shape(value) in {"energy": [()], "forces": [(1, 3)], "stress": [(6,), (3, 3)]}[op]
    except (WorkerCrashed, WorkerError, InvalidResult, AbandonBatches, PropertyNotImplementedError):
        pass  # PropertyNotImplementedError: ASE's own, for a property a calculation did not give
    finally:
        player.join(10)
        assert not player.is_alive()
        ours.close()
