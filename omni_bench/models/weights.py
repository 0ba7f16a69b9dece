"""Weights a card downloads on first use (its ``download`` section), through the data's fetch layer: only with
consent (``--fetch``, or ``fetch: auto`` in the user config), from the release URL or a mirror
(``OMNI_BENCH_WEIGHTS_MIRROR``: a base URL or folder holding the file under the URL's path), resumable, capped
at the card's ``max_bytes``, verified, then cached in the user cache folder.

A card rarely knows its checkpoint's sha256, so the first download is **pinned**: its sha256 is written to the
pin file (``omni-bench-pins.json`` in the working folder, or ``OMNI_BENCH_PINS``), which a user commits; a
machine with that pin file refuses any other file under the same URL, downloaded or found on disk. The sha256
is also in every result's model fingerprint.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.parse
from pathlib import Path

from ..data import cached_sha256, sha256_file
from ..errors import OmniBenchError
from .card import ModelCard

MIRROR_ENV = "OMNI_BENCH_WEIGHTS_MIRROR"
PINS_ENV = "OMNI_BENCH_PINS"
PINS_FILE = "omni-bench-pins.json"




def pins_path() -> Path:
    return Path(os.environ.get(PINS_ENV) or PINS_FILE)


def read_pins() -> dict[str, dict]:
    path = pins_path()
    if not path.is_file():
        return {}
    try:
        pins = json.loads(path.read_text())["weights"]
        if not all(isinstance(v, dict) and isinstance(v.get("sha256"), str) for v in pins.values()):
            raise ValueError("each pin needs a sha256")
        return pins
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise OmniBenchError(f"{path}: field 'weights' must map each URL to {{sha256, bytes}} ({exc}); fix or "
                             f"delete the pin file ({PINS_ENV} names another)") from None


def _write_pin(url: str, digest: str, size: int) -> Path:
    path = pins_path()
    pins = {**read_pins(), url: {"sha256": digest, "bytes": size}}
    path.write_text(json.dumps({"weights": dict(sorted(pins.items()))}, indent=1) + "\n")
    return path


def ensure_weights(cards: list[ModelCard], fetch: bool, progress: bool = True, log=print) -> None:
    """Before a run: every card with a ``download`` has its checkpoint, matching the pins; downloaded with
    ``fetch``, else one line saying how to fetch it or point at a local file."""
    for card in {c.name: c for c in cards if c.download}.values():
        try:  # the card's variable and paths, then the download cache
            path = card.resolve_checkpoint()
        except OmniBenchError:
            path = None
        if path is None:
            if not fetch:
                raise OmniBenchError(_missing(card))
            path = download(card, progress, log)
        check_pin(card, path, log)


def _local(card: ModelCard) -> str:
    """How to point the card at a file the user has."""
    return (f"set {card.checkpoint_env}=/path/to/{card.download.filename}" if card.checkpoint_env else
            f"copy {card.download.filename} to {card.download_cache()}") + " for a local file"


def _missing(card: ModelCard) -> str:
    return (f"model {card.name}: weights not found; download them from {card.download.url} (at most "
            f"{card.download.max_bytes / 1e6:.0f} MB) with --fetch (or 'fetch: auto' in the user config), or "
            f"{_local(card)}")


def source_url(card: ModelCard) -> str:
    """Where the bytes come from: the release URL, or the same path under the weights mirror."""
    mirror = os.environ.get(MIRROR_ENV)
    if not mirror:
        return card.download.url
    return mirror.rstrip("/") + urllib.parse.urlparse(card.download.url).path


def download(card: ModelCard, progress: bool = True, log=print) -> Path:
    """Fetch the checkpoint into the cache, verified against the card's sha256 and the pin file."""
    from .. import fetch

    target = card.download_cache()
    part = fetch.partial_file(target.parent.parent, target)
    url = source_url(card)
    log(f"{card.name}: downloading {card.download.filename} from {url} into {target.parent}")
    settings = fetch.FetchSettings(progress=progress)
    try:
        if urllib.parse.urlparse(url).scheme in ("http", "https"):
            fetch.download(url, part, card.download.max_bytes, settings, lambda n: None, exact=False)
        else:
            source = Path(url.removeprefix("file://"))
            if not source.is_file() or source.stat().st_size > card.download.max_bytes:
                raise OmniBenchError(f"{source}: not in the weights mirror, or larger than the card's "
                                     f"{card.download.max_bytes} B")
            with open(source, "rb") as src, fetch.open_partial(part, append=False) as out:
                shutil.copyfileobj(src, out)  # in chunks: a checkpoint may be a GB
    except OmniBenchError as exc:
        raise OmniBenchError(f"model {card.name}: {exc}; offline, {_local(card)}, or set {MIRROR_ENV} to a "
                             "mirror") from None
    _verify(card, part, url)
    os.replace(part, target)
    return target


def _verify(card: ModelCard, path: Path, url: str) -> None:
    digest = sha256_file(path)
    expected = card.download.sha256 or (read_pins().get(card.download.url) or {}).get("sha256")
    if expected and digest != expected:
        path.unlink()
        raise OmniBenchError(f"model {card.name}: {url} gave a file with sha256 {digest}, not the pinned {expected} "
                             f"({card.download.sha256 and 'in the card' or pins_path()}); deleted it. If the release "
                             "really changed, remove its pin and fetch again")


def check_pin(card: ModelCard, path: Path, log=print) -> None:
    """The checkpoint in use must be the pinned one; the first one seen is pinned (one line says where)."""
    pinned = read_pins().get(card.download.url)
    digest = cached_sha256(path)  # the fingerprint reads it again
    if card.download.sha256 and digest != card.download.sha256:
        raise OmniBenchError(f"model {card.name}: {path} has sha256 {digest}, not the card's {card.download.sha256}")
    if pinned is None:
        where = _write_pin(card.download.url, digest, path.stat().st_size)
        log(f"{card.name}: pinned {card.download.filename} (sha256 {digest[:16]}...) in {where}; commit it so "
              "other machines refuse a different file")
    elif pinned["sha256"] != digest:
        raise OmniBenchError(f"model {card.name}: {path} has sha256 {digest}, but {pins_path()} pins "
                             f"{pinned['sha256']} for {card.download.url}: a different file; replace it with the "
                             "pinned one, or remove the pin if the change is intended")
