"""The dataset registry: which files each reference dataset has, their sha256 and size, and where they
came from. ``omni-bench data list|verify|fetch`` work from it; task files name the files they use."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from pathlib import Path

import yaml

from . import data
from .errors import unknown


@dataclass(frozen=True)
class RegisteredFile:
    path: str
    sha256: str
    size: int


@dataclass
class Dataset:
    name: str
    description: str
    source: str
    license: str
    files: list[RegisteredFile] = field(default_factory=list)
    extract: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


@cache
def registry() -> dict[str, Dataset]:
    package = files("omni_bench")
    meta = yaml.safe_load((package / "datasets.yaml").read_text())
    datasets = {name: Dataset(name, m["description"], m["source"], m["license"], extract=m.get("extract", []))
                for name, m in meta.items()}
    for line in (package / "datasets.sha256").read_text().splitlines():
        digest, size, path = line.split(maxsplit=2)
        datasets[path.split("/", 1)[0]].files.append(RegisteredFile(path, digest, int(size)))
    return datasets


def get(name: str) -> Dataset:
    if name not in registry():
        raise unknown("dataset", name, registry())
    return registry()[name]


def dataset_of(path: str) -> str | None:
    """The dataset a data-root-relative path belongs to, if any."""
    name = path.split("/", 1)[0]
    return name if name in registry() else None


def file_status(root: Path, entry: RegisteredFile) -> str:
    """'ok', 'missing' or 'corrupted' (wrong size or sha256)."""
    path = root / entry.path
    if not path.is_file():
        return "missing"
    stat = path.stat()
    if stat.st_size != entry.size:
        return "corrupted"
    return "ok" if data.cached_sha256(path) == entry.sha256 else "corrupted"


def status(root: Path, dataset: Dataset) -> dict[str, list[str]]:
    """Paths of the dataset grouped by status."""
    grouped: dict[str, list[str]] = {"ok": [], "missing": [], "corrupted": []}
    for entry in dataset.files:
        grouped[file_status(root, entry)].append(entry.path)
    return grouped
