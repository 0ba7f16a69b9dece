"""Which GPU a Dask worker uses: ``--device cuda`` on a worker means one GPU of those the worker sees,
one model replica per GPU.

Workers on a node often see the same GPUs (a local cluster, or a batch job with several GPUs and one
worker process per GPU). Each worker process takes the first visible GPU that no other process on the node
holds, by an exclusive lock on a node-local file named after the GPU; the lock goes when the process does,
so a restarted worker takes its GPU again. With more workers than GPUs, the extra ones share.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import IO

#: (index among the visible GPUs, the open lock file that holds it) of this process
_CLAIMED: tuple[int, IO | None] | None = None


def visible_gpu_count() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count()


def gpu_names(count: int) -> list[str]:
    """Names that are the same for every process on the node: GPU UUIDs when torch gives them, else the
    CUDA_VISIBLE_DEVICES entries within the batch job."""
    import torch

    try:
        return [str(torch.cuda.get_device_properties(i).uuid) for i in range(count)]
    except (AttributeError, RuntimeError):
        visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
        job = os.environ.get("SLURM_JOB_ID") or os.environ.get("PBS_JOBID") or "local"
        return [f"{job}-{visible[i] if i < len(visible) else i}" for i in range(count)]


def claim_slot(names: list[str], lock_dir: Path) -> tuple[int, IO | None]:
    """The index of the first name whose lock this process can take, with the open lock file (keep it
    open: closing it frees the slot); with all taken, a slot shared by process id."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): spread by process id
        return os.getpid() % len(names), None
    for index, name in enumerate(names):
        path = lock_dir / f"omni-bench-gpu-{re.sub(r'[^A-Za-z0-9._-]', '_', name)}.lock"
        try:
            handle = open(path, "a")
        except OSError:
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        return index, handle
    return os.getpid() % len(names), None


def claim_gpu() -> str:
    """The device string for this worker process's GPU (``cuda`` when it sees one GPU or none)."""
    global _CLAIMED
    count = visible_gpu_count()
    if count <= 1:
        return "cuda"
    if _CLAIMED is None:
        _CLAIMED = claim_slot(gpu_names(count), Path(tempfile.gettempdir()))
    return f"cuda:{_CLAIMED[0]}"
