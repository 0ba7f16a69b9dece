"""Reading the JSON files of leifjacobson/MLFF_test_data (Schrodinger's MLFF test sets).

Every file is a list of structures, each a dict with ``title``, ``coordinates`` (A), ``elements``, ``charge``,
energies under keys ``E[<method>](<unit>)`` with unit ``Ha`` or ``Ry``, and for crystals ``lattice`` (9
numbers, A, row-major cell vectors). Energies leave here as ``Quantity`` in the file's unit; omni_bench.units
converts them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from ase import Atoms

from ..errors import OmniBenchError
from ..items import Quantity

_ENERGY_KEY = re.compile(r"^E\[(.+)\]\((Ha|Ry)\)$")
_UNITS = {"Ha": "Hartree", "Ry": "Ry"}


def read_records(path: Path) -> list[dict]:
    """The structures of one file; an error names the file when it is not a list of dicts."""
    try:
        records = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise OmniBenchError(f"{path}: cannot read JSON: {exc}") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise OmniBenchError(f"{path}: expected a list of structure records")
    return records


def to_atoms(record: dict, where: str) -> Atoms:
    """The structure as ASE Atoms: periodic with its cell when it has a ``lattice``; net charge in
    ``info['charge']`` (closed shell: ``info['spin'] = 1``)."""
    try:
        symbols = list(record["elements"])
        positions = np.asarray(record["coordinates"], dtype=float)
        charge = int(record.get("charge", 0))
        lattice = record.get("lattice")
        cell = None if lattice is None else np.asarray(lattice, dtype=float).reshape(3, 3)
    except (KeyError, TypeError, ValueError) as exc:
        raise OmniBenchError(f"{where}: bad elements/coordinates/charge/lattice ({type(exc).__name__}: {exc})") \
            from None
    if positions.shape != (len(symbols), 3):
        raise OmniBenchError(f"{where}: {len(symbols)} elements but coordinates of shape {positions.shape}")
    atoms = Atoms(symbols, positions=positions, cell=cell, pbc=cell is not None)
    atoms.info.update({"charge": charge, "spin": 1})
    return atoms


def energy(record: dict, method: str, where: str) -> Quantity:
    """The energy ``E[<method>](<unit>)`` of a record, in its own unit."""
    for key, value in record.items():
        match = _ENERGY_KEY.match(key)
        if match and match.group(1) == method:
            if not isinstance(value, (int, float)) or not np.isfinite(value):
                raise OmniBenchError(f"{where}: field {key!r} is {value!r}, not a number")
            return Quantity(float(value), _UNITS[match.group(2)])
    methods = [m.group(1) for k in record if (m := _ENERGY_KEY.match(k))]
    raise OmniBenchError(f"{where}: no energy for method {method!r} (the record has: {', '.join(methods) or 'none'})")


def files_under(files: dict[str, Path], folder: str, param: str) -> list[tuple[str, Path]]:
    """The task's files in ``folder`` (relative to the data root), as (relative path, path), by name."""
    prefix = folder.rstrip("/") + "/"
    found = sorted((rel, path) for rel, path in files.items() if rel.startswith(prefix) and rel.endswith(".json"))
    if not found:
        raise OmniBenchError(f"dataset.params.{param}: no JSON file of {prefix} is among the task's data files "
                             f"(dataset.files or dataset.files_from)")
    return found


def subset_count(subset, key: str, what: str) -> int:
    """The positive integer of a ``subset: {<key>: n}`` loader parameter, or one line naming the field."""
    value = subset.get(key) if isinstance(subset, dict) and set(subset) == {key} else None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise OmniBenchError(f"dataset.params.subset must be {{{key}: n}} with a positive integer n (or absent for "
                             f"every {what}), got {subset!r}")
    return value
