"""The GPU pack, proven on the CPU: the dry run end to end (scripts/device_pack.sh with DRY_RUN=1, then
scripts/device_report.py on what it wrote), the wall-clock guard, the candidate rule, and the wheel-pack tools
on small wheels built here (no network)."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
import yaml
from helpers import REPO

from omni_bench.models.card import load_card
from omni_bench.reporting.speed_plot import md_speed_frame

MIB = 1 << 20


def script(name: str):
    """A module of scripts/ (not a package), imported by path."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------ dry run, end to end


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory, data_root):
    """DRY_RUN=1 scripts/device_pack.sh, as CI and a developer run it: its $OUT and its scratch folder."""
    tmp = tmp_path_factory.mktemp("pack")
    out = tmp / "out"
    env = {**os.environ, "DRY_RUN": "1", "OUT": str(out), "WORK": str(tmp / "work"), "PYTHON": sys.executable,
           "OMNI_BENCH_DATA": str(data_root), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([str(REPO / "scripts" / "device_pack.sh")], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return out, tmp / "work"


@pytest.mark.slow
def test_dry_run_writes_every_part_within_the_device_limits(dry_run):
    out, work = dry_run
    files = sorted(p.name for p in out.iterdir())
    assert files == ["batched.json", "md-speed.tar.gz", "pack.json", "pack.log", "train.tar.gz"]
    assert all((out / f).stat().st_size < 16 * MIB for f in files)  # at most 8 files of 16 MiB come back
    pack = json.loads((out / "pack.json").read_text())
    assert {k: v["status"] for k, v in pack["parts"].items()} == {
        "env": "ok", "batched": "ok", "md-speed": "ok", "train": "ok", "md-speed-cueq": "skipped"}
    assert pack["environment"]["dry_run"] is True and pack["command"]["env"]["DRY_RUN"] == "1"
    with tarfile.open(out / "md-speed.tar.gz") as tar:
        tar.extractall(work / "check", filter="data")
    frame = md_speed_frame([work / "check" / "results"])
    ok = frame[(frame["quantity"] == "ns_per_day") & (frame["status"] == "ok")]
    assert sorted(ok["model"]) == ["7net-0", "7net-l3i5", "7net-mf-0@PBE", "chgnet", "omni@PBE"]
    assert set(ok["n_atoms"]) == {64} and (ok["value"] > 0).all()
    entries = json.loads((out / "batched.json").read_text())["entries"]
    assert [(e["model"], e["set"]) for e in entries] == [
        ("7net-0", "molecules"), ("7net-0", "golddac"), ("chgnet", "molecules"), ("chgnet", "golddac")]
    for entry in entries:
        assert entry["evaluations"]["batched"] > 0 and (entry["warmup_rounds"], entry["rounds"]) == (0, 1)
        assert entry["max_abs_diff_eV_per_atom"] < 1e-5  # both paths give the same energies
    with tarfile.open(out / "train.tar.gz") as tar:
        assert sorted(tar.getnames()) == ["checkpoint.pth", "log.csv", "metrics.json"]
        metrics = json.load(tar.extractfile("metrics.json"))
    assert metrics["recipe"]["epochs"] == 2 and metrics["epochs"] == 1  # --max-minutes stopped it, as on a GPU
    assert "stopping before epoch 2: --max-minutes 0.01 reached" in (out / "pack.log").read_text()
    data_manifest = work / "device-data" / "manifest.json"  # packed here unless the checkout has .device-data
    assert (REPO / ".device-data" / "manifest.json").is_file() or json.loads(data_manifest.read_text())["files"]


@pytest.mark.slow
def test_device_report_turns_the_dry_run_into_reports_but_never_the_committed_ones(dry_run, tmp_path):
    out, _ = dry_run
    refused = subprocess.run([sys.executable, str(REPO / "scripts" / "device_report.py"), str(out)],
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "dry run" in refused.stderr
    reports, candidates = tmp_path / "reports", tmp_path / "candidates"
    subprocess.run([sys.executable, str(REPO / "scripts" / "device_report.py"), str(out), "--reports", str(reports),
                    "--candidates", str(candidates)], check=True, capture_output=True, text=True)
    text = (reports / "speed.md").read_text()
    (run,) = [p for p in (reports / "speed").iterdir() if p.is_dir()]
    assert run.name.startswith("dry-run-cpu-")
    frame = md_speed_frame([run / "md-speed"])
    chgnet = frame[(frame["model"] == "chgnet") & (frame["quantity"] == "ns_per_day")]["value"].iloc[0]
    assert f"| chgnet | cpu | 60 | 64 | {chgnet:.3g} |" in text
    assert "## GPU pack runs" in text and "`DRY_RUN=1 scripts/device_pack.sh`" in text
    entry = json.loads((run / "batched.json").read_text())["entries"][0]
    assert f"| 7net-0 | molecules (s22: 2, openff-torsions: 1) | {entry['n_structures']} |" in text
    assert f"| {entry['median_ratio_batched_to_ase']:.3f} | {entry['speedup']:.2f}x |" in text
    verdict = json.loads((run / "train" / "comparison.json").read_text())
    assert verdict["better"] is False and "not comparable" in verdict["reason"]  # the smoke recipe's split differs
    assert "Outcome: not a candidate (not comparable" in text
    assert not candidates.exists() and not (run / "train" / "checkpoint.pth").exists()


def test_a_part_past_its_limit_is_killed_with_the_processes_it_started(tmp_path):
    device_pack = script("device_pack")
    pid_file = tmp_path / "pid"
    start = time.time()
    status, code = device_pack.run_limited(["bash", "-c", f"sleep 60 & echo $! > {pid_file}; wait"], 1.0)
    assert (status, code) == ("killed", None) and time.time() - start < 10
    pid = int(pid_file.read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


@pytest.mark.slow
def test_a_hanging_md_speed_run_is_killed_and_keeps_the_sizes_it_finished(tmp_path, monkeypatch):
    device_pack = script("device_pack")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]))

    def copper_task(folder: Path, sizes, budget_s: float) -> Path:  # EMT has no Si: the same ladder of Cu cells
        raw = yaml.safe_load((REPO / "tasks" / "md-speed.yaml").read_text())
        raw["dataset"]["params"] = {"repeats": sizes.ladder, "element": "Cu", "crystalstructure": "fcc",
                                    "lattice_constant": 3.61}
        raw["protocol"]["params"].update(sizes.md_params, max_seconds_per_size=budget_s)
        raw["counts"]["items"] = len(sizes.ladder)
        folder.mkdir(parents=True)
        (folder / "md-speed.yaml").write_text(yaml.safe_dump(raw))
        return folder

    monkeypatch.setattr(device_pack, "md_speed_task", copper_task)
    sizes = dataclasses.replace(device_pack.DRY, ladder=[1, 2, 3])  # 4, 32 (hangs), 108 atoms
    record = device_pack.md_speed_run(["fake_models:hanging_on_cu32"], 30.0, 15.0, sizes, tmp_path / "work",
                                      tmp_path / "results", "hang")
    assert record["status"] == "killed" and record["recovered"] == "ok"
    assert record["message"] == "killed after 15 s with 1 size(s) stored"
    frame = md_speed_frame([tmp_path / "results"])
    assert set(frame["item_id"]) == {"Cu4"} and (frame["status"] == "ok").all()


def test_cueq_cards_are_the_built_in_cards_with_enable_cueq(tmp_path):
    device_pack = script("device_pack")
    for name in device_pack.CUEQ_MODELS:
        card = load_card(Path(device_pack.cueq_card(name, tmp_path)))
        assert card.name == f"{name}-cueq" and card.args["enable_cueq"] is True
        assert card.resolve_checkpoint().is_file()


# ------------------------------------------------------------------------------------------ the candidate rule


def metrics_like_shipped(scale: dict[str, float] | float, checkpoint: Path) -> dict:
    """A training run's metrics.json on the shipped omni's split, with its validation errors scaled."""
    card = yaml.safe_load((REPO / "reference_model" / "model_card.yaml").read_text())
    training = card["training"]
    recipe = yaml.safe_load((REPO / training["recipe_config"]).read_text())
    factor = (lambda key: scale) if isinstance(scale, float) else (lambda key: scale.get(key, 1.0))
    return {
        "recipe": {"name": recipe["name"], "seed": recipe.get("seed"), "base_model": training["start"],
                   "validation_fraction": recipe.get("validation_fraction"),
                   "max_structures_per_pool": recipe.get("max_structures_per_pool"),
                   "regularisation": recipe.get("regularisation", 0.0)},
        "training_set": {"sha256": training["training_set_sha256"]},
        "frames": {"train": training["frames_per_channel"], "validation": training["validation_frames_per_channel"]},
        "channels": list(card["channels"]), "parameters": {"trainable": card["parameters"],
                                                            "theta_T_regularised": training["theta_T_parameters"]},
        "dbs": training["dbs"], "regularisation_lambda": training["regularisation_lambda"],
        "loss_weights": training["loss_weights"], "epochs": 12, "wall_s_training": 150.0,
        "hardware": "NVIDIA H200 (host CPU test)", "versions": training["versions"],
        "checkpoint": {"sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest()},
        "final_validation": {k: v * factor(k) for k, v in training["final_validation"].items()},
    }


def train_folder(tmp_path: Path, scale) -> Path:
    train = tmp_path / "run" / "train"
    train.mkdir(parents=True)
    (train / "checkpoint.pth").write_bytes(b"not a real checkpoint, only its bytes are checked")
    (train / "metrics.json").write_text(json.dumps(metrics_like_shipped(scale, train / "checkpoint.pth")))
    (train / "log.csv").write_text("epoch\n1\n")
    return train.parent


@pytest.mark.slow
def test_a_checkpoint_that_validates_better_becomes_a_candidate(tmp_path):
    report = script("device_report")
    verdict = report.training_verdict(train_folder(tmp_path, 0.9), tmp_path / "candidates", "gpu-x")
    assert verdict["better"] and verdict["geometric_mean_ratio"] == pytest.approx(0.9)
    card_path = Path(verdict["candidate"])
    card = load_card(card_path)
    assert card.name == "omni-gpu-x" and card.resolve_checkpoint() == (card_path.parent / "checkpoint.pth").resolve()
    assert yaml.safe_load(card_path.read_text())["training"]["epochs"] == 12
    assert not (tmp_path / "run" / "train" / "checkpoint.pth").exists()  # kept only as the candidate


@pytest.mark.parametrize("scale, reason", [
    (1.05, "geometric mean ratio 1.050"),
    ({"val_energy_mae_meV_per_atom_PBE": 1.2, "val_force_mae_meV_per_A_PBE": 0.5}, "worst val_energy_mae"),
])
def test_no_candidate_when_worse_overall_or_on_one_error(tmp_path, scale, reason):
    report = script("device_report")
    verdict = report.training_verdict(train_folder(tmp_path, scale), tmp_path / "candidates", "gpu-x")
    assert not verdict["better"] and reason in verdict["reason"]
    assert not (tmp_path / "candidates").exists()


def test_no_candidate_from_another_validation_split_or_a_damaged_checkpoint(tmp_path):
    report = script("device_report")
    run = train_folder(tmp_path, 0.5)
    metrics = json.loads((run / "train" / "metrics.json").read_text())
    (run / "train" / "metrics.json").write_text(json.dumps({**metrics, "recipe": {**metrics["recipe"], "seed": 1}}))
    verdict = report.training_verdict(run, tmp_path / "candidates", "gpu-x")
    assert not verdict["better"] and verdict["reason"] == "not comparable: seed"
    damaged = train_folder(tmp_path / "second", 0.5)
    (damaged / "train" / "checkpoint.pth").write_bytes(b"changed on the way")
    with pytest.raises(report.ReportError, match="sha256"):
        report.training_verdict(damaged, tmp_path / "candidates", "gpu-x")


# ------------------------------------------------------------------------------------------ wheel packs


def make_wheel(folder: Path, name: str, version: str, requires: list[str], files: dict[str, bytes],
               tag: str = "py3-none-any") -> Path:
    dist = f"{name}-{version}.dist-info"
    meta = "Metadata-Version: 2.1\nName: {}\nVersion: {}\n{}".format(
        name, version, "".join(f"Requires-Dist: {r}\n" for r in requires))
    members = {**files, f"{dist}/METADATA": meta.encode(),
               f"{dist}/WHEEL": f"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: {tag}\n".encode()}
    record = "".join(f"{path},,\n" for path in members) + f"{dist}/RECORD,,\n"
    path = folder / f"{name}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in {**members, f"{dist}/RECORD": record.encode()}.items():
            archive.writestr(member, data)
    return path


def test_requirements_are_resolved_offline_leaving_out_the_image_and_skipped_packages(tmp_path):
    wheels = script("device_wheels")
    cache = tmp_path / "cache"
    cache.mkdir()
    make_wheel(cache, "alpha", "2.0", ["beta==1.0", "scipy>=1", "numpy>=2", "plotly>=5",
                                      'gamma==3; python_version < "3.10"', 'delta==1; extra == "fast"'],
               {"alpha/__init__.py": b""})
    make_wheel(cache, "beta", "1.0", ["torch>=2.5"], {"beta/__init__.py": b""})
    make_wheel(cache, "beta", "1.0", [], {"beta.py": b""}, tag="cp311-cp311-manylinux_2_17_x86_64")  # wrong Python
    image = wheels.image_packages()
    assert image["torch"] == "2.11.0" and image["e3nn"] is None
    resolver = wheels.Resolver(cache, image)
    resolved = resolver.resolve([wheels.Requirement("alpha==2.0")], "test")
    assert sorted((name, version) for name, version, _, _ in resolved) == [("alpha", "2.0"), ("beta", "1.0")]
    assert all(path.name.endswith("py3-none-any.whl") for _, _, path, _ in resolved)
    assert list(resolver.skipped) == ["plotly"] and resolver.assumed == ["scipy>=1 (for alpha 2.0)"]
    with pytest.raises(wheels.PackError, match="the device image has torch 2.4.0"):  # never a second torch
        wheels.Resolver(cache, {**image, "torch": "2.4.0"}).resolve([wheels.Requirement("beta==1.0")], "test")


@pytest.mark.parametrize("filename, fits", [
    ("x-1-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", True),
    ("x-1-py3-none-any.whl", True),
    ("x-1-cp38-abi3-manylinux_2_28_x86_64.whl", True),
    ("x-1-cp311-cp311-manylinux_2_17_x86_64.whl", False),
    ("x-1-cp312-cp312-musllinux_1_2_x86_64.whl", False),
    ("x-1-cp312-cp312-manylinux_2_28_aarch64.whl", False),
])
def test_only_wheels_for_cpython_312_on_x86_64_linux_fit_the_device(filename, fits):
    assert script("device_wheels").fits_device(filename) is fits


def test_a_trimmed_wheel_installs_without_the_trimmed_files(tmp_path):
    wheels = script("device_wheels")
    source = make_wheel(tmp_path, "gamma", "1.0", [], {"gamma/__init__.py": b"X = 1\n",
                                                        "gamma/weights/old.pth": b"0" * 4096})
    (tmp_path / "pack").mkdir()
    trimmed = tmp_path / "pack" / source.name
    assert wheels.trim_wheel(source, trimmed, ["gamma/weights/"]) == ["gamma/weights/old.pth"]
    with zipfile.ZipFile(trimmed) as archive:
        assert "gamma/weights/old.pth" not in archive.read("gamma-1.0.dist-info/RECORD").decode()
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target",
                    str(tmp_path / "site"), str(trimmed)], check=True, capture_output=True)
    assert (tmp_path / "site" / "gamma" / "__init__.py").is_file()
    assert not (tmp_path / "site" / "gamma" / "weights").exists()
    with pytest.raises(wheels.PackError, match="nothing matched"):
        wheels.trim_wheel(source, tmp_path / "again.whl", ["gamma/missing/"])


def test_a_call_over_the_device_limit_is_refused_naming_the_sizes(tmp_path):
    wheels = script("device_wheels")
    (tmp_path / ".whl-a").mkdir()
    (tmp_path / ".whl-a" / "big.whl").write_bytes(b"\0" * (3 * MIB))
    assert wheels.check_call("call", [tmp_path / ".whl-a"], 50 * MIB) == 53 * MIB
    with pytest.raises(wheels.PackError, match=r"tree 60.0 MiB \+ .whl-a 3.0 MiB = 63.0 MiB"):
        wheels.check_call("call", [tmp_path / ".whl-a"], 60 * MIB)


def test_data_pack_holds_the_task_files_checked_against_their_sha256(tmp_path, data_root):
    wheels = script("device_wheels")
    manifest = wheels.write_data_pack(tmp_path / "data", data_root, ["s22", "golddac"])
    assert list(manifest["files"]) == ["GoldDAC/val.xyz"]  # S22 ships with ASE
    with tarfile.open(tmp_path / "data" / manifest["archive"]) as tar:
        assert tar.getnames() == ["GoldDAC/val.xyz"]
        data = tar.extractfile("GoldDAC/val.xyz").read()
    assert hashlib.sha256(data).hexdigest() == manifest["files"]["GoldDAC/val.xyz"]
    assert 0 < manifest["bytes"] < len(data)  # gzipped
