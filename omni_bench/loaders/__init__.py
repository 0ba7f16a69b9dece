"""Dataset loaders, one module each: ``load(files, params) -> list[Item]``.

``files`` maps each path the task file lists (relative to the data root) to its verified absolute path;
``params`` are the task file's ``dataset.params``. A loader attaches reference values with their units
(``Quantity``) and puts charge and spin in ``Atoms.info``. ``PARAMS`` lists the parameters it accepts.
"""

import csv
from pathlib import Path

from ..errors import OmniBenchError


def find_file(files: dict[str, Path], name: str, loader: str) -> Path:
    """The listed file whose name is ``name``, or an error saying the task file must list it."""
    for rel, path in files.items():
        if Path(rel).name == name:
            return path
    raise OmniBenchError(f"loader {loader} needs {name} in dataset.files")



def read_table(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV file; leading '#' lines (a shipped table's provenance header) are skipped."""
    with open(path, newline="", encoding="utf-8") as fh:
        lines = fh.readlines()
    header = 0
    while header < len(lines) and lines[header].startswith("#"):
        header += 1
    return [(header + i + 2, row) for i, row in enumerate(csv.DictReader(lines[header:]))]


def reaction_rows(files: dict[str, Path], table: str) -> list[tuple[str, dict[str, str]]]:
    """(where, row) of a reaction table the task lists (``where`` names the table, row and reaction, for
    errors); an error naming ``dataset.params.reactions`` when the task does not list it."""
    if table not in files:
        raise OmniBenchError(f"dataset.params.reactions: {table} is not among the task's dataset.tables or "
                             "dataset.files")
    return [(f"{table} row {line} (reaction {row.get('reaction_id')})", row) for line, row in read_table(files[table])]
