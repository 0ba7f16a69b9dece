"""Dataset fetching against a real HTTP server on 127.0.0.1: resume, corruption, and safe extraction."""

from __future__ import annotations

import io
import shutil
import tarfile
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from omni_bench import datasets
from omni_bench.cli import main
from omni_bench.errors import OmniBenchError
from omni_bench.fetch import fetch_dataset, safe_extract


class MirrorHandler(SimpleHTTPRequestHandler):
    """Serves a folder with HTTP Range support; can cut transfers short or corrupt a file."""

    truncate_first: set[str] = set()  # paths whose first transfer stops halfway
    corrupt: set[str] = set()  # paths served with one byte flipped
    requests: list[tuple[str, str]] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        rel = self.path.lstrip("/")
        path = Path(self.directory) / rel
        if not path.is_file():
            self.send_error(404)
            return
        body = path.read_bytes()
        if rel in self.corrupt:
            body = body[:-1] + bytes([body[-1] ^ 0xFF])
        start = 0
        range_header = self.headers.get("Range")
        self.requests.append((rel, range_header or ""))
        if range_header:
            start = int(range_header.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if rel in self.truncate_first:
            self.truncate_first.discard(rel)
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)


@pytest.fixture
def mirror(tmp_path, data_root):
    """A copy of the X23_DMC dataset served over HTTP on 127.0.0.1."""
    served = tmp_path / "mirror"
    shutil.copytree(data_root / "X23_DMC", served / "X23_DMC")
    MirrorHandler.truncate_first, MirrorHandler.corrupt, MirrorHandler.requests = set(), set(), []

    def handler(*args, **kwargs):
        return MirrorHandler(*args, directory=str(served), **kwargs)

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_resumes_truncated_transfers_and_verifies_every_file(tmp_path, mirror):
    csv = "X23_DMC/lattice_energies_dmc.csv"
    MirrorHandler.truncate_first = {csv, "X23_DMC/solid/05anthracene.POSCAR"}
    root = tmp_path / "root"
    report = fetch_dataset(datasets.get("X23_DMC"), root, mirror, log=lambda *_: None)
    assert not report.failed and len(report.fetched) == 47
    assert datasets.status(root, datasets.get("X23_DMC"))["ok"] == [f.path for f in datasets.get("X23_DMC").files]
    ranges = [r for path, r in MirrorHandler.requests if path == csv]
    assert ranges[0] == "" and ranges[1].startswith("bytes=") and ranges[1] != "bytes=0-"  # resumed mid-file
    assert not list(root.rglob("*.part"))
    again = fetch_dataset(datasets.get("X23_DMC"), root, mirror, log=lambda *_: None)
    assert len(again.already_present) == 47 and not again.fetched


def test_corrupted_file_is_deleted_and_reported_while_the_rest_arrive(tmp_path, mirror, capsys):
    bad = "X23_DMC/solid/07co2.POSCAR"
    MirrorHandler.corrupt = {bad}
    root = tmp_path / "root"
    code = main(["data", "fetch", "X23_DMC", "--data-dir", str(root), "--mirror", mirror])
    out = capsys.readouterr().out
    assert code == 1
    assert f"{bad}: sha256 mismatch" in out and "deleted the partial file" in out
    assert "46 fetched" in out and "1 failed" in out
    assert not (root / bad).exists() and not (root / (bad + ".part")).exists()
    assert main(["data", "verify", "X23_DMC", "--data-dir", str(root)]) == 1
    assert f"missing: {bad}" in capsys.readouterr().out


def test_fetch_from_a_local_folder_mirror(tmp_path, data_root):
    root = tmp_path / "root"
    assert main(["data", "fetch", "DMC_ICE13", "--data-dir", str(root), "--mirror", str(data_root)]) == 0
    assert main(["data", "verify", "DMC_ICE13", "--data-dir", str(root)]) == 0


def test_data_list_reports_present_and_missing(tmp_path, data_root, capsys):
    assert main(["data", "list", "--data-dir", str(data_root)]) == 0
    out = capsys.readouterr().out
    assert "X23_DMC" in out and "missing" not in out and "corrupted" not in out
    main(["data", "list", "--data-dir", str(tmp_path)])
    assert "47 missing" in capsys.readouterr().out


def _zip_with(name: str, symlink: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd" if symlink else "data")
    return buffer.getvalue()


@pytest.mark.parametrize("name, symlink, problem", [
    ("/abs/evil.txt", False, "absolute path"),
    ("../evil.txt", False, "'..'"),
    ("ok/../../evil.txt", False, "'..'"),
    ("link", True, "symbolic link"),
])
def test_unsafe_zip_members_are_refused_and_nothing_written(tmp_path, name, symlink, problem):
    archive = tmp_path / "bad.zip"
    archive.write_bytes(_zip_with(name, symlink))
    target = tmp_path / "out"
    with pytest.raises(OmniBenchError, match=problem):
        safe_extract(archive, target)
    assert not any(target.rglob("*")) and not (tmp_path / "evil.txt").exists()


def test_unsafe_tar_link_is_refused_and_safe_archives_extract(tmp_path):
    archive = tmp_path / "bad.tar"
    with tarfile.open(archive, "w") as tf:
        link = tarfile.TarInfo("escape")
        link.type, link.linkname = tarfile.SYMTYPE, "../../outside"
        tf.addfile(link)
    with pytest.raises(OmniBenchError, match="link"):
        safe_extract(archive, tmp_path / "out")
    good = tmp_path / "good.zip"
    good.write_bytes(_zip_with("folder/file.cif"))
    safe_extract(good, tmp_path / "ok")
    assert (tmp_path / "ok" / "folder" / "file.cif").read_text() == "data"


def test_registry_matches_the_shared_data_manifest(data_root):
    """The committed index agrees with the data's own SHA256SUMS for every file."""
    listed = {}
    for line in (data_root / "SHA256SUMS").read_text().splitlines():
        digest, path = line.split(maxsplit=1)
        listed[path.removeprefix("./")] = digest
    registered = {f.path: f.sha256 for d in datasets.registry().values() for f in d.files}
    assert registered == {p: h for p, h in listed.items() if "/" in p}
