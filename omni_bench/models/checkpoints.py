"""Checkpoints are data: a file a user passes must not run code when a model package loads it.

Model packages read their weights with ``torch.load(weights_only=False)`` or ``pickle`` (sevenn, chgnet, mace,
diep, ...), which run whatever a pickle asks for. Before a factory gets a path the user chose (any argument
naming an existing file or folder, the channel, the card's checkpoint), every file there that torch or pickle
could load is read without being executed (``torch.serialization.get_unsafe_globals_in_checkpoint`` lists the
functions and classes its pickle would call): a zip-based torch file that calls only what torch's
``weights_only`` loader allows, plus the few numpy names sevenn checkpoints use for arrays, is loaded; any
other such file (a legacy or plain pickle, a file calling other functions, a file that cannot be read) is
refused unless the user passes ``--trust-code``. Some model packages (diep, matgl) also turn checkpoint
entries ``{"@module": M, "@class": C, "init_args": A}`` into the call ``M.C(**A)``: ``@module`` may name only
those packages' own modules. Checkpoints shipped inside installed packages (a card's ``pkg:`` entries) are
trusted like the packages themselves.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import OmniBenchError

#: numpy globals that only rebuild arrays (sevenn stores per-element energy shifts as numpy arrays)
NUMPY_ARRAY_GLOBALS = {"numpy.ndarray", "numpy.dtype", "numpy.core.multiarray._reconstruct",
                       "numpy._core.multiarray._reconstruct", "numpy.core.multiarray.scalar",
                       "numpy._core.multiarray.scalar"}
#: packages whose loaders build ``@module`` entries of a checkpoint (diep's ``Potential.load``, matgl's): the
#: modules such an entry may name (diep's own exports name ``diep_pyg``, its name in development)
DECODED_MODULE_ROOTS = {"diep", "diep_pyg", "matgl"}
_STRING_OPCODES = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
                   "BINUNICODE8"}
#: how much of a torch file's pickle (``data.pkl``, the structure without the tensors) is read for ``@module``
MAX_PICKLE_BYTES = 64 * 2**20
#: files torch or pickle load by name; any other file is checked when it is a zip, a tar, or a pickle that calls
LOADABLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".model", ".bin", ".tar")
#: a folder with more entries than this is not a model's weights: refused rather than walked
MAX_FOLDER_ENTRIES = 1000
#: how much of a file without a loadable name is read to see whether it is a pickle that would call something
PICKLE_PROBE_BYTES = 16 * 2**20


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


class _WouldCall(Exception):
    """The probed pickle asked for a function or class (the only way a pickle runs code)."""


class _Probe(pickle.Unpickler):
    """Unpickles containers and scalars only: asking for any global or persistent object stops it."""

    def find_class(self, module: str, name: str) -> Any:
        if not all(part.isidentifier() for part in f"{module}.{name}".split(".")):
            raise pickle.UnpicklingError("no such global")  # text that reads as GLOBAL: an unpickler stops here too
        raise _WouldCall(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise _WouldCall("a persistent object (a legacy torch file)")


def _pickle_calls(path: Path) -> str | None:
    """What ``pickle.load`` of ``path`` (and of the pickles after it) would call or import, or None when no
    unpickler could run code from it (it is not a pickle, or one of plain data)."""
    with open(path, "rb") as file:
        data = file.read(PICKLE_PROBE_BYTES)
        complete = not file.read(1)
    stream = io.BytesIO(data)
    while stream.tell() < len(data):
        start = stream.tell()
        try:
            _Probe(stream).load()
        except _WouldCall as exc:
            return f"it is a pickle that calls {exc}"
        except Exception:  # the data stops being a pickle: nothing after it can run either
            if stream.tell() >= len(data) and not complete:
                return f"it may be a pickle longer than the {PICKLE_PROBE_BYTES} bytes read"
            return None
        foreign = _foreign_modules(data[start:stream.tell()])
        if foreign:
            return foreign
    return None


def _decoded_modules(data: bytes) -> list[str]:
    """The values of ``"@module"`` keys in a pickle, read from its opcodes (a repeated string comes from the
    pickle's memo); nothing is unpickled."""
    memo: dict[int, str | None] = {}
    pushed, after_key, found = None, False, []
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                memo[len(memo) if opcode.name == "MEMOIZE" else arg] = pushed
                continue
            if opcode.name == "FRAME":
                continue
            pushed = (memo.get(arg) if opcode.name in ("GET", "BINGET", "LONG_BINGET")
                      else arg if opcode.name in _STRING_OPCODES else None)
            if after_key and pushed is not None:
                found.append(pushed)
            after_key = pushed == "@module"
    except Exception:  # the data stops being a pickle: a loader reads no further either
        pass
    return found


def _foreign_modules(data: bytes) -> str | None:
    foreign = [m for m in _decoded_modules(data) if m.partition(".")[0] not in DECODED_MODULE_ROOTS]
    return f"it names '@module' {', '.join(foreign[:3])}, which a model package would import and call" if foreign \
        else None


def _torch_pickle(path: Path) -> bytes:
    """The pickle of a zip-based torch file (``*/data.pkl``)."""
    with zipfile.ZipFile(path) as archive:
        names = [info for info in archive.infolist() if info.filename.endswith("/data.pkl")]
        if not names or names[0].file_size > MAX_PICKLE_BYTES:
            raise ValueError("not a zip-based torch checkpoint with a data.pkl that can be read")
        return archive.read(names[0])


def loading_risk(path: Path) -> str | None:
    """Why loading ``path`` with torch or pickle could run code, or None when it cannot."""
    try:
        if path.name.endswith(LOADABLE_SUFFIXES) or zipfile.is_zipfile(path) or tarfile.is_tarfile(path):
            problem = unsafe_globals(path)
            if problem:
                return f"its pickle calls {', '.join(problem[:5])}"
            return _foreign_modules(_torch_pickle(path))
        return _pickle_calls(path)
    except ValueError as exc:
        return str(exc)
    except OSError as exc:
        return f"it cannot be read to be checked ({exc.strerror or exc})"


def check_checkpoint(path: Path, what: str, trust_code: bool) -> str | None:
    """Refuse (unless ``trust_code``) a file whose loading could run code. Returns what ``--trust-code`` let
    through, for the results JSON, or None when the file is safe."""
    reason = loading_risk(path)
    if reason is None:
        return None
    message = f"{what} {path}: {reason}, so loading it could run code"
    if not trust_code:
        raise OmniBenchError(f"{message}; pass --trust-code only if you trust where the file came from")
    print(f"omni-bench: warning: --trust-code: {message}; loading it", file=sys.stderr)
    return f"checkpoint {path}: {reason}"


def check_model_files(variant) -> str | None:
    """Check every file a variant's factory could load from a path the user chose: factory arguments (and the
    channel) naming an existing file or folder, and, where an argument asks for ``{checkpoint}``, the card's
    checkpoint paths other than its ``pkg:`` entries. Returns what ``--trust-code`` let through, for the results
    file (None: nothing). The run plan calls it once per variant, before any model is built (``run/plan.py``)."""
    what = f"model {variant.label}: {variant.card.factory} would load"
    notes = []
    for value in _strings([*variant.args.values(), variant.channel]):
        for path in variant.card.user_checkpoints() if value == "{checkpoint}" else [value]:
            files, note = _files_at(path, what, variant.trust_code)
            notes += [note, *(check_checkpoint(file, what, variant.trust_code) for file in files)]
    return "; ".join(filter(None, notes)) or None


def _strings(values: list[Any]) -> Iterator[str]:
    for value in values:
        if isinstance(value, str) and value:
            yield value
        elif isinstance(value, (list, tuple)):
            yield from _strings(list(value))
        elif isinstance(value, dict):
            yield from _strings(list(value.values()))


def _files_at(where: str | Path, what: str, trust_code: bool) -> tuple[list[Path], str | None]:
    """The file ``where`` names, or the files in the folder it names (symbolic links followed, as a loader
    would); none when it names neither. A folder too large to check is refused unless ``trust_code``, and
    then noted."""
    try:
        path = Path(where).expanduser()
        if not path.is_dir():
            return ([path] if path.is_file() else []), None
    except (OSError, ValueError, RuntimeError):  # too long for a path, a NUL in it, or ~user of no user
        return [], None
    files, entries = [], 0
    for folder, dirs, names in os.walk(path, followlinks=True):
        entries += len(dirs) + len(names)
        if entries > MAX_FOLDER_ENTRIES:
            message = f"{what} {path}: a folder of more than {MAX_FOLDER_ENTRIES} entries, not checked file by file"
            if not trust_code:
                raise OmniBenchError(f"{message}; give the model's own folder, or pass --trust-code")
            print(f"omni-bench: warning: --trust-code: {message}; loading from it", file=sys.stderr)
            return [], f"folder {path}: not checked"
        files += [Path(folder) / name for name in names if (Path(folder) / name).is_file()]
    return files, None
