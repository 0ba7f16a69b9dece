"""What the writer of results files (``results.py``) and their reader (``reporting/load.py``) share: the size
cap, the hash of the reference column, and JSON that is always valid JSON."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

#: the largest results JSON or predictions CSV a command reads (a larger one is refused, not read)
MAX_FILE_BYTES = 200 * 1024 * 1024


def reference_sha256(ids: Iterable[str], quantities: Iterable[str], references: Iterable[float]) -> str:
    """sha256 of the sorted (item id, quantity, reference) rows of a predictions table: recorded in the results
    JSON when the run writes it and recomputed from the CSV when it is read, so edited references are found.
    Each reference is its shortest round-trip text (``repr``), which the CSV keeps exactly; none is 'nan'."""
    rows = sorted((str(i), str(q), repr(float(r))) for i, q, r in zip(ids, quantities, references, strict=True))
    return hashlib.sha256(json.dumps(rows, ensure_ascii=True).encode()).hexdigest()


def finite(value: Any) -> Any:
    """``value`` with every number that is not finite (NaN, infinities) as None, numpy scalars as Python ones."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def json_text(payload: Any) -> str:
    """``payload`` as indented JSON that any JSON reader accepts: a number that is not finite is written as
    null (a metric of nothing is not computed, not NaN), anything else not JSON as its text."""
    return json.dumps(finite(payload), indent=2, allow_nan=False, default=str) + "\n"
