"""A model fingerprint: everything that decides a model's numbers, hashed into a short id.

Results are stored under the fingerprint, so a new checkpoint or a new package version gets new results
instead of silently reusing old ones. Computing it imports no model package.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ..data import cached_sha256
from .registry import ModelVariant
from .worker import WorkerEnvironment, worker_environment


def package_versions(names: list[str]) -> dict[str, str]:
    return {name: _version(name) for name in names}


@cache
def _version(name: str) -> str:
    """Reading package metadata is slow enough to show in per-run overhead: once per process."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def fingerprint(variant: ModelVariant) -> dict[str, Any]:
    """For a model that runs in its own interpreter (``models/worker.py``), the checkpoint is found and the
    package versions are read there, and the Python version is added; ``--isolate`` changes nothing."""
    card = variant.card
    environment = worker_environment(card)
    checkpoint = card.resolve_checkpoint(environment.package_dirs if environment else None)
    arg_files = {
        key: cached_sha256(Path(value))
        for key, value in variant.args.items()
        if _names_a_file(value)
    }
    channel = card.channel_info(variant.channel)
    fp = {
        "model": card.name,
        "factory": card.factory,
        "args": variant.args,
        "arg_file_sha256": arg_files,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "checkpoint_sha256": cached_sha256(checkpoint) if checkpoint else None,
        "channel": variant.channel,
        "level_of_theory": channel.level_of_theory,
        "d3": variant.d3,
        "d3_functional": channel.d3_functional if variant.d3 else None,
        "packages": model_packages(variant, environment),
    }
    if variant.calculator is not None:  # api.evaluate's instance: its name stands for its weights
        fp["calculator"] = describe_instance(variant.calculator)
        fp["packages"] = {**fp["packages"], **package_versions([type(variant.calculator).__module__.split(".")[0]])}
    if environment is not None:
        fp["python"] = environment.interpreter.python
        fp["python_version"] = environment.python_version
    return fp


def model_packages(variant: ModelVariant, environment: WorkerEnvironment | None = None) -> dict[str, str]:
    """Versions of ASE and the card's packages where the model runs, and of dftd3 here (D3 is added here)."""
    names = ["ase", *variant.card.package_names]
    if environment is None:
        return package_versions([*names, *(["dftd3"] if variant.d3 else [])])
    found = {name: environment.versions.get(name) or "not installed" for name in names}
    return {**found, **(package_versions(["dftd3"]) if variant.d3 else {})}


def describe_instance(calculator: Any) -> dict[str, Any]:
    """What a fingerprint can say about a calculator instance: its class and its parameters where JSON can
    hold them (weights cannot be hashed: the user's name stands for them)."""
    cls = type(calculator)
    try:
        parameters = json.loads(json.dumps(dict(getattr(calculator, "parameters", {}) or {}), sort_keys=True))
    except (TypeError, ValueError):
        parameters = None
    return {"class": f"{cls.__module__}:{cls.__qualname__}", "parameters": parameters}


def fingerprint_id(fp: dict[str, Any]) -> str:
    """Short stable id; the checkpoint and interpreter paths are left out so moving a file keeps its results."""
    stable = {k: v for k, v in fp.items() if k not in ("checkpoint", "python")}
    return hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _names_a_file(value) -> bool:
    try:
        return isinstance(value, str) and Path(value).is_file()
    except (OSError, ValueError):  # too long for a path, or a NUL in it: not a file
        return False
