"""Which results may be ranked together: one task's results must come from the task as the task folders
define it now (version, inputs hash, data files, units) and be scored against the same references.

A result that differs is refused, with one line naming its file and what differs, rather than left out with
a note: a leaderboard or report is a comparison, and a row left out would read as a task the model never ran
(and a note on stderr is lost in CI). Rerunning the task, or choosing other results, is the fix.
"""

from __future__ import annotations

import math
from collections import defaultdict

from ..errors import OmniBenchError
from ..identity import store_identity
from ..safe_text import short_repr
from ..taskspec import TaskSpec
from .load import TaskResult

_RERUN = ("run the task again with the current task files (omni-bench run), pass the task folder it was run with "
          "(--tasks-dir), or leave this result out")


def check_comparable(results: list[TaskResult], tasks: dict[str, TaskSpec]) -> None:
    """Every result's task identity against the task registry (``tasks``; a task not there is checked
    against the first result of its name), then every task's references across models."""
    by_task: dict[str, list[TaskResult]] = defaultdict(list)
    for result in sorted(results, key=lambda r: str(r.path)):
        by_task[result.task].append(result)
    for name, group in sorted(by_task.items()):
        spec = tasks.get(name)
        expected, source = _current_identity(spec), f"the task file {spec.path if spec else ''}"
        if expected is None:
            expected, source = task_identity(group[0]), str(group[0].path)
        for result in group:
            _refuse_difference(result, task_identity(result), expected, source)
        check_references_agree(group)


def task_identity(result: TaskResult) -> dict[str, object]:
    """What a result says about the task it was scored on; a field older results files lack is None."""
    task = result.record["task"]

    def files(key: str):
        return None if task.get(key) is None else sorted((f["path"], f["sha256"]) for f in task[key])

    return {"version": result.task_version, "inputs hash": result.inputs_hash or None,
            "units": result.units or None, "data files": files("dataset_files"),
            "tables": files("dataset_tables")}


def _current_identity(spec: TaskSpec | None) -> dict[str, object] | None:
    if spec is None:
        return None
    try:
        identity = store_identity(spec)  # imports the task's loader and protocol: no model code
    except OmniBenchError:  # a plug-in task whose plug-in is not installed here: checked against its peers
        return None
    return {"version": spec.version, "inputs hash": identity.inputs_hash, "units": spec.units,
            "data files": sorted((f.path, f.sha256) for f in spec.files),
            "tables": sorted((f.path, f.sha256) for f in spec.tables)}


def _refuse_difference(result: TaskResult, identity: dict, expected: dict, source: str) -> None:
    for field, value in identity.items():
        if value is not None and expected[field] is not None and value != expected[field]:
            raise OmniBenchError(f"{result.path}: {result.label} on {result.task} was scored with task {field} "
                                 f"{short_repr(value, 80)}, but {source} has {short_repr(expected[field], 80)}: the "
                                 f"numbers are not comparable; {_RERUN}")


def check_references_agree(group: list[TaskResult]) -> None:
    """Results of one task scored against the same reference convention must give every item they share the
    same reference: a results pair whose references were edited (set to its predictions, say) is outvoted by
    its peers and refused, naming its file; with no majority, both files are named."""
    by_convention: dict[str, list[TaskResult]] = defaultdict(list)
    for result in group:
        by_convention[result.reference_convention].append(result)
    for peers in by_convention.values():
        holders: dict[tuple[str, str], dict[str, list[TaskResult]]] = defaultdict(lambda: defaultdict(list))
        for result in peers:
            for key, value in _references(result).items():
                holders[key][value].append(result)
        for (item, quantity), by_value in holders.items():
            if len(by_value) == 1:
                continue
            (top, top_results), (second, second_results) = sorted(by_value.items(), key=lambda kv: -len(kv[1]))[:2]
            if len(top_results) == len(second_results):
                raise OmniBenchError(
                    f"{top_results[0].path} and {second_results[0].path} give item {item!r} of {peers[0].task} "
                    f"different references {quantity} ({top} and {second}) and no other result settles which is "
                    f"right: one of them was edited or comes from other data; {_RERUN}")
            odd_value, odd = next((value, rs[0]) for value, rs in by_value.items() if value != top)
            raise OmniBenchError(
                f"{odd.path}: the reference {quantity} of item {item!r} is {odd_value}, but "
                f"{len(top_results)} other results of {odd.task} give {top}: its references were edited or come "
                f"from other data; {_RERUN}")


def _references(result: TaskResult) -> dict[tuple[str, str], str]:
    """(item id, quantity) -> the reference, to 12 significant digits (identical data give identical floats;
    an edit of a reference changes far more)."""
    frame = result.predictions
    return {(i, q): _value(r) for i, q, r in zip(frame["id"], frame["quantity"], frame["reference"], strict=True)}


def _value(reference: float) -> str:
    return "none" if not math.isfinite(reference) else f"{reference:.12g}"
