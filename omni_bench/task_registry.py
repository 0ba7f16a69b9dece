"""Finds task files and groups them into suites. Reading YAML only: no model code is imported."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from .errors import OmniBenchError, unknown
from .taskspec import TaskSpec, load_task

TASK_PATH_ENV = "OMNI_BENCH_TASKS"


def builtin_tasks_dir() -> Path:
    """The bundled task files: the repository's tasks/ folder, installed as omni_bench/builtin_tasks."""
    installed = Path(__file__).resolve().parent / "builtin_tasks"
    return installed if installed.is_dir() else Path(__file__).resolve().parent.parent / "tasks"


def task_dirs(extra: list[Path] | None = None) -> list[Path]:
    """Built-in tasks first, then ``OMNI_BENCH_TASKS`` folders, then ``extra``; later ones override."""
    dirs = [builtin_tasks_dir()]
    dirs += [Path(p) for p in os.environ.get(TASK_PATH_ENV, "").split(os.pathsep) if p]
    dirs += [Path(p) for p in extra or []]
    for d in dirs[1:]:
        if not d.is_dir():
            raise OmniBenchError(f"task folder {d} does not exist (from {TASK_PATH_ENV} or --tasks-dir)")
    return dirs


@cache
def _load_all(dirs: tuple[Path, ...]) -> dict[str, TaskSpec]:
    tasks: dict[str, TaskSpec] = {}
    for d in dirs:
        for path in sorted(d.glob("*.yaml")):
            spec = load_task(path)
            tasks[spec.name] = spec
    return tasks


def all_tasks(extra: list[Path] | None = None) -> dict[str, TaskSpec]:
    return _load_all(tuple(task_dirs(extra)))


def suites(extra: list[Path] | None = None) -> dict[str, list[str]]:
    """Suite name -> names of its tasks; ``all`` holds every task."""
    grouped: dict[str, list[str]] = {}
    for spec in all_tasks(extra).values():
        for suite in spec.suites:
            grouped.setdefault(suite, []).append(spec.name)
    grouped["all"] = sorted(all_tasks(extra))
    return {k: sorted(v) for k, v in sorted(grouped.items())}


def select(task_names: list[str], suite_names: list[str], extra: list[Path] | None = None) -> list[TaskSpec]:
    """The tasks named directly plus those of the named suites, each once, in a stable order."""
    tasks, groups = all_tasks(extra), suites(extra)
    chosen: list[str] = []
    for suite in suite_names:
        if suite not in groups:
            raise unknown("suite", suite, groups)
        chosen += groups[suite]
    for name in task_names:
        if name not in tasks:
            raise unknown("task", name, tasks)
        chosen.append(name)
    return [tasks[n] for n in dict.fromkeys(chosen)]
