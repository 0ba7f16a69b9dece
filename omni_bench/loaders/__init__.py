"""Dataset loaders, one module each: ``load(files, params) -> list[Item]``.

``files`` maps each path the task file lists (relative to the data root) to its verified absolute path;
``params`` are the task file's ``dataset.params``. A loader attaches reference values with their units
(``Quantity``) and puts charge and spin in ``Atoms.info``. ``PARAMS`` lists the parameters it accepts.
"""
