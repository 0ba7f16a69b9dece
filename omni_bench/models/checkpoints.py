"""Checkpoints are data: a file a user passes must not run code when a model package unpickles it.

sevenn (``SevenNetCheckpoint``) and chgnet (``CHGNet.from_file``) read checkpoints with
``torch.load(weights_only=False)``, which runs whatever a pickle asks for. Before a user-supplied file
reaches them, its pickle is read without being executed (``torch.serialization.get_unsafe_globals_in_checkpoint``
lists the functions and classes it would call): a zip-based torch file that calls only what torch's
``weights_only`` loader allows, plus the few numpy names sevenn checkpoints use for arrays, is loaded; any
other file is refused unless the user passes ``--trust-code``. Checkpoints shipped inside installed packages
(a card's ``pkg:`` entries) are trusted like the packages themselves.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import OmniBenchError

#: packages that unpickle the checkpoints given to omni-bench's factories (README, Security)
UNPICKLING_FACTORIES = {"omni_bench.models.factories:sevennet": "sevenn",
                        "omni_bench.models.factories:chgnet": "chgnet"}
#: numpy globals that only rebuild arrays (sevenn stores per-element energy shifts as numpy arrays)
NUMPY_ARRAY_GLOBALS = {"numpy.ndarray", "numpy.dtype", "numpy.core.multiarray._reconstruct",
                       "numpy._core.multiarray._reconstruct", "numpy.core.multiarray.scalar",
                       "numpy._core.multiarray.scalar"}


def unsafe_globals(path: Path) -> list[str]:
    """What unpickling ``path`` would call beyond plain tensors, containers and numpy arrays; read without
    executing anything. Raises ``ValueError`` for a file that is not a zip-based torch checkpoint."""
    import torch

    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as exc:  # not a zip file, or a damaged one: its pickle cannot be inspected
        raise ValueError(f"not a zip-based torch checkpoint ({type(exc).__name__}: {exc})") from None
    return [name for name in found if name not in NUMPY_ARRAY_GLOBALS
            and not (name.startswith("numpy.dtypes.") and name.endswith("DType"))]


def check_checkpoint(path: Path, what: str, trust_code: bool) -> str | None:
    """Refuse (unless ``trust_code``) a checkpoint whose pickle would call anything beyond array rebuilding.
    Returns what ``--trust-code`` let through, for the results JSON, or None when the file is safe."""
    try:
        problem = unsafe_globals(path)
        reason = f"its pickle calls {', '.join(problem[:5])}" if problem else None
    except ValueError as exc:
        reason = str(exc)
    if reason is None:
        return None
    message = f"{what} {path}: {reason}, so loading it could run code"
    if not trust_code:
        raise OmniBenchError(f"{message}; pass --trust-code only if you trust where the file came from")
    print(f"omni-bench: warning: --trust-code: {message}; loading it", file=sys.stderr)
    return f"checkpoint {path}: {reason}"


def check_model_files(variant) -> str | None:
    """Check every checkpoint file a variant's factory hands to a package that unpickles: the card's checkpoint
    (unless shipped inside an installed package) and any factory argument naming a file (``--model-arg
    model=PATH``). Returns what ``--trust-code`` let through, for the results file (None: nothing). The run
    plan calls it once per variant, before any model is built (``run/plan.py``)."""
    package = UNPICKLING_FACTORIES.get(variant.card.factory)
    if package is None:
        return None
    notes = []
    for value in variant.args.values():
        if value == "{checkpoint}":
            path = variant.card.resolve_checkpoint()
            if path is None or variant.card.is_packaged(path):
                continue
        elif isinstance(value, str) and len(value) < 4096 and Path(value).is_file():
            path = Path(value)
        else:
            continue
        notes.append(check_checkpoint(path, f"model {variant.label}: {package} unpickles its checkpoint",
                                      variant.trust_code))
    return "; ".join(filter(None, notes)) or None
