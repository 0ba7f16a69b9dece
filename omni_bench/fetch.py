"""Downloading datasets from their upstream sources: resumable, size-capped, verified, atomic; and safe
archive extraction.

Every registered file has a place in an upstream-shaped tree, ``OWNER/REPO/COMMIT/PATH``: on GitHub's raw
file server (the default source), or in a mirror (``OMNI_BENCH_MIRROR``: a URL or a folder laid out the same
way, see ``omni-bench data mirror``). A file is written to ``<name>.part``; an interrupted transfer resumes
from the bytes already there (HTTP Range) after a pause that doubles with each retry; a server that sends more
than the registered size is cut off there and the file rejected; only a file whose size and sha256 match the
registry is renamed into place, so a reader never sees a half-written or corrupted file.
"""

from __future__ import annotations

import http.client
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import NoReturn

from tqdm import tqdm

from .data import sha256_file
from .datasets import Dataset, RegisteredFile, file_status, get, missing_bytes, registry
from .errors import OmniBenchError
from .version import __version__

MIRROR_ENV = "OMNI_BENCH_MIRROR"
GITHUB_RAW = "https://raw.githubusercontent.com"
_CHUNK = 1 << 16
_RETRY_HTTP = {408, 425, 429, 500, 502, 503, 504}


@dataclass
class FetchSettings:
    source: str = GITHUB_RAW  # base URL or folder of an upstream-shaped tree
    retries: int = 5  # further attempts after a failed or interrupted transfer
    backoff: float = 1.0  # seconds before the first retry, doubling for each further one
    timeout: float = 60.0
    workers: int = 8  # concurrent downloads (datasets of thousands of small files)
    progress: bool = True


@dataclass
class FetchReport:
    fetched: list[str] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    extracted: list[str] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0


def resolve_source(cli_value: str | None) -> str:
    """Where files come from: ``--mirror``, else ``OMNI_BENCH_MIRROR``, else GitHub itself."""
    return cli_value or os.environ.get(MIRROR_ENV) or GITHUB_RAW


def _is_url(source: str) -> bool:
    return urllib.parse.urlparse(source).scheme in ("http", "https")


def fetch_dataset(dataset: Dataset, root: Path, settings: FetchSettings, log=print) -> FetchReport:
    """Bring every file of ``dataset`` into ``root``, verified; files already intact are left alone."""
    report = FetchReport()
    todo = []
    for entry in dataset.files:
        if file_status(root, entry) == "ok":
            report.already_present.append(entry.path)
        else:
            todo.append(entry)
    started = time.perf_counter()
    with tqdm(total=sum(e.size for e in todo), unit="B", unit_scale=True, unit_divisor=1024, desc=dataset.name,
              disable=not settings.progress or not todo, leave=False) as bar:
        def fetch_one(entry: RegisteredFile) -> tuple[RegisteredFile, str | None]:
            try:
                fetch_file(entry, root, settings, bar.update)
                return entry, None
            except OmniBenchError as exc:
                return entry, str(exc)

        with ThreadPoolExecutor(max_workers=max(1, settings.workers)) as pool:
            for entry, error in pool.map(fetch_one, todo):
                if error is None:
                    report.fetched.append(entry.path)
                    report.bytes += entry.size
                else:
                    report.failed[entry.path] = error
                    (bar.write if settings.progress else log)(f"  failed: {error}")
    report.seconds = time.perf_counter() - started
    for archive in dataset.extract:
        if archive in report.failed:
            continue
        target = root / str(PurePosixPath(archive).with_suffix(""))
        safe_extract(root / archive, target)
        report.extracted.append(str(target))
    return report


def fetch_file(entry: RegisteredFile, root: Path, settings: FetchSettings, progress=lambda n: None) -> None:
    """Download (or copy from a mirror folder) one file, verify it and move it into place."""
    if not entry.upstream_path:
        raise OmniBenchError(f"{entry.path}: the registry records no source for it; regenerate "
                             "omni_bench/datasets.sha256 with scripts/build_dataset_index.py")
    final = root / entry.path
    part = partial_file(root, final)
    if _is_url(settings.source):
        where = entry.url(settings.source)
        download(where, part, entry.size, settings, progress)
    else:
        source = Path(settings.source.removeprefix("file://")) / entry.source
        where = str(source)
        if not source.is_file():
            raise OmniBenchError(f"{entry.path}: not in the mirror folder (looked for {source})")
        if source.stat().st_size > entry.size:
            raise OmniBenchError(f"{entry.path}: {source} is larger than the registered {entry.size} B; rejected")
        with open(source, "rb") as src, open_partial(part, append=False) as out:
            shutil.copyfileobj(src, out)
        progress(entry.size)
    digest = sha256_file(part)
    if digest != entry.sha256:
        part.unlink()
        raise OmniBenchError(f"{entry.path}: sha256 mismatch from {where}: got {digest}, expected "
                             f"{entry.sha256}; deleted the partial file {part.name}")
    os.replace(part, final)


def download(url: str, part: Path, size: int, settings: FetchSettings, progress, exact: bool = True) -> None:
    """Download ``url`` into ``part`` (exactly ``size`` bytes; with ``exact`` False, at most ``size``: a file
    whose size no registry records, such as a model's weights, complete when the server's length is reached),
    resuming from what is there, retrying interruptions, timeouts and server errors with exponential backoff."""
    last_error = "no attempt made"
    for attempt in range(settings.retries + 1):
        if attempt:
            time.sleep(min(settings.backoff * 2 ** (attempt - 1), 60.0))
        have = part.stat().st_size if part.exists() else 0
        if exact and have == size:  # complete already (the sha256 check follows)
            return
        if have > size:
            part.unlink()
            have = 0
        headers = {"User-Agent": f"omni-bench/{__version__}"}
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                        timeout=settings.timeout) as response:
                if have and response.status != 206:  # the server ignored the range: start over
                    progress(-have)
                    have = 0
                length = response.headers.get("Content-Length")
                if length is not None and have + int(length) > size:
                    _reject_oversize(part, url, size)
                # where this transfer ends: the registered size, else the announced length, else the cap
                end = size if exact or length is None else have + int(length)
                with open_partial(part, append=bool(have)) as out:
                    remaining = end - have
                    while remaining and (chunk := response.read(min(_CHUNK, remaining))):
                        out.write(chunk)
                        remaining -= len(chunk)
                        progress(len(chunk))
                    if not remaining and response.read(1):  # no length announced, and more than registered
                        out.close()
                        _reject_oversize(part, url, size)
                if not remaining or (not exact and length is None):  # unannounced length: its end is the end
                    return
                last_error = f"connection closed after {end - remaining} of {end} B"
        except urllib.error.HTTPError as exc:
            last_error = f"HTTP {exc.code} {exc.reason}"
            if exc.code == 416:  # range beyond the end: what we have is wrong, start over
                progress(-have)
                part.unlink(missing_ok=True)
            elif exc.code not in _RETRY_HTTP:
                part.unlink(missing_ok=True)
                raise OmniBenchError(f"{part.name.removesuffix('.part')}: {last_error} from {url}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
    have = part.stat().st_size if part.exists() else 0
    if have != size or not exact:
        raise OmniBenchError(f"{part.name.removesuffix('.part')}: transfer incomplete after "
                             f"{settings.retries + 1} attempts ({last_error}) from {url}; kept {have}"
                             f"{f' of {size}' * exact} B in {part.name}: run the same command to resume")


def partial_file(root: Path, final: Path) -> Path:
    """Where ``final`` is downloaded to: ``<name>.part`` beside it, inside the data root (a linked folder must
    not carry the download elsewhere) and never a link or anything but a regular file."""
    part = final.with_name(final.name + ".part")
    if not part.parent.resolve().is_relative_to(root.resolve()):
        raise OmniBenchError(f"{final}: its folder resolves to {part.parent.resolve()}, outside the data root "
                             f"{root.resolve()}; remove the link so downloads stay inside the data root")
    part.parent.mkdir(parents=True, exist_ok=True)
    if part.is_symlink() or (part.exists() and not part.is_file()):
        raise OmniBenchError(f"{part}: the partial download is a link or not a regular file; omni-bench writes "
                             "partial files itself, so remove it and run the same command again")
    return part


def open_partial(part: Path, append: bool):
    """Open a partial download for writing without following a link planted after the check."""
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | (os.O_APPEND if append else os.O_TRUNC)
    try:
        return os.fdopen(os.open(part, flags, 0o644), "ab" if append else "wb")
    except OSError as exc:
        raise OmniBenchError(f"{part}: cannot write the partial download ({exc.strerror}); if it is a link, "
                             "remove it and run the same command again") from None


def _reject_oversize(part: Path, url: str, size: int) -> NoReturn:
    part.unlink(missing_ok=True)
    raise OmniBenchError(f"{part.name.removesuffix('.part')}: {url} sends more than the registered {size} B; "
                         "cut off and rejected (the source changed, or the mirror serves a different file)")


def _inside(target: Path, name: str) -> Path:
    """The extraction path of archive member ``name``, refusing anything that would land outside."""
    if name.startswith(("/", "\\")) or PurePosixPath(name).is_absolute() or ":" in PurePosixPath(name).parts[0]:
        raise OmniBenchError(f"archive member {name!r} has an absolute path; refusing to extract")
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        raise OmniBenchError(f"archive member {name!r} contains '..'; refusing to extract")
    path = (target / name).resolve()
    if target.resolve() not in (path, *path.parents):
        raise OmniBenchError(f"archive member {name!r} would land outside {target}; refusing to extract")
    return path


def safe_extract(archive: Path, target: Path) -> None:
    """Extract a zip or tar archive into ``target``; absolute paths, '..' and links are refused, and
    nothing is written unless every member is safe."""
    target.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                _inside(target, info.filename)
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise OmniBenchError(f"{archive}: member {info.filename!r} is a symbolic link; refusing")
            zf.extractall(target)
        return
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                _inside(target, member.name)
                if member.issym() or member.islnk() or member.isdev():
                    raise OmniBenchError(f"{archive}: member {member.name!r} is a link or device; refusing")
            tf.extractall(target, filter="data")
        return
    raise OmniBenchError(f"{archive}: not a zip or tar archive")


def build_mirror(datasets: list[Dataset], root: Path, out: Path) -> tuple[int, list[str]]:
    """Copy every verified file of ``datasets`` from ``root`` into ``out`` laid out as OWNER/REPO/COMMIT/PATH,
    for ``OMNI_BENCH_MIRROR``. Returns the number of files copied and the paths that were missing or corrupted
    (not copied)."""
    copied, bad = 0, []
    for dataset in datasets:
        for entry in dataset.files:
            status = file_status(root, entry)
            if status != "ok":
                bad.append(f"{status}: {entry.path}")
                continue
            target = out / entry.source
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_file() and target.stat().st_size == entry.size and sha256_file(target) == entry.sha256:
                continue
            shutil.copyfile(root / entry.path, target)
            copied += 1
    return copied, bad


def ensure_task_data(tasks: list, root: Path, origin: str, fetch: bool, settings: FetchSettings,
                     log=print) -> None:
    """Before a run: every registered file the tasks list must be intact under ``root``. If one is not, fetch
    its dataset (``fetch``: ``run --fetch`` or ``fetch: auto`` in the user config), else stop with the exact
    fetch command and the download size. Files the registry does not know (a user's own task data) are left
    to the usual checks."""
    from . import user_config

    registered = {entry.path: (dataset, entry) for dataset in registry().values() for entry in dataset.files}
    needed: dict[str, list[str]] = {}  # dataset -> tasks that lack one of its files
    for spec in tasks:
        for listed in spec.files:
            dataset, entry = registered.get(listed.path, (None, None))
            if dataset and file_status(root, entry) != "ok":
                users = needed.setdefault(dataset.name, [])
                if spec.name not in users:
                    users.append(spec.name)
    if not needed:
        return
    total = sum(missing_bytes(root, get(name)) for name in needed)
    if not fetch:
        command = " ".join(["omni-bench data fetch", *needed] + (["--data-dir", str(root)] * (origin == "--data-dir")))
        tasks_named = sorted({task for users in needed.values() for task in users})
        raise OmniBenchError(
            f"task{'s' * (len(tasks_named) > 1)} {', '.join(tasks_named)}: reference data missing or damaged under "
            f"{root} ({origin}); "
            f"{', '.join(needed)}: {total / 1e6:.1f} MB to download. Run: {command}   (or pass --fetch, or set "
            f"'fetch: auto' in {user_config.config_path()})")
    log(f"fetching {', '.join(needed)} ({total / 1e6:.1f} MB) into {root}")
    for name in needed:
        report = fetch_dataset(get(name), root, settings, log)
        if report.failed:
            first = next(iter(report.failed.values()))
            raise OmniBenchError(f"could not fetch {len(report.failed)} file(s) of {name}; first: {first}")
