"""The package's layers, checked from the source: no import cycle inside omni_bench, no module reaching for
another's private names, loaders independent of protocols, a worker package that depends on no part of
omni_bench but its dependency-free ``devices``, and tests organised by feature."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from helpers import REPO

PACKAGE = REPO / "omni_bench"


def module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path = REPO, modules: set[str] | frozenset = frozenset()) -> set[str]:
    """Every module ``path`` imports, at any depth of its code (a function's import counts too), leaving out
    imports under ``if TYPE_CHECKING:``, which never run. ``from pkg import name`` imports ``pkg`` (its
    ``__init__``) unless every name is one of ``modules``: then only those submodules."""
    module, is_package = module_name(path, root), path.name == "__init__.py"
    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            test = node.test
            if getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == "TYPE_CHECKING":
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.update(alias.name for alias in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names = {f"{prefix}.{alias.name}" for alias in node.names}
            found.update(names if names <= set(modules) else {prefix, *names})

    Visitor().visit(ast.parse(path.read_text()))
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports."""
    root = package.parent
    modules = {module_name(p, root): p for p in package.rglob("*.py")}
    return {name: {d for d in imports_of(path, root, set(modules)) if d in modules and d != name}
            for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_inside_omni_bench():
    graph = import_graph(PACKAGE)
    assert len(graph) > 80
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle(tmp_path):
    """The check itself works: two modules importing each other (one of them inside a function) are a cycle."""
    package = tmp_path / "omni_bench"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("def f():\n    from .a import g\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import d\n")
    (package / "d.py").write_text("from .c import x\n")
    assert cycles(import_graph(package)) == [["omni_bench.a", "omni_bench.b"]]
    # the package's __init__ importing a module that reads a name of the package is a cycle too
    (package / "__init__.py").write_text("def f():\n    from . import e\n")
    (package / "e.py").write_text("from . import a, VERSION\n")
    assert sorted(cycles(import_graph(package))) == [["omni_bench", "omni_bench.e"], ["omni_bench.a", "omni_bench.b"]]


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for path in [*PACKAGE.rglob("*.py"), *(REPO / "omni_bench_worker").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                offenders += [f"{path.relative_to(REPO)}: {node.module}.{alias.name}" for alias in node.names
                              if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert offenders == []


def test_loaders_never_import_protocols_and_executors_only_schedule():
    graph = import_graph(PACKAGE)
    for module, imported in graph.items():
        if module.startswith("omni_bench.loaders"):
            assert not [m for m in imported if m.startswith("omni_bench.protocols")], module
        if module.startswith("omni_bench.executors"):  # the run core is imported, never the other way round
            assert not [m for m in imported if m.startswith("omni_bench.commands")], module
        if module.startswith(("omni_bench.run", "omni_bench.identity", "omni_bench.store")):
            assert not [m for m in imported if m.startswith(("omni_bench.executors", "omni_bench.commands"))], module


def test_the_worker_package_needs_only_the_dependency_free_devices_module_of_omni_bench():
    worker = REPO / "omni_bench_worker"
    for path in worker.rglob("*.py"):
        imported = imports_of(path)
        own = {m for m in imported if m.startswith("omni_bench.")}
        assert own <= {"omni_bench.models.batched", "omni_bench.models.batched.evaluator_for"}, path  # optional
    devices = {name.split(".")[0] for name in imports_of(PACKAGE / "devices.py")}
    assert devices <= set(sys.stdlib_module_names) | {"torch"}


def test_test_modules_import_no_other_test_module_and_are_named_by_feature():
    tests = REPO / "tests"
    modules = {p.stem for p in tests.glob("test_*.py")}
    for path in tests.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not imported & (modules | {"conftest"}), path.name
        numbered = [node.name for node in ast.walk(tree)  # test_16_... : a finding's number, not a feature
                    if isinstance(node, ast.FunctionDef) and re.match(r"test_\d+_", node.name)]
        assert numbered == [], path.name
        assert "issue" not in (ast.get_docstring(tree) or "").lower(), path.name
