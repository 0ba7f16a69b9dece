"""The GPU pack's driver (``scripts/device_pack.sh`` starts it): every part by a wall-clock deadline.

Each part runs in its own process under a time limit, so a part that crashes, hangs or runs out of GPU memory
costs only its own results; whatever a part finished is in $OUT before the next one starts. The time left is
shared among the parts still to run by their weights (``PARTS``), recomputed at the start of each.

- ``env``: GPU, driver, CUDA, package versions and the command, in ``pack.json`` (rewritten after every part).
- ``batched``: the batched single-point path against the per-structure ASE loop for 7net-0 and CHGNet, on a
  slice of the molecules suite and of GoldDAC, with the functions of ``benchmarks/single_points.py``:
  one untimed round that also checks that both paths give the same energies, then timed rounds alternating
  the two; ``batched.json``.
- ``md-speed`` / ``md-speed-cueq``: ``omni-bench run --task md-speed`` per model, on a copy of the task file
  with the ladder capped at 32,768 atoms and ``max_seconds_per_size`` sized to the time left; the cueq part
  runs the SevenNet models again with sevenn's ``enable_cueq`` where cuEquivariance imports. A run past its
  limit is killed and its finished sizes are written out from the result store. ``md-speed*.tar.gz``.
- ``train``: ``python -m omni_bench_reference.train --config reference_model/configs/dbs.yaml --max-minutes M``
  on the GPU; ``train.tar.gz`` holds checkpoint.pth, metrics.json and log.csv.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent

ALL_PARTS = ["env", "batched", "md-speed", "md-speed-cueq", "train"]
#: shares of the time left; env takes seconds and gets none
WEIGHTS = {"env": 0.0, "batched": 1.2, "md-speed": 3.0, "md-speed-cueq": 3.0, "train": 2.2}
MD_MODELS = ["7net-0", "chgnet", "7net-mf-0", "7net-l3i5", "omni"]
CUEQ_MODELS = ["7net-0", "7net-mf-0", "7net-l3i5", "omni"]  # the SevenNet models: enable_cueq is sevenn's
BATCHED_MODELS = ["7net-0", "chgnet"]
DATA_ARCHIVE = REPO / ".device-data" / "reference-data.tar.gz"
RESERVE_S = 15.0  # kept back at the end for writing pack.json
NO_CUEQ = "cuEquivariance is not installed here (it travels in .whl-b, with device call 2) or there is no GPU"


@dataclass
class Sizes:
    """What the pack computes: the GPU sizes, or the dry run's tiny ones."""

    device: str
    ladder: list[int]  # md-speed's supercell repeats: 8 k^3 atoms
    md_params: dict
    min_budget_s: float  # md-speed max_seconds_per_size bounds
    max_budget_s: float
    run_overhead_s: float  # one omni-bench process: start-up and model loading
    group_md_models: bool  # one process for all models (the dry run) or one per model (a limit each)
    batched_sets: dict[str, list[tuple[str, int | None]]]  # name -> (task, first N items)
    batched_warmup_rounds: int
    batched_rounds: int
    train_config: str
    train_epochs: int
    train_minutes: float | None = None  # --max-minutes; None: what the deadline leaves


GPU = Sizes(device="cuda", ladder=[2, 3, 4, 5, 8, 10, 16], md_params={"warmup_steps": 3, "steps": 5, "repeats": 3},
            min_budget_s=3.0, max_budget_s=30.0, run_overhead_s=15.0, group_md_models=False,
            batched_sets={"molecules": [("s22", None), ("openff-torsions", 8)], "golddac": [("golddac", 120)]},
            batched_warmup_rounds=1, batched_rounds=3, train_config="reference_model/configs/dbs.yaml",
            train_epochs=500)
DRY = Sizes(device="cpu", ladder=[2], md_params={"warmup_steps": 1, "steps": 2, "repeats": 1},
            min_budget_s=60.0, max_budget_s=60.0, run_overhead_s=0.0, group_md_models=True,
            batched_sets={"molecules": [("s22", 2), ("openff-torsions", 1)], "golddac": [("golddac", 2)]},
            batched_warmup_rounds=0, batched_rounds=1, train_config="reference_model/configs/smoke.yaml",
            train_epochs=2, train_minutes=0.01)  # the time cap stops it after one epoch, as the deadline does on a GPU


@dataclass
class PartResult:
    part: str
    status: str  # ok, failed, killed (past its limit), skipped
    seconds: float = 0.0
    limit_s: float = 0.0
    message: str = ""
    details: dict = field(default_factory=dict)


def log(text: str) -> None:
    print(f"[driver {time.strftime('%H:%M:%S')}] {text}", flush=True)


def run_limited(cmd: list[str], limit_s: float, env: dict | None = None) -> tuple[str, int | None]:
    """Run ``cmd`` with its output in the log, killed with all its children after ``limit_s``:
    ("ok"|"failed"|"killed", exit code)."""
    log("$ " + " ".join(cmd))
    process = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True)
    try:
        code = process.wait(timeout=max(limit_s, 1.0))
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # its own process group: the omni-bench runs it started go too
        process.wait()
        return "killed", None
    return ("ok" if code == 0 else "failed"), code


# ----------------------------------------------------------------------------------------------- env


def environment(sizes: Sizes) -> dict:
    from omni_bench.models.fingerprint import package_versions
    from omni_bench.results import cpu_name

    info = {"dry_run": sizes is DRY, "device": sizes.device, "hostname": socket.gethostname(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "python": platform.python_version(),
            "platform": platform.platform(), "cpu": cpu_name(), "cpu_count": os.cpu_count(), "git": _git_head(),
            "packs": _pack_manifests()}
    import torch

    info["torch"] = torch.__version__
    info["torch_cuda"] = torch.version.cuda
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                       "multiprocessors": props.multi_processor_count, "capability": f"{props.major}.{props.minor}",
                       "driver": _nvidia_smi("driver_version")}
    info["packages"] = package_versions(["ase", "sevenn", "chgnet", "e3nn", "torch-geometric", "numpy", "scipy",
                                         "pymatgen", "pymatgen-core", "matscipy", "cuequivariance",
                                         "cuequivariance-torch", "cuequivariance-ops-torch-cu13"])
    info["cueq_available"] = cueq_installed() and torch.cuda.is_available()
    return info


def _git_head() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _pack_manifests() -> dict:
    found = {}
    for manifest in sorted(REPO.glob(".whl-*/manifest.json")):
        record = json.loads(manifest.read_text())
        found[manifest.parent.name] = {w["name"]: w["version"] for w in record["wheels"]}
    return found


def _nvidia_smi(field_name: str) -> str | None:
    try:
        return subprocess.run(["nvidia-smi", f"--query-gpu={field_name}", "--format=csv,noheader"],
                              capture_output=True, text=True, check=True, timeout=20).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def cueq_installed() -> bool:
    """Whether cuEquivariance's torch package is there (without importing anything)."""
    return importlib.util.find_spec("cuequivariance_torch") is not None


def cueq_available() -> bool:
    """sevenn's own test: cuEquivariance imports and torch sees a GPU."""
    if not cueq_installed():
        return False
    from sevenn.nn.cue_helper import is_cue_available

    return bool(is_cue_available())


# ----------------------------------------------------------------------------------------------- batched


def batched_part(sizes: Sizes, deadline: float, out: Path) -> dict:
    sys.path.insert(0, str(REPO / "benchmarks"))
    import single_points as bench  # the structures the CPU benchmark takes

    from omni_bench.models.batched import default_batch_atoms
    from omni_bench.models.loaded import LoadedModel
    from omni_bench.models.registry import resolve_models

    entries = []
    sets = {set_name: [atoms for task, limit in slices for atoms in bench.single_points(task, limit)]
            for set_name, slices in sizes.batched_sets.items()}
    for name in BATCHED_MODELS:
        (variant,) = resolve_models([name])
        model = LoadedModel(variant, sizes.device)
        for set_name, slices in sizes.batched_sets.items():
            structures = sets[set_name]
            entries.append(measure_batched(model, structures, set_name, slices, sizes, deadline,
                                           default_batch_atoms(model.device)))
            (out / "batched.json").write_text(json.dumps({"entries": entries}, indent=1) + "\n")
            log(f"batched {name} {set_name}: {entries[-1]['n_structures']} structures, batched/ASE "
                f"{entries[-1]['median_ratio_batched_to_ase']:.3f} ({entries[-1]['speedup']:.2f}x)")
    return {"entries": len(entries)}


def measure_batched(model, structures: list, set_name: str, slices, sizes: Sizes, deadline: float,
                    batch_atoms: int) -> dict:
    """Warm-up rounds, then timed rounds while the deadline allows (at least one): in each, the ASE loop and
    then the batched path, as ``benchmarks/test_batched_speed.py`` runs them, with both paths' energies compared
    structure by structure."""
    sync = _synchroniser(model.device)
    ase_seconds, batched_seconds, largest_diff = [], [], 0.0
    for position in range(sizes.batched_warmup_rounds + sizes.batched_rounds):
        round_start = time.perf_counter()
        seconds, ase = _timed(sync, _ase_energies, model, structures)
        seconds_batched, batched = _timed(sync, _batched_energies, model, structures, batch_atoms)
        largest_diff = max(largest_diff, *(abs(a - b) / len(s) for a, b, s in zip(ase, batched, structures,
                                                                                    strict=True)))
        if position >= sizes.batched_warmup_rounds:
            ase_seconds.append(seconds)
            batched_seconds.append(seconds_batched)
            if time.time() + (time.perf_counter() - round_start) > deadline:
                break
    ratio = statistics.median(b / a for b, a in zip(batched_seconds, ase_seconds, strict=True))
    return {"kind": "batched_vs_ase", "model": model.variant.label, "set": set_name,
            "tasks": [[task, limit] for task, limit in slices], "n_structures": len(structures),
            "n_atoms": sum(len(a) for a in structures), "device": model.device,
            "device_name": _device_name(model.device), "batched_path": model.batched_path, "batch_atoms": batch_atoms,
            "warmup_rounds": sizes.batched_warmup_rounds, "rounds": len(ase_seconds), "ase_seconds": ase_seconds,
            "batched_seconds": batched_seconds, "median_ratio_batched_to_ase": ratio, "speedup": 1 / ratio,
            "max_abs_diff_eV_per_atom": largest_diff, "evaluations": dict(model.evaluations)}


def _ase_energies(model, structures: list) -> list[float]:
    """benchmarks/single_points.py's ``ase_loop``, keeping each energy."""
    model.prefetch([], 0)
    return [model.energy(atoms) for atoms in structures]


def _batched_energies(model, structures: list, batch_atoms: int) -> list[float]:
    """benchmarks/single_points.py's ``batched_loop``, keeping each energy."""
    model.prefetch(structures, batch_atoms)
    energies = [model.energy(atoms) for atoms in structures]
    model.prefetch([], 0)
    return energies


def _synchroniser(device: str):
    if device.startswith("cuda"):
        import torch

        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def _timed(sync, function, *args):
    """(seconds, what ``function`` returned), with queued GPU work finished at both clock readings."""
    sync()
    start = time.perf_counter()
    value = function(*args)
    sync()
    return time.perf_counter() - start, value


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    from omni_bench.results import cpu_name

    return cpu_name()


# ----------------------------------------------------------------------------------------------- md-speed


def md_speed_part(sizes: Sizes, deadline: float, work: Path, out: Path, cueq: bool) -> dict:
    tag = "md-speed-cueq" if cueq else "md-speed"
    if cueq and not cueq_available():
        raise Skipped(NO_CUEQ)
    results = work / tag
    models = [cueq_card(name, work / "cards") for name in CUEQ_MODELS] if cueq else MD_MODELS
    groups = [models] if sizes.group_md_models else [[m] for m in models]
    runs = []
    for position, group in enumerate(groups):
        allowance = (deadline - time.time()) / (len(groups) - position)
        budget = min(max((allowance - sizes.run_overhead_s) / 3, sizes.min_budget_s), sizes.max_budget_s)
        if allowance < sizes.run_overhead_s + 2 * sizes.min_budget_s:
            runs.append({"models": group, "status": "skipped", "message": f"{allowance:.0f} s left for this run"})
            log(f"{tag}: skipping {group}: only {allowance:.0f} s left for it")
            continue
        runs.append(md_speed_run(group, budget, min(1.5 * allowance, deadline - time.time() + 15), sizes, work,
                                 results, f"{tag}-{position}"))
        runs_file = _json_file(work / f"{tag}-runs.json", runs)
        _write_tar(out / f"{tag}.tar.gz", {"results": results, "runs.json": runs_file})
    return {"runs": runs}


class Skipped(Exception):
    """A part that cannot run here; the reason goes into pack.json."""


def cueq_card(name: str, folder: Path) -> str:
    """A card file for ``name`` run with cuEquivariance kernels: the built-in card, renamed, with enable_cueq."""
    from omni_bench.models.registry import builtin_cards

    card = yaml.safe_load(builtin_cards()[name].read_text())
    card["name"] = f"{name}-cueq"
    card["args"] = {**card.get("args", {}), "enable_cueq": True}
    card["description"] = f"{card['description'].strip()} Run with cuEquivariance kernels (sevenn enable_cueq)."
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{card['name']}.yaml"
    path.write_text(yaml.safe_dump(card, sort_keys=False))
    return str(path)


def md_speed_run(models: list[str], budget_s: float, limit_s: float, sizes: Sizes, work: Path, results: Path,
                 run_id: str) -> dict:
    """One ``omni-bench run`` of md-speed; after a kill, the finished sizes are written out from the store."""
    task_dir = md_speed_task(work / "tasks" / run_id, sizes, budget_s)
    store = work / "stores" / f"{run_id}.sqlite"
    base = [sys.executable, "-m", "omni_bench.cli", "--tasks-dir", str(task_dir), "run", "--task", "md-speed",
            *[arg for m in models for arg in ("--model", m)], "--device", sizes.device, "--store", str(store),
            "--out", str(results), "--no-progress"]
    start = time.time()
    status, code = run_limited(base, limit_s)
    record = {"models": models, "budget_s": round(budget_s, 1), "limit_s": round(limit_s, 1), "status": status,
              "exit_code": code, "seconds": round(time.time() - start, 1), "command": base}
    if status == "killed":
        done = _stored_items(store)
        record["message"] = f"killed after {limit_s:.0f} s with {done} size(s) stored"
        if done and len(models) == 1:
            record["recovered"] = run_limited([*base, "--limit", str(done)], 120)[0]
    log(f"md-speed {models}: {record['status']} in {record['seconds']} s (budget {budget_s:.1f} s per size)")
    return record


def md_speed_task(folder: Path, sizes: Sizes, budget_s: float) -> Path:
    """The shipped md-speed task file with the pack's ladder, steps and time budget per size."""
    from omni_bench.task_registry import all_tasks

    raw = yaml.safe_load(all_tasks()["md-speed"].path.read_text())
    raw["dataset"]["params"]["repeats"] = sizes.ladder
    raw["counts"] = {**raw["counts"], "items": len(sizes.ladder)}  # one item per size, checked on load
    raw["protocol"]["params"].update(sizes.md_params, max_seconds_per_size=round(budget_s, 1))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "md-speed.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return folder


def _stored_items(store: Path) -> int:
    if not store.is_file():
        return 0
    with sqlite3.connect(store) as db:
        return db.execute("SELECT COUNT(*) FROM results").fetchone()[0]


# ----------------------------------------------------------------------------------------------- train


def train_part(sizes: Sizes, deadline: float, work: Path, out: Path) -> dict:
    run_dir = work / "train"
    minutes = sizes.train_minutes or max((deadline - time.time() - 20) / 60, 0.5)
    cmd = [sys.executable, "-m", "omni_bench_reference.train", "--config", sizes.train_config, "--epochs",
           str(sizes.train_epochs), "--max-minutes", f"{minutes:.2f}", "--out", str(run_dir)]
    status, code = run_limited(cmd, deadline - time.time() + 10)
    kept = {name: run_dir / name for name in ("checkpoint.pth", "metrics.json", "log.csv")
            if (run_dir / name).is_file()}
    if kept:
        _write_tar(out / "train.tar.gz", kept)
    details = {"status": status, "exit_code": code, "max_minutes": round(minutes, 2), "command": cmd,
               "files": sorted(kept)}
    if status != "ok":
        raise PartFailed(f"training {status} (exit code {code}); kept {sorted(kept) or 'nothing'}", details)
    return details


class PartFailed(Exception):
    def __init__(self, message: str, details: dict):
        super().__init__(message)
        self.details = details


# ----------------------------------------------------------------------------------------------- plumbing


def _json_file(path: Path, value) -> Path:
    path.write_text(json.dumps(value, indent=1) + "\n")
    return path


def _write_tar(target: Path, members: dict[str, Path]) -> None:
    """Write ``target`` atomically, so a kill never leaves half an archive in $OUT."""
    partial = target.with_name(target.name + ".part")
    with tarfile.open(partial, "w:gz") as tar:
        for name, path in members.items():
            if path.exists():
                tar.add(path, arcname=name)
    os.replace(partial, target)


def prepare_data(work: Path, dry_run: bool) -> Path | None:
    """The reference data root: .device-data's archive unpacked (the dry run packs one from OMNI_BENCH_DATA
    first, with the same code as scripts/device_wheels.py)."""
    archive = DATA_ARCHIVE
    if not archive.is_file() and dry_run and os.environ.get("OMNI_BENCH_DATA"):
        from device_wheels import write_data_pack

        archive = work / "device-data" / DATA_ARCHIVE.name
        write_data_pack(archive.parent, Path(os.environ["OMNI_BENCH_DATA"]))
    if not archive.is_file():
        log(f"no {DATA_ARCHIVE.relative_to(REPO)}: the data-backed batched sets will fail (scripts/device_wheels.sh "
            "builds it; carry .device-data)")
        return None
    root = work / "data"
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    return root


def run_part(part: str, sizes: Sizes, deadline: float, work: Path, out: Path) -> dict:
    if part == "env":
        return environment(sizes)
    if part == "batched":
        return batched_part(sizes, deadline, out)
    if part in ("md-speed", "md-speed-cueq"):
        return md_speed_part(sizes, deadline, work, out, cueq=part == "md-speed-cueq")
    if part == "train":
        return train_part(sizes, deadline, work, out)
    raise ValueError(part)


def child(args) -> int:
    """``--child PART``: one part in this process; its result (or failure) as JSON in ``--result``."""
    sizes = DRY if args.dry_run else GPU
    try:
        value = {"status": "ok", "details": run_part(args.child, sizes, args.part_deadline, args.work, args.out)}
    except Skipped as exc:
        value = {"status": "skipped", "message": str(exc)}
    except PartFailed as exc:
        value = {"status": "failed", "message": str(exc), "details": exc.details}
    except Exception as exc:  # recorded in pack.json; the next part still runs
        import traceback

        traceback.print_exc()
        value = {"status": "failed", "message": f"{type(exc).__name__}: {exc}"}
    args.result.write_text(json.dumps(value, default=str) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--deadline", type=float, required=True, help="Unix time by which everything has ended")
    parser.add_argument("--parts", default=",".join(ALL_PARTS))
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a new one in the temporary folder)")
    parser.add_argument("--child", choices=ALL_PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--part-deadline", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(ALL_PARTS))
    if unknown:
        print(f"device_pack: unknown part(s) {unknown}; choose from {ALL_PARTS}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    if importlib.util.find_spec("sevenn") is None:
        print("device_pack: sevenn is not installed here. On the device it comes from .whl-a, which device call 1 "
              "carries and installs into .device-site/; a fresh machine needs call 1 first", file=sys.stderr)
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="omni-device-pack-"))
    work.mkdir(parents=True, exist_ok=True)
    data_root = prepare_data(work, args.dry_run) if "batched" in parts else None
    env = {**os.environ, **({"OMNI_BENCH_DATA": str(data_root)} if data_root else {})}
    pack = {"command": {"argv": sys.argv, "env": {k: os.environ[k] for k in ("DRY_RUN", "PACK_SECONDS", "PARTS")
                                                  if k in os.environ}},
            "deadline": args.deadline, "parts_asked": parts, "parts": {}}
    results = []
    end = args.deadline - RESERVE_S
    if "md-speed-cueq" in parts and not cueq_installed():  # known without starting a process
        parts.remove("md-speed-cueq")
        results.append(PartResult("md-speed-cueq", "skipped", message=NO_CUEQ))
    for position, part in enumerate(parts):
        part_deadline, limit = _part_time(part, parts[position:], end, args.dry_run)
        result = _run_child(part, args, work, part_deadline, min(limit, args.deadline - time.time()), env)
        results.append(result)
        if part == "env" and result.status == "ok":
            pack["environment"] = result.details
        pack["parts"] = {r.part: asdict(r) for r in results}
        _json_file(args.out / "pack.json", pack)
        log(f"part {part}: {result.status} in {result.seconds:.0f} s {result.message}")
    failed = [r.part for r in results if r.status in ("failed", "killed")]
    log("done" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


def _part_time(part: str, remaining: list[str], end: float, dry_run: bool) -> tuple[float, float]:
    """The part's own deadline (its weight's share of the time left) and its hard limit (a little more). The
    dry run only keeps the overall deadline: its tiny sizes are not timed, and a loaded CI machine is slow."""
    now = time.time()
    if dry_run:
        return end, end - now
    if not WEIGHTS[part]:
        return end, 90.0
    share = WEIGHTS[part] / sum(WEIGHTS[p] for p in remaining)
    part_deadline = now + max(end - now, 0) * share
    return part_deadline, part_deadline - now + 30


def _run_child(part: str, args, work: Path, part_deadline: float, limit: float, env: dict) -> PartResult:
    result_file = work / f"{part}.result.json"
    result_file.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--out", str(args.out), "--deadline", str(args.deadline),
           "--work", str(work), "--child", part, "--part-deadline", str(part_deadline), "--result", str(result_file),
           *(["--dry-run"] if args.dry_run else [])]
    start = time.time()
    if limit <= 1:
        return PartResult(part, "skipped", 0.0, limit, "no time left")
    status, code = run_limited(cmd, limit, env)
    seconds = time.time() - start
    if status == "killed":
        return PartResult(part, "killed", seconds, limit, f"past its limit of {limit:.0f} s")
    if not result_file.is_file():
        return PartResult(part, "failed", seconds, limit, f"exit code {code}, no result written")
    value = json.loads(result_file.read_text())
    return PartResult(part, value["status"], seconds, limit, value.get("message", ""), value.get("details", {}))


if __name__ == "__main__":
    sys.exit(main())
