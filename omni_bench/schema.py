"""Reading YAML mappings strictly: unknown keys and wrong types are errors naming file and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import OmniBenchError, did_you_mean


class Fields:
    """Reads one mapping of a YAML file, remembering where it is for error messages."""

    def __init__(self, path: Path, where: str, data: Any, allowed: dict[str, bool]):
        self.path, self.where = path, where
        if not isinstance(data, dict):
            self.fail("", f"must be a mapping, got {type(data).__name__}")
        for key in data:
            if key not in allowed:
                self.fail(key, f"unknown key{did_you_mean(str(key), allowed)}; allowed: {', '.join(allowed)}")
        for key, required in allowed.items():
            if required and key not in data:
                self.fail(key, "is required")
        self.data = data

    def fail(self, key: str, problem: str) -> None:
        dotted = ".".join(p for p in (self.where, str(key)) if p)
        raise OmniBenchError(f"{self.path}: field '{dotted}' {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        value = self.data.get(key, default)
        wrong_type = not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind))
        if key in self.data and wrong_type:
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            self.fail(key, f"must be {names}, got {value!r}")
        return value

    def text(self, key: str, default: str | None = None) -> str:
        value = self.get(key, str, default)
        if value is not None and not value.strip():
            self.fail(key, "must not be empty")
        return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)
