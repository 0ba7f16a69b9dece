"""The settings of one run, shared by every executor."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..devices import check_device
from ..errors import OmniBenchError
from ..store import ResultStore

if TYPE_CHECKING:
    from ..models.loaded import LoadedModel


@dataclass
class RunOptions:
    store: ResultStore
    out_dir: Path | None = None
    data_root: Path | None = None
    data_origin: str = ""
    device: str = "auto"
    limit: int | None = None
    rerun: bool = False
    progress: bool = True
    #: seconds one item may take before it is recorded as failed (None: no limit)
    item_timeout: float | None = None
    #: loaded models by fingerprint id, kept across runs (tests and long-lived processes reuse them)
    model_cache: dict[str, LoadedModel] = field(default_factory=dict)
    #: atoms per batch for single points of models with a batched evaluator (None: the default for the model's
    #: device, see models/batched.py); 0: every energy through the ASE calculator
    batch_atoms: int | None = None
    #: let a --limit run replace a complete results file in ``out_dir`` (otherwise refused)
    replace_complete: bool = False
    #: lines about how the run computes (its threads), printed once when the first model loads (``announce``):
    #: after every check of the input, so a mistake is still one line
    header: list[str] = field(default_factory=list)

    def announce(self) -> None:
        for line in self.header:
            print(line, file=sys.stderr)
        self.header = []

    def __post_init__(self) -> None:
        if self.item_timeout is not None and not (math.isfinite(self.item_timeout) and self.item_timeout > 0):
            raise OmniBenchError(f"--item-timeout must be a positive number of seconds, not {self.item_timeout:g}"
                                 " (leave it out for no limit)")
        if problem := check_device(self.device):
            raise OmniBenchError(f"--device {problem}")
