"""Which device a model runs on. One definition for both sides of the worker boundary: the worker process
(``omni_bench_worker``) loads this file too, in the model's own interpreter, which may have another torch."""

from __future__ import annotations

import re

#: what ``--device`` (or a sweep file's ``device``) may say: torch device names, with an optional index
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|(cuda|xpu)(:[0-9]{1,3})?")


def check_device(device: str) -> str | None:
    """Why ``device`` is not a device name omni-bench can pass to a model, or None when it is."""
    if isinstance(device, str) and DEVICE_PATTERN.fullmatch(device):
        return None
    return f"{device!r} is not a device: use auto (a GPU when torch sees one), cpu, cuda, cuda:N, mps or xpu"


def resolve_device(device: str = "auto") -> str:
    """'auto' means CUDA when this interpreter's torch sees a GPU, else CPU."""
    if device != "auto":
        return device
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"
