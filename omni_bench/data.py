"""Where reference data lives and whether it is intact.

The data root comes from ``--data-dir``, else ``OMNI_BENCH_DATA``, else a folder in the user's cache.
Task files list their files relative to it with a sha256; a file is used only after its hash matches.
"""

from __future__ import annotations

import hashlib
import os
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

from .errors import OmniBenchError

if TYPE_CHECKING:  # task files name data files; data files know nothing of task files
    from .taskspec import TaskSpec

DATA_ENV = "OMNI_BENCH_DATA"


def default_data_root() -> Path:
    return Path(platformdirs.user_cache_dir("omni-bench")) / "data"


def resolve_data_root(cli_value: str | os.PathLike | None = None) -> tuple[Path, str]:
    """The data root and where the setting came from (for messages and results files). It need not exist
    yet (``data fetch`` creates it), but it must not be a file."""
    if cli_value:
        root, origin = Path(cli_value).expanduser().resolve(), "--data-dir"
    elif os.environ.get(DATA_ENV):
        root, origin = Path(os.environ[DATA_ENV]).expanduser().resolve(), DATA_ENV
    else:
        root, origin = default_data_root(), "default cache folder"
    if root.exists() and not root.is_dir():
        raise OmniBenchError(f"the data root {root} ({origin}) is a file, not a folder; point --data-dir or "
                             f"{DATA_ENV} at the folder that holds the datasets")
    return root, origin


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@cache
def _hash_of_version(path: Path, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def cached_sha256(path: Path) -> str:
    """sha256 of a file, computed once per (path, size, mtime) in this process."""
    stat = path.stat()
    return _hash_of_version(path, stat.st_size, stat.st_mtime_ns)


def task_files(spec: TaskSpec, data_root: Path, origin: str = "") -> dict[str, Path]:
    """Verified absolute paths of every file a task needs (data files, and the tables beside its task file),
    or one clear error about the first bad one."""
    found = task_tables(spec)
    if not spec.files:
        return found
    if not data_root.is_dir():
        raise OmniBenchError(
            f"task {spec.name!r} needs reference data, but the data root {data_root} "
            f"({origin or 'data root'}) does not exist; pass --data-dir or set {DATA_ENV}")
    for entry in spec.files:
        path = data_root / entry.path
        if not path.is_file():
            raise OmniBenchError(
                f"task {spec.name!r}: data file {entry.path} is missing under {data_root} ({origin}); "
                f"check --data-dir / {DATA_ENV}, or run: omni-bench data fetch {entry.path.split('/')[0]}")
        actual = cached_sha256(path)
        if actual != entry.sha256:
            raise OmniBenchError(
                f"task {spec.name!r}: {path} has sha256 {actual[:12]}..., but {spec.path} expects "
                f"{entry.sha256[:12]}...; the file is corrupted or a different version: fetch it again "
                f"(omni-bench data fetch {entry.path.split('/')[0]})")
        found[entry.path] = path
    return found


def task_tables(spec: TaskSpec) -> dict[str, Path]:
    """The small derived tables a task ships beside its task file, checked against the sha256 it lists."""
    found = {}
    for entry in spec.tables:
        path = spec.path.parent / entry.path
        if not path.is_file():
            raise OmniBenchError(f"{spec.path}: field 'dataset.tables' names {entry.path}, which is not beside the "
                                 "task file; copy it there (an installed omni-bench ships it in builtin_tasks)")
        actual = cached_sha256(path)
        if actual != entry.sha256:
            raise OmniBenchError(f"{path} has sha256 {actual[:12]}..., but {spec.path} lists {entry.sha256[:12]}...; "
                                 "restore the table, or update its sha256 (and the task's version if values change)")
        found[entry.path] = path
    return found
