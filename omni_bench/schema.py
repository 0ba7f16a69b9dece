"""Reading YAML files strictly: unknown keys, duplicate keys and wrong types are errors naming file and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import OmniBenchError, did_you_mean

_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: values that aliases (``*name``) may add to a document beyond those written out: a few shared settings are
#: fine, an alias bomb (10^9 values from a few lines) is refused before it is built
MAX_ALIAS_EXPANSION = 10_000
#: names (models, channels) are one printable line of at most this many characters
MAX_NAME_LENGTH = 200


class RefusedYAML(yaml.YAMLError):
    """Valid YAML that omni-bench will not build: aliases that expand too far, or a value containing itself."""


class _StrictLoader(_SafeLoader):
    """``yaml.safe_load`` that refuses a key given twice in one mapping (YAML keeps the last one silently), and
    aliases that expand the document by more than ``MAX_ALIAS_EXPANSION`` values."""

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return self.construct_document(node)


def _check_expansion(root: yaml.Node) -> None:
    """Count the values the document would have with every alias written out, from its node graph (where an
    alias is a shared node), without building it; iterative, so deep nesting costs no recursion."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # the current node's ancestors: meeting one again means a value contains itself
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                    else node.value if isinstance(node, yaml.SequenceNode) else [])
        if children_done:
            open_nodes.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[id(node)] - len(sizes) > MAX_ALIAS_EXPANSION:
                raise RefusedYAML(f"its aliases (*name) expand it by more than {MAX_ALIAS_EXPANSION} values; "
                                  "write the values out instead")
        elif id(node) not in sizes:
            if id(node) in open_nodes:
                raise RefusedYAML(f"line {node.start_mark.line + 1}: a value contains itself through an alias; "
                                  "remove the alias")
            open_nodes.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # '<<: *anchor' merges another mapping; its keys may be overridden here
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, (list, dict)):
            raise yaml.constructor.ConstructorError(
                None, None, f"a mapping key must be a single value, not a {type(key).__name__}", key_node.start_mark)
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


def parse_yaml(text: str) -> Any:
    """Safe YAML (no Python objects), no key given twice in a mapping, no alias bomb; raises ``yaml.YAMLError``
    (``RefusedYAML`` for what is valid but refused)."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 -- a SafeLoader subclass
    except RecursionError:
        raise RefusedYAML("it is nested too deeply") from None


def load_yaml(path: Path, what: str) -> Any:
    """Parse a task file, model card, sweep file, cluster config or settings file (UTF-8) with ``parse_yaml``."""
    text = read_text(path, what)
    try:
        return parse_yaml(text)
    except RefusedYAML as exc:
        raise OmniBenchError(f"{path}: {what} refused: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise OmniBenchError(f"{path}: not valid YAML ({what}{where}): {_one_line(exc.problem or exc)}") from None
    except yaml.YAMLError as exc:  # e.g. a character YAML does not allow (yaml.reader.ReaderError)
        raise OmniBenchError(f"{path}: not valid YAML ({what}): {_one_line(exc)}") from None


def _one_line(problem: object) -> str:
    return " ".join(str(problem).split())


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a model or channel (it becomes labels, folder names, terminal and report
    text), or None: one printable line (no control characters, no lone surrogates), 1 to 200 characters."""
    if not name.strip():
        return "must not be empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"is {len(name)} characters long; names have at most {MAX_NAME_LENGTH}"
    if not name.isprintable():
        return f"{name!r} holds control or unprintable characters; use printable text"
    return None


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
        shown = str(key) if str(key).isprintable() else repr(key)  # a key with a newline stays on one line
        dotted = ".".join(p for p in (self.where, shown) if p)
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

    def name(self, key: str, default: str | None = None) -> str | None:
        """A text field that names something (see ``name_problem``)."""
        value = self.get(key, str, default)
        problem = None if value is None else name_problem(value)
        if problem:
            self.fail(key, problem)
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
