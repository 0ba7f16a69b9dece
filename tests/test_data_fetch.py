"""Fetching datasets from their upstream sources, against a real HTTP server on 127.0.0.1 that serves an
upstream-shaped tree (OWNER/REPO/COMMIT/PATH) mapped onto the shared data by UPSTREAM.tsv: the whole
registry, first use from ``run``, resume, size cap, truncation, corruption, 404, mirrors, safe extraction."""

from __future__ import annotations

import csv
import dataclasses
import io
import tarfile
import threading
import urllib.parse
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from helpers import run_task

from omni_bench import datasets
from omni_bench.cli import main
from omni_bench.errors import OmniBenchError
from omni_bench.fetch import FetchSettings, fetch_file, safe_extract

QUIET = FetchSettings(backoff=0.0, retries=3, progress=False)


class UpstreamHandler(BaseHTTPRequestHandler):
    """Serves ``files`` (URL path -> local file) with HTTP Range; can misbehave on chosen paths."""

    files: dict[str, Path] = {}
    truncate_first: set[str] = set()  # first transfer stops halfway
    truncate_always: set[str] = set()
    corrupt: set[str] = set()  # one byte flipped
    oversize: set[str] = set()  # 100 bytes too many, announced in Content-Length
    oversize_unannounced: set[str] = set()  # 100 bytes too many, no Content-Length (close-delimited)
    requests: list[tuple[str, str]] = []
    disable_nagle_algorithm = True  # headers and body leave at once, as from a real server

    def log_message(self, *args):
        pass

    def do_GET(self):
        rel = urllib.parse.unquote(self.path.lstrip("/"))
        self.requests.append((rel, self.headers.get("Range") or ""))
        if rel not in self.files:
            self.send_error(404)
            return
        body = self.files[rel].read_bytes()
        if rel in self.corrupt:
            body = body[:-1] + bytes([body[-1] ^ 0xFF])
        if rel in self.oversize | self.oversize_unannounced:
            body += b"x" * 100
        start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        payload = body[start:]
        if rel in self.oversize_unannounced:
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if rel in self.truncate_always or rel in self.truncate_first:
            self.truncate_first.discard(rel)
            payload = payload[: len(payload) // 2]
            self.close_connection = True
        self.wfile.write(payload)


class LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # room for every concurrent download's connection, as on a real server


@pytest.fixture(scope="module")
def upstream(data_root):
    """The base URL of a loopback server holding every identical file of UPSTREAM.tsv at its upstream path."""
    with open(data_root / "UPSTREAM.tsv", newline="") as fh:
        UpstreamHandler.files = {f"{r['repo']}/{r['commit']}/{r['upstream_path']}": data_root / r["local_path"]
                                 for r in csv.DictReader(fh, delimiter="\t") if r["status"] == "identical"}
    server = LoopbackServer(("127.0.0.1", 0), UpstreamHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def misbehaving(upstream):
    """The server with every misbehaviour reset afterwards."""
    UpstreamHandler.requests = []
    yield upstream
    for name in ("truncate_first", "truncate_always", "corrupt", "oversize", "oversize_unannounced"):
        setattr(UpstreamHandler, name, set())
    UpstreamHandler.requests = []


@pytest.fixture(scope="module")
def fetched_root(upstream, tmp_path_factory):
    """Test 1's product: every dataset fetched from the loopback upstream into an empty data root."""
    root = tmp_path_factory.mktemp("fetched") / "data"
    code = main(["data", "fetch", "--all", "--data-dir", str(root), "--mirror", upstream, "--no-progress"])
    assert code == 0
    return root


def test_fetch_all_from_upstream_then_verify(fetched_root, capsys):
    assert main(["data", "verify", "--data-dir", str(fetched_root)]) == 0
    out = capsys.readouterr().out
    assert out.count("verified") == len(datasets.registry()) and "missing" not in out
    assert not list(fetched_root.rglob("*.part"))
    assert (fetched_root / "ODAC23_subsets" / "pristine").is_dir()  # archives extracted after the fetch
    assert main(["data", "fetch", "MOR41", "--data-dir", str(fetched_root), "--no-progress"]) == 0  # no network
    present = len(datasets.get("MOR41").files)
    assert f"0 fetched (0.00 MB in 0.0 s), {present} already present" in capsys.readouterr().out


@pytest.mark.slow
def test_suite_from_fetched_data_predicts_exactly_as_from_the_shared_data(fetched_root, data_root, tmp_path):
    """Test 2: the organometallics suite with 7net-0 (first items) from both roots, prediction for prediction."""
    for task, limit in (("mor41", 3), ("rost61", 3)):
        frames = []
        for name, root in (("fetched", fetched_root), ("shared", data_root)):
            outcome, = run_task(task, "7net-0", tmp_path / f"{task}-{name}", root, limit=limit)
            assert outcome.n_scored == limit
            frames.append(pd.read_csv(outcome.results_file.with_name(f"{task}.predictions.csv")))
        assert frames[0]["predicted"].notna().any()
        pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=True)


def _one(name: str) -> datasets.RegisteredFile:
    return next(f for d in datasets.registry().values() for f in d.files if f.path == name)


POSCAR = "X23_DMC/solid/07co2.POSCAR"


def test_truncated_transfer_resumes_with_a_range_request(tmp_path, misbehaving):
    entry = _one(POSCAR)
    UpstreamHandler.truncate_first = {entry.source}
    fetch_file(entry, tmp_path, dataclasses.replace(QUIET, source=misbehaving))
    assert datasets.file_status(tmp_path, entry) == "ok"
    ranges = [r for path, r in UpstreamHandler.requests if path == entry.source]
    assert ranges[0] == "" and ranges[1] == f"bytes={entry.size // 2}-"  # resumed mid-file


def test_transfer_that_always_breaks_off_retries_with_doubling_pauses_then_says_so(tmp_path, misbehaving,
                                                                                 monkeypatch):
    from omni_bench import fetch

    pauses = []
    monkeypatch.setattr(fetch.time, "sleep", pauses.append)
    entry = _one(POSCAR)
    UpstreamHandler.truncate_always = {entry.source}
    with pytest.raises(OmniBenchError) as error:
        fetch_file(entry, tmp_path, FetchSettings(source=misbehaving, backoff=0.5, retries=3, progress=False))
    assert pauses == [0.5, 1.0, 2.0]
    message = str(error.value)
    assert "\n" not in message and POSCAR.split("/")[-1] in message and "incomplete after 4 attempts" in message
    assert entry.url(misbehaving) in message and "resume" in message
    assert not (tmp_path / POSCAR).exists()  # only the .part stays, for the next run to resume


@pytest.mark.parametrize("misbehaviour", ["oversize", "oversize_unannounced"])
def test_server_sending_more_than_the_registered_size_is_cut_off_and_rejected(tmp_path, misbehaving, misbehaviour):
    entry = _one(POSCAR)
    setattr(UpstreamHandler, misbehaviour, {entry.source})
    with pytest.raises(OmniBenchError, match=f"more than the registered {entry.size} B; cut off and rejected"):
        fetch_file(entry, tmp_path, dataclasses.replace(QUIET, source=misbehaving))
    assert not list(tmp_path.rglob("07co2*"))


def test_wrong_checksum_names_file_url_and_both_hashes(tmp_path, misbehaving, capsys):
    entry = _one(POSCAR)
    UpstreamHandler.corrupt = {entry.source}
    code = main(["data", "fetch", "X23_DMC", "--data-dir", str(tmp_path), "--mirror", misbehaving, "--no-progress"])
    out = capsys.readouterr().out
    assert code == 1
    failed = [line for line in out.splitlines() if "failed:" in line]
    assert len(failed) == 1 and POSCAR in failed[0] and entry.url(misbehaving) in failed[0]
    assert f"expected {entry.sha256}" in failed[0] and "got " in failed[0]
    assert "45 fetched" in out and "1 failed" in out
    assert not list(tmp_path.rglob("solid/07co2*"))
    assert main(["data", "verify", "X23_DMC", "--data-dir", str(tmp_path)]) == 1
    assert f"missing: {POSCAR}" in capsys.readouterr().out


def test_http_404_is_one_clear_line_and_leaves_nothing(tmp_path, misbehaving):
    entry = _one(POSCAR)
    moved = datasets.RegisteredFile(entry.path, entry.sha256, entry.size, entry.repo, "0" * 40, entry.upstream_path)
    with pytest.raises(OmniBenchError) as error:
        fetch_file(moved, tmp_path, dataclasses.replace(QUIET, source=misbehaving))
    assert str(error.value) == f"07co2.POSCAR: HTTP 404 Not Found from {moved.url(misbehaving)}"
    assert not list(tmp_path.rglob("07co2*"))


@pytest.mark.parametrize("from_folder", [False, True], ids=["url", "mirror-folder"])
def test_a_partial_file_that_is_a_link_is_never_written_through(tmp_path, misbehaving, data_root, from_folder):
    entry = _one(POSCAR)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    root = tmp_path / "data"
    (root / POSCAR).parent.mkdir(parents=True)
    (root / (POSCAR + ".part")).symlink_to(victim)
    source = misbehaving
    if from_folder:
        assert main(["data", "mirror", "X23_DMC", "--data-dir", str(data_root), "--out", str(tmp_path / "m")]) == 0
        source = str(tmp_path / "m")
    with pytest.raises(OmniBenchError, match="is a link or not a regular file; omni-bench writes partial files"):
        fetch_file(entry, root, dataclasses.replace(QUIET, source=source))
    assert victim.read_text() == "precious"


def test_a_data_folder_linked_outside_the_data_root_is_refused(tmp_path, misbehaving):
    entry = _one(POSCAR)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = tmp_path / "data"
    root.mkdir()
    (root / POSCAR.split("/")[0]).symlink_to(elsewhere)
    with pytest.raises(OmniBenchError, match="outside the data root"):
        fetch_file(entry, root, dataclasses.replace(QUIET, source=misbehaving))
    assert not list(elsewhere.rglob("*"))


def test_first_use_names_the_fetch_command_then_run_fetch_and_fetch_auto_get_the_data(
        tmp_path, upstream, monkeypatch, capsys):
    monkeypatch.setenv("OMNI_BENCH_MIRROR", upstream)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    root = tmp_path / "data"
    command = ["run", "--model", "omni_bench.models.factories:tabulated", "--model-arg", "key=ref_energy:PBE+D3",
               "--task", "x23", "--data-dir", str(root), "--store", str(tmp_path / "s.db"), "--no-progress"]
    assert main([*command, "--out", str(tmp_path / "none")]) == 2
    error = capsys.readouterr().err.strip()
    size = datasets.get("X23_DMC").size / 1e6
    assert "\n" not in error and f"X23_DMC: {size:.1f} MB to download" in error
    assert f"omni-bench data fetch X23_DMC --data-dir {root}" in error and "--fetch" in error
    assert not (tmp_path / "none").exists()
    assert main([*command, "--out", str(tmp_path / "a"), "--fetch"]) == 0
    assert datasets.status(root, datasets.get("X23_DMC"))["ok"] == [f.path for f in datasets.get("X23_DMC").files]

    config = tmp_path / "config" / "omni-bench" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("fetch: sometimes\n")
    assert main([*command, "--out", str(tmp_path / "b")]) == 2
    assert f"{config}: field 'fetch' is 'sometimes'; allowed: never, auto" in capsys.readouterr().err
    config.write_text("fetch: auto\n")
    (root / POSCAR).write_bytes(b"damaged")
    assert main([*command, "--out", str(tmp_path / "b")]) == 0
    assert datasets.file_status(root, _one(POSCAR)) == "ok"


def test_mirror_built_from_a_verified_root_serves_a_fetch(tmp_path, data_root, capsys):
    mirror = tmp_path / "mirror"
    assert main(["data", "mirror", "DMC_ICE13", "X23_DMC", "--data-dir", str(data_root), "--out", str(mirror)]) == 0
    out = capsys.readouterr().out
    assert "61 files copied" in out and "state no licence" in out
    entry = _one(POSCAR)
    assert (mirror / entry.repo / entry.commit / entry.upstream_path).is_file()
    root = tmp_path / "root"
    capsys.readouterr()
    assert main(["data", "fetch", "DMC_ICE13", "--data-dir", str(root), "--mirror", str(mirror), "--no-progress"]) == 0
    assert f"from the mirror {mirror} (upstream: " in capsys.readouterr().out  # where the bytes came from
    assert main(["data", "verify", "DMC_ICE13", "--data-dir", str(root)]) == 0
    assert main(["data", "mirror", "MOR41", "--data-dir", str(root), "--out", str(mirror)]) == 1  # not there


def test_data_list_shows_licence_source_citation_and_state(tmp_path, data_root, capsys):
    assert main(["data", "list", "--data-dir", str(data_root)]) == 0
    out = capsys.readouterr().out
    assert "missing" not in out and "corrupted" not in out
    assert "https://github.com/water-ice-group/MolCrys-DMC/tree/147a60c6911568d037c2ec8baf294dbfc589c461" in out
    assert "licence: not stated" in out and "cite: Della Pia, Zen, Alfe, Michaelides, Phys. Rev. Lett." in out
    main(["data", "list", "--data-dir", str(tmp_path)])
    assert "46 missing" in capsys.readouterr().out
    assert main(["data", "fetch", "--data-dir", str(tmp_path)]) == 2  # neither names nor --all


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


def _upstream_rows(data_root: Path) -> dict[str, dict]:
    with open(data_root / "UPSTREAM.tsv", newline="") as fh:
        return {row["local_path"]: row for row in csv.DictReader(fh, delimiter="\t")}


def test_registry_matches_the_shared_data_manifest(data_root):
    """The committed index lists every file of the data's own SHA256SUMS that has an upstream copy, with its
    hash; the derived ones (UPSTREAM.tsv) are left out, since nothing could fetch them."""
    upstream = _upstream_rows(data_root)
    listed = {}
    for line in (data_root / "SHA256SUMS").read_text().splitlines():
        digest, path = line.split(maxsplit=1)
        listed[path.removeprefix("./")] = digest
    registered = {f.path: f.sha256 for d in datasets.registry().values() for f in d.files}
    assert registered == {p: h for p, h in listed.items() if "/" in p and upstream[p]["status"] == "identical"}


def test_every_registered_file_has_its_upstream_source(data_root):
    upstream = _upstream_rows(data_root)
    for dataset in datasets.registry().values():
        for entry in dataset.files:
            row = upstream[entry.path]
            assert (entry.repo, entry.commit, entry.upstream_path, entry.sha256) == (
                row["repo"], row["commit"], row["upstream_path"], row["sha256"]), entry.path
    assert datasets.get("X23_DMC").files[0].url("https://raw.githubusercontent.com") == (
        "https://raw.githubusercontent.com/water-ice-group/MolCrys-DMC/147a60c6911568d037c2ec8baf294dbfc589c461/"
        "data_dmc/molecule/01CYHEXO/POSCAR")
