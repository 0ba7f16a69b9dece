"""Messages between omni-bench and a worker: one JSON object per message, preceded by its length.

JSON and not pickle: a message is data, never code, so a worker cannot make omni-bench run anything
(and the reverse). Floats in JSON keep every bit (Python writes the shortest repr that reads back
exactly); arrays travel as the base64 of their little-endian bytes, exact and compact, and only as
float64, int64 or bool.
"""

from __future__ import annotations

import base64
import json
import socket
import struct
from collections.abc import Callable
from typing import Any

import numpy as np

_HEADER = struct.Struct("!Q")
_ARRAY = "__ndarray__"
_DTYPES = {"<f8": np.float64, "<i8": np.int64, "|b1": np.bool_}
#: a message larger than this is a bug or a corrupt stream, not a structure (1 GiB)
MAX_MESSAGE_BYTES = 1 << 30


class ConnectionLost(EOFError):
    """The other side closed the connection (or died) before a whole message arrived."""


class ProtocolError(ValueError):
    """A whole message arrived that the protocol does not allow: not JSON, not an object, an unreadable array,
    or (``omni_bench/models/worker.py`` checks replies) the wrong id, keys or types."""


def send(sock: socket.socket, message: dict[str, Any]) -> None:
    payload = json.dumps(message, default=_encode, allow_nan=True, separators=(",", ":")).encode()
    sock.sendall(_HEADER.pack(len(payload)) + payload)


def receive(sock: socket.socket, on_idle: Callable[[], None] | None = None) -> dict[str, Any]:
    """The next message, a JSON object; ``ConnectionLost`` or ``ProtocolError``, nothing else, when there is
    none. With a socket timeout set, ``on_idle`` runs at each timeout (it may raise)."""
    (size,) = _HEADER.unpack(_receive_exactly(sock, _HEADER.size, on_idle))
    if size > MAX_MESSAGE_BYTES:
        raise ConnectionLost(f"message of {size} bytes announced: the stream is corrupt")
    payload = _receive_exactly(sock, size, on_idle)
    try:
        message = json.loads(payload, object_hook=_decode)
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError) as exc:
        raise ProtocolError(f"unreadable message: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"a message must be a JSON object, not {type(message).__name__}")
    return message


def _receive_exactly(sock: socket.socket, size: int, on_idle: Callable[[], None] | None) -> bytes:
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        try:
            count = sock.recv_into(view[got:])
        except TimeoutError:
            if on_idle is not None:
                on_idle()
            continue
        if count == 0:
            raise ConnectionLost("connection closed")
        got += count
    return bytes(buffer)


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            value = value.astype("<f8")
        elif value.dtype.kind in "iu":
            value = value.astype("<i8")
        elif value.dtype.kind == "b":
            value = value.astype("|b1")
        else:
            raise TypeError(f"arrays of dtype {value.dtype} cannot be sent")
        data = base64.b64encode(np.ascontiguousarray(value).tobytes()).decode("ascii")
        return {_ARRAY: data, "dtype": value.dtype.str, "shape": list(value.shape)}
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} cannot be sent to or from a worker")


def _decode(mapping: dict[str, Any]) -> Any:
    if _ARRAY not in mapping:
        return mapping
    dtype = _DTYPES.get(mapping.get("dtype"))
    if dtype is None:
        raise ValueError(f"array of dtype {mapping.get('dtype')!r} refused")
    array = np.frombuffer(base64.b64decode(mapping[_ARRAY]), dtype=dtype)
    return array.reshape([int(n) for n in mapping["shape"]]).copy()


def atoms_to_message(atoms) -> dict[str, Any]:
    """What a model sees of a structure: numbers, positions, cell, periodicity, and the scalar
    ``Atoms.info`` entries (charge, spin, and anything else a calculator may read)."""
    info = {str(k): (v.item() if isinstance(v, np.generic) else v) for k, v in atoms.info.items()
            if isinstance(v, (str, int, float, bool, np.integer, np.floating, np.bool_))}
    return {"numbers": atoms.numbers, "positions": atoms.positions, "cell": atoms.cell.array,
            "pbc": atoms.pbc, "info": info}


def atoms_from_message(message: dict[str, Any]):
    from ase import Atoms

    atoms = Atoms(numbers=message["numbers"], positions=message["positions"], cell=message["cell"],
                  pbc=message["pbc"])
    atoms.info.update(message.get("info", {}))
    return atoms
