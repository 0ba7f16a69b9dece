"""The dataset registry: which files each reference dataset has, their sha256 and size, and the public
repository, commit and path each one is fetched from. ``omni-bench data list|verify|fetch|mirror`` work from
it; task files name the files they use."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from pathlib import Path

import yaml

from . import data
from .errors import unknown

#: the licence field of a dataset whose repository states none: fetched from its source, never redistributed
NO_LICENCE = "not stated"


@dataclass(frozen=True)
class RegisteredFile:
    path: str  # under the data root, starting with the dataset's folder
    sha256: str
    size: int
    repo: str = ""  # OWNER/NAME on GitHub
    commit: str = ""
    upstream_path: str = ""  # inside the repository ('' in an index written before sources were recorded)

    @property
    def source(self) -> str:
        """OWNER/REPO/COMMIT/PATH: where the file lies in an upstream-shaped tree (GitHub raw, or a mirror)."""
        return f"{self.repo}/{self.commit}/{self.upstream_path}"

    def url(self, base: str) -> str:
        return base.rstrip("/") + "/" + urllib.parse.quote(self.source)


@dataclass
class Dataset:
    name: str
    description: str
    repo: str
    commit: str
    license: str
    citation: str
    files: list[RegisteredFile] = field(default_factory=list)
    extract: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def source_url(self) -> str:
        return f"https://github.com/{self.repo}/tree/{self.commit}"

    @property
    def licence_stated(self) -> bool:
        return self.license != NO_LICENCE


@cache
def registry() -> dict[str, Dataset]:
    package = files("omni_bench")
    meta = yaml.safe_load((package / "datasets.yaml").read_text())
    datasets = {name: Dataset(name, m["description"], m["repo"], m["commit"], m["license"], m["citation"],
                              extract=m.get("extract", []))
                for name, m in meta.items()}
    for line in (package / "datasets.sha256").read_text().splitlines():
        digest, size, path, *upstream = line.split(maxsplit=3)
        dataset = datasets[path.split("/", 1)[0]]
        dataset.files.append(RegisteredFile(path, digest, int(size), dataset.repo, dataset.commit,
                                            upstream[0] if upstream else ""))
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


def missing_bytes(root: Path, dataset: Dataset) -> int:
    """Bytes still to download for ``dataset`` to be complete under ``root``."""
    return sum(f.size for f in dataset.files if file_status(root, f) != "ok")
