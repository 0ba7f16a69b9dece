"""Which device a model runs on. One definition for both sides of the worker boundary: the worker process
(``omni_bench_worker``) loads this file too, in the model's own interpreter, which may have another torch."""

from __future__ import annotations


def resolve_device(device: str = "auto") -> str:
    """'auto' means CUDA when this interpreter's torch sees a GPU, else CPU."""
    if device != "auto":
        return device
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"
