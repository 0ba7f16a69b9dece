"""Weights a card downloads on first use (7net-omni): one line offline, a download from a loopback release
under the real URL's path with --fetch, cached, pinned, and a different file refused against the pin. The
checkpoint served is built here: 7net-mf-0's, its two modalities renamed to two of 7net-omni's channels."""

from __future__ import annotations

import functools
import json
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest

from omni_bench import cli
from omni_bench.data import sha256_file
from omni_bench.models.registry import find_card

CARD = find_card("7net-omni")


@pytest.fixture
def weights_env(tmp_path, monkeypatch):
    """A private cache and pin file, so nothing here touches the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("OMNI_BENCH_PINS", str(tmp_path / "pins.json"))
    monkeypatch.delenv("OMNI_BENCH_7NET_OMNI", raising=False)
    monkeypatch.delenv("OMNI_BENCH_WEIGHTS_MIRROR", raising=False)
    return tmp_path


def run(tmp_path: Path, *extra: str) -> int:
    return cli.main(["run", "--model", "7net-omni@mpa", "--task", "s22", "--limit", "1", "--no-progress",
                     "--store", str(tmp_path / "store.sqlite"), "--out", str(tmp_path / "out"), *extra])


def test_offline_without_fetch_one_line_says_how_to_fetch_or_point_at_a_file(weights_env, capsys):
    assert run(weights_env) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error
    assert CARD.download.url in error and "--fetch" in error and "OMNI_BENCH_7NET_OMNI=" in error


def test_a_download_that_fails_says_what_it_tried_and_how_to_use_a_local_file(weights_env, capsys, monkeypatch):
    monkeypatch.setenv("OMNI_BENCH_WEIGHTS_MIRROR", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setattr("omni_bench.fetch.FetchSettings.retries", 0)
    assert run(weights_env, "--fetch") == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "http://127.0.0.1:9/MDIL-SNU/SevenNet/releases/download/v0.12.0.cp/checkpoint_sevennet_omni.pth" in error
    assert "OMNI_BENCH_7NET_OMNI=" in error and "OMNI_BENCH_WEIGHTS_MIRROR" in error


def omni_like_checkpoint(path: Path, channels=("matpes_r2scan", "mpa")) -> Path:
    """7net-mf-0's checkpoint with its modalities (R2SCAN, PBE) renamed to 7net-omni channels."""
    import glob
    import os

    import sevenn
    import torch

    (source,) = glob.glob(os.path.dirname(sevenn.__file__) + "/pretrained_potentials/SevenNet_MF_0/*.pth")
    checkpoint = torch.load(source, map_location="cpu", weights_only=False)
    config = checkpoint["config"]
    renamed = dict(zip(config["modal_list"], channels, strict=True))
    config["_modal_map"] = {renamed[k]: v for k, v in config["_modal_map"].items()}
    config["modal_list"] = [renamed[m] for m in config["modal_list"]]
    config["default_modal"] = renamed[config["default_modal"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


@pytest.fixture
def release(tmp_path):
    """A loopback server holding a built checkpoint under the release URL's path; yields (base URL, file,
    requested paths)."""
    root = tmp_path / "release"
    served = omni_like_checkpoint(root / urlparse(CARD.download.url).path.lstrip("/"))
    requests: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served, requests
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_fetch_downloads_once_pins_caches_runs_and_refuses_a_changed_file(weights_env, release, monkeypatch,
                                                                           capsys):
    base, served, requests = release
    monkeypatch.setenv("OMNI_BENCH_WEIGHTS_MIRROR", base)
    assert run(weights_env, "--fetch") == 0
    digest = sha256_file(served)
    cached = weights_env / "cache" / "omni-bench" / "weights" / "7net-omni" / "checkpoint_sevennet_omni.pth"
    assert cached.is_file() and sha256_file(cached) == digest and len(requests) == 1
    pins = json.loads((weights_env / "pins.json").read_text())["weights"]
    assert pins == {CARD.download.url: {"sha256": digest, "bytes": served.stat().st_size}}
    record = json.loads((weights_env / "out" / "7net-omni@mpa" / "s22.json").read_text())
    assert record["model"]["fingerprint"]["checkpoint_sha256"] == digest
    assert record["metrics"]["mae"]["n"] == 1

    assert run(weights_env) == 0 and len(requests) == 1  # cached: no second download, no --fetch needed
    capsys.readouterr()

    # another release under the same URL: with the pin, a fresh download is refused and deleted
    cached.unlink()
    omni_like_checkpoint(served, channels=("mpa", "matpes_r2scan"))
    assert run(weights_env, "--fetch") == 2
    assert f"not the pinned {digest}" in capsys.readouterr().err
    assert not cached.exists() and not cached.with_name(cached.name + ".part").exists()

    # the changed file given as a local file is refused too: a second machine with the pin file
    monkeypatch.setenv("OMNI_BENCH_7NET_OMNI", str(served))
    assert run(weights_env) == 2
    assert "pins" in capsys.readouterr().err
