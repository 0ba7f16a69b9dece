"""Finds task files and groups them into suites. Reading YAML only: no model code is imported."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .errors import OmniBenchError, did_you_mean, unknown
from .taskspec import TaskSpec, builtin_tasks_dir, check_task_plugins, load_task

TASK_PATH_ENV = "OMNI_BENCH_TASKS"


def task_dirs(extra: list[Path] | None = None) -> list[Path]:
    """Built-in tasks first, then ``OMNI_BENCH_TASKS`` folders, then ``extra``; later ones override."""
    dirs = [builtin_tasks_dir()]
    dirs += [Path(p) for p in os.environ.get(TASK_PATH_ENV, "").split(os.pathsep) if p]
    dirs += [Path(p) for p in extra or []]
    for d in dirs[1:]:
        if not d.is_dir():
            raise OmniBenchError(f"task folder {d} does not exist (from {TASK_PATH_ENV} or --tasks-dir)")
    return dirs


@dataclass(frozen=True)
class Registry:
    """Every task file found: the valid ones by name, and the broken ones by file stem with their error."""

    tasks: dict[str, TaskSpec]
    broken: dict[str, str]


@cache
def _load_all(dirs: tuple[Path, ...]) -> Registry:
    """Read every task file (YAML and schema only; protocols and loaders are checked when a task is chosen).
    A broken file does not hide the others: it fails only when its task is asked for."""
    tasks: dict[str, TaskSpec] = {}
    broken: dict[str, str] = {}
    for d in dirs:
        for path in sorted(d.glob("*.yaml")):
            try:
                spec = load_task(path, check_plugins=False)
            except OmniBenchError as exc:
                broken[path.stem] = str(exc)
                tasks.pop(path.stem, None)  # a broken override must not fall back to the file it overrides
                continue
            broken.pop(spec.name, None)
            tasks[spec.name] = spec
    for name, error in _wrong_subsets(tasks).items():
        broken[name] = error
        del tasks[name]
    return Registry(tasks, broken)


def _wrong_subsets(tasks: dict[str, TaskSpec]) -> dict[str, str]:
    """Tasks whose ``counts.subset_of`` names no task, or a task with another item count than it declares
    (the leaderboard prints both), with the error naming the file and the field. A full task's own count is
    checked against its loader whenever it runs."""
    wrong = {}
    for name, spec in tasks.items():
        if spec.counts is None or spec.counts.subset_of is None:
            continue
        full = tasks.get(spec.counts.subset_of)
        where = f"{spec.path}: field 'counts.subset_of"
        if full is None:
            wrong[name] = (f"{where}.task' names {spec.counts.subset_of!r}, which is no task"
                           f"{did_you_mean(spec.counts.subset_of, tasks)}; name the task with the full set")
        elif full.counts is None:
            wrong[name] = (f"{where}.task' names {full.name!r}, whose task file declares no 'counts'; declare "
                           f"its item count there (counts.items) so that this subset's can be checked")
        elif full.counts.items != spec.counts.subset_of_items:
            wrong[name] = (f"{where}.items' is {spec.counts.subset_of_items}, but {full.name} has "
                           f"{full.counts.items} items ({full.path}); write {full.counts.items}")
    return wrong


def all_tasks(extra: list[Path] | None = None) -> dict[str, TaskSpec]:
    """The valid tasks by name (broken task files are left out; see ``broken_tasks``)."""
    return _load_all(tuple(task_dirs(extra))).tasks


def broken_tasks(extra: list[Path] | None = None) -> dict[str, str]:
    """Task files that could not be read, by file stem, with the error naming the file and the field."""
    return _load_all(tuple(task_dirs(extra))).broken


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
    tasks, groups, broken = all_tasks(extra), suites(extra), broken_tasks(extra)
    chosen: list[str] = []
    for suite in suite_names:
        if suite not in groups:
            raise unknown("suite", suite, groups)
        chosen += groups[suite]
    for name in task_names:
        if name in broken:
            raise OmniBenchError(broken[name])
        if name not in tasks:
            raise unknown("task", name, tasks)
        chosen.append(name)
    if suite_names and broken:
        print(f"omni-bench: warning: {len(broken)} task file(s) could not be read and are left out (see: "
              f"omni-bench list tasks): {', '.join(sorted(broken))}", file=sys.stderr)
    selected = [tasks[n] for n in dict.fromkeys(chosen)]
    for spec in selected:
        check_task_plugins(spec)
    return selected
