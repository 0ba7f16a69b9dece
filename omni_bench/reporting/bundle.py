"""Results bundles: results computed elsewhere (a GPU cluster) travel as one ``.tar.gz`` and join a
leaderboard, report or gate wherever a results folder is accepted.

A bundle holds ``<label>/<task>.json`` and its predictions CSV for each exported result, and ``MANIFEST.json``
(omni-bench version, and each file's size and sha256). Reading one is reading untrusted data: members must be
plain files at ``<label>/<file>`` with safe names, within the size caps, and exactly the files the manifest
lists with their hashes; they are unpacked into a private temporary folder and then read and checked like any
results folder (``load.read_result``).
"""

from __future__ import annotations

import atexit
import hashlib
import io
import json
import shutil
import tarfile
import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from ..errors import OmniBenchError
from ..results_format import MAX_FILE_BYTES
from ..schema import name_problem
from ..version import __version__

if TYPE_CHECKING:
    from .load import TaskResult

MANIFEST = "MANIFEST.json"
BUNDLE_FORMAT = 1
SUFFIXES = (".tar.gz", ".tgz")
MAX_MEMBERS = 20_000
MAX_BUNDLE_BYTES = 4 * 1024**3  # unpacked
_OPENED: dict[Path, Path] = {}


def is_bundle(path: Path) -> bool:
    return Path(path).name.endswith(SUFFIXES) and Path(path).is_file()


def export(results: list[TaskResult], out: Path) -> Path:
    """Write ``results`` (each already read and checked) and their predictions into the bundle ``out``."""
    if not out.name.endswith(SUFFIXES):
        raise OmniBenchError(f"export: the bundle name must end in .tar.gz or .tgz, not {out.name!r}")
    members: dict[str, bytes] = {}
    for result in sorted(results, key=lambda r: (r.label, r.task)):
        json_path = result.path
        csv_path = json_path.parent / result.record["predictions_file"]
        for path in (json_path, csv_path):
            members[f"{result.label}/{path.name}"] = path.read_bytes()
    manifest = {"format": BUNDLE_FORMAT, "omni_bench": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "files": {name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                          for name, data in members.items()}}
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".part")
    with tarfile.open(partial, "w:gz") as archive:
        for name, data in [(MANIFEST, json.dumps(manifest, indent=1).encode()), *members.items()]:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            archive.addfile(info, io.BytesIO(data))
    partial.replace(out)
    return out


def open_bundle(path: Path) -> Path:
    """The folder a bundle unpacks to (once per process), after checking every member against the manifest."""
    key = Path(path).resolve()
    if key not in _OPENED:
        folder = Path(tempfile.mkdtemp(prefix="omni-bench-bundle-"))
        atexit.register(shutil.rmtree, folder, True)
        try:
            _unpack(Path(path), folder)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise OmniBenchError(f"{path}: not a readable results bundle ({type(exc).__name__}: {exc}); write one "
                                 "with: omni-bench export") from None
        _OPENED[key] = folder
    return _OPENED[key]


def _unpack(path: Path, folder: Path) -> None:
    def refuse(why: str):
        raise OmniBenchError(f"{path}: {why}; a bundle written by 'omni-bench export' has neither")

    with tarfile.open(path, "r:gz") as archive:
        found: dict[str, bytes] = {}
        total = 0
        for count, member in enumerate(archive, start=1):
            if count > MAX_MEMBERS:
                refuse(f"more than {MAX_MEMBERS} members")
            if not member.isfile():
                refuse(f"member {member.name!r} is not a plain file (a link, device or folder)")
            if member.size > MAX_FILE_BYTES:
                refuse(f"member {member.name!r} is larger than {MAX_FILE_BYTES // 1024**2} MB")
            total += member.size
            if total > MAX_BUNDLE_BYTES:
                refuse(f"more than {MAX_BUNDLE_BYTES // 1024**3} GB unpacked")
            name = member.name
            if name != MANIFEST and (problem := _member_problem(name)):
                refuse(f"member {name!r} {problem}")
            if name in found:
                refuse(f"member {name!r} twice")
            found[name] = archive.extractfile(member).read()
    if MANIFEST not in found:
        refuse(f"no {MANIFEST}")
    try:
        manifest = json.loads(found.pop(MANIFEST))
        listed = {name: (int(entry["bytes"]), str(entry["sha256"])) for name, entry in manifest["files"].items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        refuse(f"a {MANIFEST} that does not list each file's bytes and sha256")
    if manifest.get("format") != BUNDLE_FORMAT:
        refuse(f"bundle format {manifest.get('format')!r}, not {BUNDLE_FORMAT}")
    if set(listed) != set(found):
        extra, missing = sorted(set(found) - set(listed)), sorted(set(listed) - set(found))
        refuse(f"files the manifest does not list ({', '.join(extra) or 'none'}) or lists but lacks "
               f"({', '.join(missing) or 'none'})")
    for name, data in found.items():
        if (len(data), hashlib.sha256(data).hexdigest()) != listed[name]:
            refuse(f"member {name!r} does not match its sha256 in the manifest (changed after export)")
        target = folder / name
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(data)


def _member_problem(name: str) -> str | None:
    parts = PurePosixPath(name).parts
    if len(parts) != 2 or name.startswith("/") or "/".join(parts) != name:
        return "is not at <label>/<file>"
    for part in parts:
        if part in (".", ".."):
            return "leaves its folder"
        if problem := name_problem(part):
            return f"has a name that {problem}"
    if not parts[1].endswith((".json", ".csv")):
        return "is neither a results JSON nor a predictions CSV"
    return None


def shown(text: str) -> str:
    """An error message about a file unpacked from a bundle, naming the bundle instead of the temporary folder."""
    for bundle, folder in _OPENED.items():
        text = text.replace(str(folder), f"{bundle}!")
    return text
