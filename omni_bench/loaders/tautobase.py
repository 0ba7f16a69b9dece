"""Tautobase tautomer pairs (Wahl & Sander, JCIM 60, 1085, 2020) at wB97X-D3BJ/def2-TZVPD.

One file ``tautomer_pair_<n>.json`` per pair, two structures each. The scored quantity is the
tautomerisation energy E(second) - E(first) of the file's order, through the ``reaction_energy`` protocol:
each structure is one item (``<pair>/1``, ``<pair>/2``), each pair one reaction ``<pair>`` (the pair number
zero-padded, so ids sort numerically: the numbers run 1-1680 with gaps). Net charges (+1 in seven pairs) go to
``atoms.info['charge']``; each reaction is checked to balance atoms and charge, as tautomers must. Energies
are attached as ``atoms.info['ref_energy:<label>']`` (eV) for the tabulated model.
"""

from __future__ import annotations

import re
from pathlib import Path

from .. import units
from ..errors import OmniBenchError
from ..items import Item, Quantity
from ..items.reactions import Reaction, molecule_items
from ._schrodinger_json import energy, files_under, read_records, to_atoms

PARAMS = {"folder": "MLFF_test_data_Schrodinger/tautobase", "reference": "wB97X-D3BJ/def2-TZVPD",
          "tabulated": {"wB97X-D3BJ": "wB97X-D3BJ/def2-TZVPD"}}
_PAIR = re.compile(r"^tautomer_pair_(\d+)\.json$")


def load(files: dict[str, Path], params: dict) -> list[Item]:
    params = {**PARAMS, **params}
    pairs = []
    for rel, path in files_under(files, params["folder"], "folder"):
        match = _PAIR.match(Path(rel).name)
        if match is None:
            raise OmniBenchError(f"{path}: not a tautomer_pair_<n>.json file")
        pairs.append((int(match.group(1)), path))
    molecules, reactions = {}, []
    for number, path in sorted(pairs):
        records = read_records(path)
        if len(records) != 2:
            raise OmniBenchError(f"{path}: a tautomer pair needs 2 structures, found {len(records)}")
        pair = f"{number:04d}"
        energies = []
        for index, record in enumerate(records, start=1):
            where = f"{path}: structure {index}"
            atoms = to_atoms(record, where)
            for label, method in (params["tabulated"] or {}).items():
                atoms.info[f"ref_energy:{label}"] = units.convert(*energy(record, method, where), "eV")
            energies.append(energy(record, params["reference"], where))
            molecules[f"{pair}/{index}"] = atoms
        charge = molecules[f"{pair}/1"].info["charge"]
        if energies[0].unit != energies[1].unit:
            raise OmniBenchError(f"{path}: the two energies are in {energies[0].unit} and {energies[1].unit}")
        reactions.append(Reaction(pair, {f"{pair}/1": -1.0, f"{pair}/2": 1.0},
                                  Quantity(energies[1].value - energies[0].value, energies[0].unit),
                                  {"charge": "neutral" if charge == 0 else f"charge {charge:+d}"}))
    return molecule_items(molecules, reactions, params["folder"])
