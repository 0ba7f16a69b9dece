"""Atom pairs for dimer curves (the physicality suite): no data file is read.

Each item is one pair of elements, ``A-B``: the two isolated atoms as structures ``atom_1`` and ``atom_2``
(the protocol builds the dimer at every distance of its grid). ``elements`` gives the homonuclear pairs
(``H-H``, ``C-C``...) and ``pairs`` the heteronuclear ones as ``"A-B"`` strings; items are grouped by
``kind`` (homonuclear or heteronuclear).
"""

from __future__ import annotations

from pathlib import Path

from ase import Atoms
from ase.data import chemical_symbols

from ..errors import OmniBenchError
from ..items import Item

PARAMS = {
    "elements": ["H", "C", "N", "O"],
    "pairs": [],
}


def load(files: dict[str, Path], params: dict) -> list[Item]:
    params = {**PARAMS, **params}
    pairs = [(e, e) for e in params["elements"]]
    for text in params["pairs"]:
        parts = text.split("-") if isinstance(text, str) else []
        if len(parts) != 2:
            raise OmniBenchError(f"loader diatomics: params.pairs entries must read 'A-B' (e.g. 'C-H'), got {text!r}")
        pairs.append((parts[0], parts[1]))
    items, seen = [], set()
    for first, second in pairs:
        for symbol in (first, second):
            if symbol not in chemical_symbols[1:]:
                raise OmniBenchError(f"loader diatomics: {symbol!r} is not a chemical element")
        name = f"{first}-{second}"
        if name in seen:
            raise OmniBenchError(f"loader diatomics: the pair {name} is listed twice")
        seen.add(name)
        items.append(Item(
            id=name,
            structures={"atom_1": Atoms(first, positions=[[0.0, 0.0, 0.0]]),
                        "atom_2": Atoms(second, positions=[[0.0, 0.0, 0.0]])},
            groups={"kind": "homonuclear" if first == second else "heteronuclear"},
        ))
    return items
