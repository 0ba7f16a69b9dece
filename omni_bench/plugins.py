"""Lazy registries of protocols and dataset loaders: a name is a module, imported only when used.

A built-in protocol ``eos`` is the module ``omni_bench.protocols.eos``; adding one is adding a module.
Third-party packages add their own through the entry-point groups ``omni_bench.protocols`` and
``omni_bench.loaders`` (the entry point names a module).
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from importlib.metadata import entry_points
from types import ModuleType

from .errors import unknown

_PACKAGES = {"protocol": "omni_bench.protocols", "loader": "omni_bench.loaders"}
_GROUPS = {"protocol": "omni_bench.protocols", "loader": "omni_bench.loaders"}


@cache
def _modules(kind: str) -> dict[str, str]:
    package = importlib.import_module(_PACKAGES[kind])
    found = {
        info.name: f"{package.__name__}.{info.name}"
        for info in pkgutil.iter_modules(package.__path__)
        if not info.name.startswith("_")
    }
    for ep in entry_points(group=_GROUPS[kind]):
        found.setdefault(ep.name, ep.value)
    return found


def names(kind: str) -> list[str]:
    """Every registered protocol or loader name."""
    return sorted(_modules(kind))


def load(kind: str, name: str) -> ModuleType:
    """Import the module that implements protocol or loader ``name``."""
    modules = _modules(kind)
    if name not in modules:
        raise unknown(kind, name, modules)
    return importlib.import_module(modules[name])
