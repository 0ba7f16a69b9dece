"""Reading YAML files strictly: unknown keys, duplicate keys and wrong types are errors naming file and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import OmniBenchError, did_you_mean

_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_SafeLoader):
    """``yaml.safe_load`` that refuses a key given twice in one mapping (YAML keeps the last one silently)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # '<<: *anchor' merges another mapping; its keys may be overridden here
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping (first at line {seen[key].start_mark.line + 1})",
                key_node.start_mark)
        seen[key] = key_node
    loader.flatten_mapping(node)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def read_text(path: Path, what: str) -> str:
    """A user's file as UTF-8 text, or one error naming it (missing, unreadable, or another encoding)."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise OmniBenchError(f"{path}: {what} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as "
                             "UTF-8") from None
    except OSError as exc:
        raise OmniBenchError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def load_yaml(path: Path, what: str) -> Any:
    """Parse a task file, model card, sweep file or cluster config: safe YAML (no Python objects), UTF-8,
    and no key given twice in a mapping."""
    text = read_text(path, what)
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 -- a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise OmniBenchError(f"{path}: not valid YAML ({what}{where}): {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise OmniBenchError(f"{path}: not valid YAML ({what}): {exc}") from None


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
            self.fail(key, f"must be {names}, got {value!r}{_number_as_text_hint(value, kind)}")
        return value

    def text(self, key: str, default: str | None = None) -> str:
        value = self.get(key, str, default)
        if value is not None and not value.strip():
            self.fail(key, "must not be empty")
        return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _number_as_text_hint(value: Any, kind: type | tuple[type, ...]) -> str:
    """PyYAML (YAML 1.1) reads 1e-4, with no dot in the mantissa, as text: where a number was expected, say how
    to write it."""
    if not isinstance(value, str) or float not in _as_tuple(kind):
        return ""
    mantissa, e, exponent = value.strip().lower().partition("e")
    try:
        float(value)
    except ValueError:
        return ""
    if not e or "." in mantissa:
        return ""
    return f"; YAML reads {value} as text, not a number: write it with a dot, e.g. {mantissa}.0e{exponent}"
