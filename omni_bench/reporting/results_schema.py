"""The schema of a results JSON, checked when it is read: a file is user input (it may be damaged, edited or
written by someone else), so every field the commands use has its type checked first, and a wrong one is
one error naming the file and the field, never a traceback further on.

Fields that older results files lack are optional; a field that is present must have its type.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import OmniBenchError
from ..safe_text import short_repr
from ..taskspec import DIRECTIONS, STATISTICS


@dataclass(frozen=True)
class Field:
    """What one field must be: ``test`` with ``what`` in the error; a mapping's known ``fields``, or ``each``
    for every element of a list (every value of a mapping). Calling a field gives it those: ``TEXT(True)`` is
    required text, ``LIST(each=TEXT())`` a list of text."""

    what: str
    test: Callable[[Any], bool]
    required: bool = False
    fields: dict[str, Field] = field(default_factory=dict)
    each: Field | None = None

    def __call__(self, required: bool = False, fields: dict[str, Field] | None = None,
                 each: Field | None = None) -> Field:
        return Field(self.what, self.test, required, fields or {}, each)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return _whole(value) or isinstance(value, float)


TEXT = Field("text", lambda v: isinstance(v, str))
NAME = Field("non-empty text", lambda v: isinstance(v, str) and bool(v.strip()))
FLAG = Field("true or false", lambda v: isinstance(v, bool))
COUNT = Field("a whole number, 0 or more", lambda v: _whole(v) and v >= 0)
POSITIVE = Field("a whole number, 1 or more", lambda v: _whole(v) and v >= 1)
NUMBER = Field("a number", _number)
TOLERANCE = Field("a finite number, 0 or more", lambda v: _number(v) and math.isfinite(v) and v >= 0)
SHA256 = Field("64 lowercase hex digits", lambda v: isinstance(v, str) and len(v) == 64
               and set(v) <= set("0123456789abcdef"))
MAPPING = Field("a mapping", lambda v: isinstance(v, dict))
LIST = Field("a list", lambda v: isinstance(v, list))
STATISTIC = Field(f"one of {', '.join(STATISTICS)}", lambda v: v in STATISTICS)
DIRECTION = Field(f"one of {', '.join(DIRECTIONS)}", lambda v: v in DIRECTIONS)

_DATA_FILE = MAPPING(fields={"path": TEXT(True), "sha256": TEXT(True)})
_METRIC_SPEC = MAPPING(fields={"name": NAME(True), "quantity": NAME(True), "statistic": STATISTIC(True),
                               "direction": DIRECTION(True), "group_by": NAME()})

RESULTS_FILE = MAPPING(True, fields={
    "omni_bench_version": TEXT(),
    "model": MAPPING(True, fields={
        "label": NAME(True), "fingerprint_id": TEXT(),
        "fingerprint": MAPPING(fields={"model": TEXT(), "channel": TEXT(), "d3": FLAG(), "level_of_theory": TEXT(),
                                       "checkpoint_sha256": TEXT(), "packages": MAPPING()})}),
    "card": MAPPING(fields={"level_of_theory": TEXT(), "trained_with_dispersion": FLAG(),
                            "in_domain": LIST(each=TEXT())}),
    "task": MAPPING(True, fields={
        "name": NAME(True), "version": POSITIVE(True), "units": MAPPING(each=TEXT()), "level_of_theory": TEXT(),
        "citation": TEXT(), "dataset_files": LIST(each=_DATA_FILE), "dataset_tables": LIST(each=_DATA_FILE),
        "config": MAPPING(fields={
            "description": TEXT(), "suites": LIST(each=NAME()), "metrics": LIST(each=_METRIC_SPEC),
            "gate": MAPPING(each=MAPPING(fields={"abs": TOLERANCE(), "rel": TOLERANCE()})), "resample_by": NAME(),
            "counts": MAPPING(fields={"items": POSITIVE(True), "item_name": TEXT(),
                                      "subset_of": MAPPING(fields={"task": NAME(True), "items": POSITIVE(True)})}),
        })}),
    "config": MAPPING(fields={"limit": COUNT(), "inputs_hash": TEXT(), "device": TEXT(),
                              "reference_energy_convention": TEXT(), "protocol_params": MAPPING()}),
    "environment": MAPPING(fields={"packages": MAPPING(), "device": TEXT(), "device_name": TEXT(),
                                   "hostname": TEXT(), "python": TEXT()}),
    "n_items": COUNT(True),
    "n_failed": COUNT(True),
    "failures": LIST(each=MAPPING(fields={"item_id": TEXT(True), "error": TEXT()})),
    "notes": MAPPING(each=COUNT()),
    "metrics": MAPPING(True, each=MAPPING(fields={
        "value": NUMBER(), "unit": TEXT(), "statistic": STATISTIC(), "direction": DIRECTION(), "quantity": TEXT(),
        "n": COUNT(), "n_failed": COUNT()})),
    "complete": FLAG(),
    "predictions_file": NAME(True),
    "reference_sha256": SHA256(),
})


def check_record(path: Path, record: Any) -> dict[str, Any]:
    """``record`` (a parsed results JSON) if every field the commands read has its type; else one error."""
    _check(path, "", record, RESULTS_FILE)
    return record


def _check(path: Path, where: str, value: Any, spec: Field) -> None:
    if not spec.test(value):
        shown = short_repr(value)
        raise OmniBenchError(f"{path}: field '{where or '(whole file)'}' must be {spec.what}, got {shown}: not a "
                             "results file as omni-bench run writes it (damaged or edited?); run that omni-bench "
                             "run again to rewrite it")
    for key, sub in spec.fields.items():
        if value.get(key) is None:  # null is a field left out (a metric of nothing is null, not NaN)
            if sub.required:
                raise OmniBenchError(f"{path}: field '{where}{'.' if where else ''}{key}' is missing: not a "
                                     "results file as omni-bench run writes it; run that omni-bench run again to "
                                     "rewrite it")
            continue
        _check(path, f"{where}{'.' if where else ''}{key}", value[key], sub)
    if spec.each is not None:
        for key, element in (value.items() if isinstance(value, dict) else enumerate(value)):
            _check(path, f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}", element, spec.each)
