"""Dataset loaders, one module each: ``load(files, params) -> list[Item]``.

``files`` maps each path the task file lists (relative to the data root) to its verified absolute path;
``params`` are the task file's ``dataset.params``. A loader attaches reference values with their units
(``Quantity``) and puts charge and spin in ``Atoms.info``. ``PARAMS`` lists the parameters it accepts.
"""

from pathlib import Path

from ..errors import OmniBenchError


def find_file(files: dict[str, Path], name: str, loader: str) -> Path:
    """The listed file whose name is ``name``, or an error saying the task file must list it."""
    for rel, path in files.items():
        if Path(rel).name == name:
            return path
    raise OmniBenchError(f"loader {loader} needs {name} in dataset.files")
