"""Downloading datasets from a mirror: resumable, verified, atomic; and safe archive extraction.

A file is written to ``<name>.part``; an interrupted transfer resumes from the bytes already there (HTTP
Range); only a file whose size and sha256 match the registry is renamed into place, so a reader never sees
a half-written or corrupted file. A mismatch deletes the partial file and says so.
"""

from __future__ import annotations

import http.client
import os
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .data import sha256_file
from .datasets import Dataset, RegisteredFile, file_status
from .errors import OmniBenchError

MIRROR_ENV = "OMNI_BENCH_MIRROR"
_CHUNK = 1 << 16


@dataclass
class FetchReport:
    fetched: list[str] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    extracted: list[str] = field(default_factory=list)


def resolve_mirror(cli_value: str | None) -> str:
    mirror = cli_value or os.environ.get(MIRROR_ENV)
    if not mirror:
        raise OmniBenchError(f"no mirror configured: pass --mirror URL_OR_FOLDER or set {MIRROR_ENV}")
    return mirror


def _is_url(mirror: str) -> bool:
    return urllib.parse.urlparse(mirror).scheme in ("http", "https")


def fetch_dataset(dataset: Dataset, root: Path, mirror: str, retries: int = 5, timeout: float = 60.0,
                  log=print) -> FetchReport:
    """Bring every file of ``dataset`` into ``root``, verified; files already intact are left alone."""
    report = FetchReport()
    for entry in dataset.files:
        if file_status(root, entry) == "ok":
            report.already_present.append(entry.path)
            continue
        try:
            _fetch_file(entry, root, mirror, retries, timeout)
            report.fetched.append(entry.path)
        except OmniBenchError as exc:
            report.failed[entry.path] = str(exc)
            log(f"  failed: {exc}")
    for archive in dataset.extract:
        if archive in report.failed:
            continue
        target = root / str(PurePosixPath(archive).with_suffix(""))
        safe_extract(root / archive, target)
        report.extracted.append(str(target))
    return report


def _fetch_file(entry: RegisteredFile, root: Path, mirror: str, retries: int, timeout: float) -> None:
    final = root / entry.path
    final.parent.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + ".part")
    if _is_url(mirror):
        url = mirror.rstrip("/") + "/" + urllib.parse.quote(entry.path)
        _download(url, part, entry.size, retries, timeout)
    else:
        source = Path(mirror.removeprefix("file://")) / entry.path
        if not source.is_file():
            raise OmniBenchError(f"{entry.path}: not in the mirror folder {mirror}")
        shutil.copyfile(source, part)
    size = part.stat().st_size
    digest = sha256_file(part) if size == entry.size else None
    if digest != entry.sha256:
        part.unlink()
        what = f"size {size} B, expected {entry.size} B" if digest is None else "sha256 mismatch"
        raise OmniBenchError(f"{entry.path}: {what} from {mirror}; deleted the partial file {part.name}")
    os.replace(part, final)


def _download(url: str, part: Path, size: int, retries: int, timeout: float) -> None:
    """Download ``url`` into ``part``, resuming from what is there, up to ``retries`` interruptions."""
    last_error = "no attempt made"
    for _ in range(retries + 1):
        have = part.stat().st_size if part.exists() else 0
        if have >= size:
            if have > size:
                part.unlink()
                continue
            return
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                resumed = have > 0 and response.status == 206
                with open(part, "ab" if resumed else "wb") as out:
                    while chunk := response.read(_CHUNK):
                        out.write(chunk)
        except urllib.error.HTTPError as exc:
            if exc.code == 416:  # range beyond the end: what we have is wrong, start over
                part.unlink(missing_ok=True)
                last_error = "HTTP 416"
                continue
            raise OmniBenchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
    if not part.exists() or part.stat().st_size != size:
        raise OmniBenchError(f"{url}: transfer incomplete after {retries} resumes ({last_error})")


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
