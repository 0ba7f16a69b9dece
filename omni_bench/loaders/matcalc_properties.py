"""Crystal property sets of matcalc's benchmarks: MP binaries with elastic moduli, Alexandria binaries with
phonon heat capacities (``benchmark_data/*.json.gz``: a list of ``{mp_id, formula, structure, <property>...}``).

One item per crystal (role ``crystal``, id = ``mp_id``); ``properties`` maps each scored quantity to the
record field and its unit. Each crystal's element class (``groups['class']``, see ``element_class``) is
what ``subset`` stratifies by: ``{per_class: k, max_sites: n}`` keeps, in each class, the first ``k``
crystals of at most ``n`` sites in the order of sha256(mp_id), a fixed pseudo-random order that does not
depend on the file's order or on anything a model computes; the subset is listed smallest cell first, so that
``--limit N`` takes the cheapest. Without ``subset``, every crystal, in the file's order.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import OmniBenchError
from ..items import Item, Quantity
from ._structure_dicts import atoms_from_structure_dict, read_json_gz

PARAMS = {"file": "", "properties": {}, "subset": None}
#: choose the crystals kept, never how a crystal is computed (see identity.py)
REFERENCE_AND_SELECTION_PARAMS = ("subset",)
#: element classes by the anion-like element of a binary, first match wins; no match: ``intermetallic``
ELEMENT_CLASSES = (
    ("halide", {"F", "Cl", "Br", "I"}),
    ("oxide", {"O"}),
    ("chalcogenide", {"S", "Se", "Te"}),
    ("pnictide", {"N", "P", "As"}),
    ("boride-carbide-silicide", {"B", "C", "Si", "Ge"}),
    ("hydride", {"H"}),
)


def element_class(elements: set[str]) -> str:
    """The chemistry of a binary: which non-metal it has (halide before oxide before chalcogenide ...)."""
    for name, members in ELEMENT_CLASSES:
        if elements & members:
            return name
    return "intermetallic"


def load(files: dict[str, Path], params: dict) -> list[Item]:
    params = {**PARAMS, **params}
    if params["file"] not in files:
        raise OmniBenchError(f"dataset.params.file: {params['file']!r} is not among the task's dataset.files")
    if not params["properties"]:
        raise OmniBenchError("dataset.params.properties: name at least one quantity as {quantity: [field, unit]}")
    path = files[params["file"]]
    items = [_item(record, index, path, params["properties"]) for index, record in enumerate(read_json_gz(path))]
    if len({i.id for i in items}) != len(items):
        raise OmniBenchError(f"{path}: mp_id values are not unique")
    return items if params["subset"] is None else stratified_subset(items, **_subset_params(params["subset"]))


def stratified_subset(items: list[Item], per_class: int, max_sites: int) -> list[Item]:
    """Per element class, the first ``per_class`` items of at most ``max_sites`` sites by sha256 of the id;
    returned by number of sites, then in that order."""
    chosen = []
    for name in [name for name, _ in ELEMENT_CLASSES] + ["intermetallic"]:
        pool = [i for i in items if i.groups["class"] == name and len(i.structures["crystal"]) <= max_sites]
        chosen += sorted(pool, key=_hash_order)[:per_class]
    return sorted(chosen, key=lambda i: (len(i.structures["crystal"]), _hash_order(i)))


def _hash_order(item: Item) -> str:
    return hashlib.sha256(item.id.encode()).hexdigest()


def _subset_params(subset) -> dict:
    if not isinstance(subset, dict) or set(subset) != {"per_class", "max_sites"} or \
            not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in subset.values()):
        raise OmniBenchError(f"dataset.params.subset must be {{per_class: k, max_sites: n}} with positive "
                             f"integers (or absent for every crystal), got {subset!r}")
    return subset


def _item(record: dict, index: int, path: Path, properties: dict) -> Item:
    where = f"{path}: entry {index} ({record.get('mp_id', '?') if isinstance(record, dict) else '?'})"
    try:
        material_id = str(record["mp_id"])
        atoms = atoms_from_structure_dict(record["structure"], where)
        reference = {quantity: Quantity(float(record[field]), unit) for quantity, (field, unit) in properties.items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise OmniBenchError(f"{where}: missing or bad field ({type(exc).__name__}: {exc})") from None
    elements = set(atoms.get_chemical_symbols())
    return Item(id=material_id, structures={"crystal": atoms}, reference=reference,
                groups={"class": element_class(elements)},
                meta={"formula": record.get("formula"), "n_sites": len(atoms)})
