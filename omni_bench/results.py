"""Results files in the spirit of lm-evaluation-harness: one JSON per (model, channel, task) that records
every setting, version and hash behind its numbers, and the per-item predictions beside it as CSV."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import socket
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import OmniBenchError
from .items import Entry
from .models.card import ModelCard
from .models.fingerprint import package_versions
from .results_format import json_text, reference_sha256
from .taskspec import TaskSpec
from .version import __version__


def environment(device: str) -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        # threads the model's torch used (None when the model does not use torch): timings depend on it
        "torch_threads": sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None,
        "device": device,
        "device_name": _device_name(device),
        "packages": package_versions(["omni-bench", "numpy", "scipy", "ase", "torch"]),
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _device_name(device: str) -> str:
    if device.startswith("cuda") and "torch" in sys.modules:
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    return cpu_name()


def task_file_sha256(task: TaskSpec) -> str | None:
    return hashlib.sha256(task.path.read_bytes()).hexdigest() if task.path else None


def entries_frame(entries: list[Entry]) -> pd.DataFrame:
    rows = []
    for e in entries:
        row = {"id": e.id, "quantity": e.quantity, "predicted": e.predicted, "reference": e.reference,
               "unit": e.unit, "error": None if e.failed else e.predicted - e.reference,
               "status": "failed" if e.failed else "ok", "message": e.error}
        row.update({f"group_{k}": v for k, v in e.groups.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def slug(text: str) -> str:
    """A file name from a model label: one path component, never '.' or '..' (a card named '..' must not
    write outside --out)."""
    name = "".join(c if c.isalnum() or c in "-_.@+" else "_" for c in text)
    return name.replace(".", "_") if set(name) <= {"."} else name


def refuse_shared_folders(labels: list[str]) -> None:
    """Two model labels that become one results folder (``a/b`` and ``a_b``; ``A`` and ``a`` on a file system
    that ignores case) would overwrite each other's files: refuse before anything is computed."""
    seen: dict[str, str] = {}
    for label in dict.fromkeys(labels):
        folder = slug(label)
        other = seen.setdefault(folder.casefold(), label)
        if other != label:
            raise OmniBenchError(f"model labels {other!r} and {label!r} would both write to the results folder "
                                 f"{slug(other)!r} under --out; rename one of the two models (its card's name)")


def json_path(out_dir: Path, label: str, task: TaskSpec) -> Path:
    """Where ``write`` puts a variant's results JSON for a task: ``<out>/<label>/<task>.json``."""
    return out_dir / slug(label) / f"{task.name}.json"


def is_complete(path: Path) -> bool:
    """Whether the results JSON at ``path`` exists and covers its whole task (not a --limit run)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict):
        return False
    if "complete" in record:
        return bool(record["complete"])
    return (record.get("config") or {}).get("limit") is None  # files written before 'complete' was recorded


def refuse_partial_overwrite(out_dir: Path, label: str, task: TaskSpec, n_total: int, limit: int | None) -> None:
    """A --limit run must not replace a complete results file: refuse before computing, naming the file and
    the flag that allows it."""
    path = json_path(out_dir, label, task)
    if is_complete(path):
        raise OmniBenchError(f"{path} holds a complete run of {task.name} ({n_total} items); this --limit {limit} "
                             "run would replace it: write it elsewhere with --out, or pass --replace-complete")


def write(out_dir: Path, label: str, task: TaskSpec, record: dict[str, Any], entries: list[Entry]) -> Path:
    """Write ``<out>/<model label>/<task>.json`` and ``<task>.predictions.csv``; return the JSON path.

    Both are written to temporary files first; the old JSON is removed before the new CSV takes its place and
    the new JSON comes last, so a failure at any point never leaves a new CSV beside an old JSON (a CSV
    without its JSON is not read as a result)."""
    path = json_path(out_dir, label, task)
    folder = path.parent
    csv_path = folder / f"{task.name}.predictions.csv"
    temporary = [csv_path.with_name(csv_path.name + ".tmp"), path.with_name(path.name + ".tmp")]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        entries_frame(entries).to_csv(temporary[0], index=False)
        record = {**record, "predictions_file": csv_path.name, "reference_sha256": reference_sha256(
            [e.id for e in entries], [e.quantity for e in entries], [e.reference for e in entries])}
        temporary[1].write_text(json_text(record), encoding="utf-8")
        path.unlink(missing_ok=True)
        temporary[0].replace(csv_path)
        temporary[1].replace(path)
    except OSError as exc:
        for tmp in temporary:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        raise OmniBenchError(f"cannot write results to {folder}: {exc}; the computed items are safe in the "
                             "store, so fix --out and run the same command again") from None
    return path


def card_summary(card: ModelCard, channel: str | None) -> dict[str, Any]:
    """What reports need from the model card to mark a result: its provenance (``ModelCard.summary``), the
    variant's level of theory, whether the model was trained with dispersion, the tasks whose data it was
    trained on (``in_domain``) and the energy convention it learned."""
    return {**card.summary(), "level_of_theory": card.channel_info(channel).level_of_theory,
            "energy_convention": card.energy_convention}


def record(*, label: str, fingerprint_id: str, fingerprint: dict, card_source: str, task: TaskSpec,
           data_root: str | None, config: dict, device: str,
           wall_s: float, computed: int, cached: int, n_items: int, failures: list[dict],
           notes: dict[str, int], metrics: dict[str, dict], card: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "omni_bench_version": __version__,
        "model": {"label": label, "fingerprint_id": fingerprint_id, "fingerprint": fingerprint,
                  "card": card_source},
        "card": card or {"source": card_source},
        "task": {
            "name": task.name, "version": task.version, "file_sha256": task_file_sha256(task),
            # the task files it extends, nearest first: ``config`` below is the file merged onto them
            "extends": [{"name": parent.name, "file_sha256": task_file_sha256(parent)}
                        for parent in task.lineage[1:]],
            "level_of_theory": task.level_of_theory, "citation": task.citation, "units": task.units,
            "protocol": task.protocol, "config": task.raw, "data_root": data_root,
            "dataset_files": [{"path": f.path, "sha256": f.sha256} for f in task.files],
            "dataset_tables": [{"path": f.path, "sha256": f.sha256} for f in task.tables],
        },
        "config": config,
        "environment": environment(device),
        "timing": {"wall_s": round(wall_s, 3), "items_computed": computed, "items_from_store": cached},
        "n_items": n_items,
        "n_failed": len(failures),
        "failures": failures,
        "notes": notes,
        "metrics": metrics,
    }
