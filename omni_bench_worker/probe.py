"""What an interpreter offers a model, found without importing any model package (and without numpy, so
that an environment lacking it gets a clear message instead of a traceback)."""

from __future__ import annotations

import importlib.util
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from . import PROTOCOL_VERSION


def probe(request: dict[str, Any]) -> dict[str, Any]:
    """Python version, versions of the named distributions (None: not installed) and the folders of the named
    packages (None: not found)."""
    versions = {}
    for name in request.get("distributions", []):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    folders = {}
    for name in request.get("packages", []):
        spec = importlib.util.find_spec(name)
        locations = list(spec.submodule_search_locations or []) if spec else []
        folders[name] = locations[0] if locations else None
    return {"protocol": PROTOCOL_VERSION, "python": platform.python_version(), "executable": sys.executable,
            "versions": versions, "package_dirs": folders}
