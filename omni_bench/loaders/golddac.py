"""GoldDAC validation split (DAC-SIM): CO2/H2O in 20 MOFs, PBE+D3 energies of complexes, frameworks and gases.

Every frame becomes an item of its own (protocol ``interaction_energy_shared``): the 20 bare frameworks and
2 gas molecules are computed once and subtracted from the 240 complexes in ``derive``, instead of once per
complex. The reference interaction energy is E(complex) - E(framework) - E(gas) from the file's
``REF_energy`` (eV); each structure also carries that energy as ``atoms.info['ref_energy:PBE+D3']`` for the
tabulated model.

Frame names read ``<MOF>_<gas>_<region>_<site>_<distance>``: region R/E/P = repulsion/equilibrium/
weak-attraction, site A/N = aligned/non-aligned (DAC-SIM tutorial); bare frameworks are ``<MOF>-CO2_fram``
(one per MOF, used for both gases), gases ``CO2_gas`` and ``H2O_gas``; ``tags`` mark gas atoms (1).
Items come gases first, then MOF by MOF (smallest first), each framework before its complexes, so that any
``--limit`` prefix is self-contained and cheap.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.geometry import get_distances
from ase.io import read

from ..errors import OmniBenchError
from ..items import Item, Quantity

PARAMS = {"gases": ["CO2", "H2O"]}
REF_KEY = "ref_energy:PBE+D3"
DATA_FILE = "GoldDAC/val.xyz"
REGIONS = {"R": "repulsion", "E": "equilibrium", "P": "weak_attraction"}
SITES = {"A": "aligned", "N": "non_aligned"}
#: largest displacement (A) at which a complex's framework atoms count as the bare framework's geometry (file
#: precision is 1e-8 A; the CO2 complexes match to 0, the closest H2O ones are 0.006 A off)
SAME_GEOMETRY_TOL = 1e-4
_COMPLEX = re.compile(r"^(?P<mof>.+)_(?P<gas>CO2|H2O)_(?P<region>[REP])_(?P<site>[AN])_(?P<distance>[0-9.\-]+)$")


def load(files: dict[str, Path], params: dict) -> list[Item]:
    path = files[DATA_FILE]
    gases_wanted = list(params.get("gases") or PARAMS["gases"])
    unknown = set(gases_wanted) - {"CO2", "H2O"}
    if unknown:
        raise OmniBenchError(f"dataset.params.gases: unknown gas {sorted(unknown)}; GoldDAC has CO2 and H2O")
    frames = read(path, ":")
    frameworks, gases, complexes = {}, {}, []
    for index, frame in enumerate(frames):
        name = str(frame.info.get("name", ""))
        if "REF_energy" not in frame.info:
            raise OmniBenchError(f"{path}: frame {index} ({name!r}) has no info field 'REF_energy'")
        if name.endswith("-CO2_fram"):
            frameworks[str(frame.info["group"])] = frame
        elif name.endswith("_gas"):
            gases[name.removesuffix("_gas")] = frame
        elif _COMPLEX.match(name):
            complexes.append(frame)
        else:
            raise OmniBenchError(f"{path}: frame {index} has an unrecognised name {name!r}")

    by_mof: dict[str, list[Item]] = {}
    for frame in complexes:
        item = _complex_item(path, frame, frameworks, gases)
        if item.groups["gas"] in gases_wanted:
            by_mof.setdefault(str(frame.info["group"]), []).append(item)
    items = [_single(f"{gas}_gas", gases[gas], {"role": "gas"}) for gas in gases_wanted]
    for mof in sorted(by_mof, key=lambda m: (len(frameworks[m]), m)):
        items.append(_single(frameworks[mof].info["name"], frameworks[mof], {"role": "framework"}))
        items.extend(by_mof[mof])
    return items


def _clean(frame: Atoms) -> Atoms:
    """Positions, cell and the tabulated energy only: the file's forces and tags are not model input."""
    atoms = Atoms(numbers=frame.numbers, positions=frame.positions, cell=frame.cell, pbc=frame.pbc)
    atoms.info[REF_KEY] = float(frame.info["REF_energy"])
    return atoms


def _single(item_id: str, frame: Atoms, groups: dict[str, str]) -> Item:
    return Item(id=str(item_id), structures={"structure": _clean(frame)}, groups=groups)


def _complex_item(path: Path, frame: Atoms, frameworks: dict[str, Atoms], gases: dict[str, Atoms]) -> Item:
    name = frame.info["name"]
    parts = _COMPLEX.match(name).groupdict()
    mof, gas_name = str(frame.info["group"]), parts["gas"]
    if mof not in frameworks:
        raise OmniBenchError(f"{path}: complex {name!r} belongs to {mof!r}, which has no '{mof}-CO2_fram' frame")
    if gas_name not in gases:
        raise OmniBenchError(f"{path}: complex {name!r} needs frame '{gas_name}_gas', which is missing")
    framework, gas = frameworks[mof], gases[gas_name]
    if "tags" not in frame.arrays:
        raise OmniBenchError(f"{path}: complex {name!r} has no 'tags' array marking its gas atoms")
    host, guest = frame[frame.arrays["tags"] == 0], frame[frame.arrays["tags"] == 1]
    if Counter(host.numbers) != Counter(framework.numbers) or Counter(guest.numbers) != Counter(gas.numbers):
        raise OmniBenchError(f"{path}: complex {name!r} ({frame.get_chemical_formula()}) is not framework "
                             f"{framework.get_chemical_formula()} + gas {gas.get_chemical_formula()}")
    reference = frame.info["REF_energy"] - framework.info["REF_energy"] - gas.info["REF_energy"]
    return Item(
        id=name,
        structures={"structure": _clean(frame)},
        reference={"interaction_energy": Quantity(float(reference), "eV")},
        groups={"gas": gas_name, "region": REGIONS[parts["region"]], "site": SITES[parts["site"]],
                "metal": str(frame.info.get("metal", "")), "mof": mof,
                "framework_geometry": _framework_geometry(host, framework)},
        meta={"fragments": [framework.info["name"], f"{gas_name}_gas"], "distance_label": parts["distance"]},
    )


def _framework_geometry(host: Atoms, framework: Atoms) -> str:
    """'same' when every framework atom of the complex sits on a bare-framework atom of the same element.

    In the validation split this holds for every CO2 complex and for no H2O complex: the H2O complexes were
    built on another framework geometry, which the split does not include.
    """
    if not np.allclose(host.cell.array, framework.cell.array, atol=1e-6):
        return "different"
    _, distances = get_distances(host.positions, framework.positions, cell=host.cell, pbc=host.pbc)
    nearest = distances.argmin(axis=1)
    same = (distances.min(axis=1).max() <= SAME_GEOMETRY_TOL and len(set(nearest)) == len(host)
            and bool(np.all(host.numbers == framework.numbers[nearest])))
    return "same" if same else "different"
