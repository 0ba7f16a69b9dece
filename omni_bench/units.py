"""Every unit conversion in omni-bench happens here, and only here.

A unit is a base unit with an optional normalisation suffix: ``eV``, ``kcal/mol``, ``eV/atom``,
``kJ/mol/molecule``, ``A^3/atom``, ``GPa``.  Values convert between base units of the same
dimension; the normalisation (per atom, per molecule) must match, because converting it would
need a count this module does not have.
"""

from __future__ import annotations

from ase import units as _ase

from .errors import OmniBenchError

#: dimension -> {unit: size of the unit in the dimension's first unit}
_UNITS: dict[str, dict[str, float]] = {
    "energy": {
        "eV": 1.0,
        "meV": 1e-3,
        "Hartree": _ase.Hartree,
        "Ry": _ase.Rydberg,  # Quantum ESPRESSO-style totals (the Schrodinger organic-crystal sets)
        "kcal/mol": _ase.kcal / _ase.mol,
        "kJ/mol": _ase.kJ / _ase.mol,
    },
    "volume": {"A^3": 1.0, "bohr^3": _ase.Bohr**3},
    "pressure": {"GPa": 1.0, "eV/A^3": 1.0 / _ase.GPa},
    "length": {"A": 1.0, "bohr": _ase.Bohr},
    # Forces (training labels of the reference model): quantum chemistry codes give Hartree/bohr gradients.
    "force": {"eV/A": 1.0, "meV/A": 1e-3, "Hartree/bohr": _ase.Hartree / _ase.Bohr},
    "angle": {"deg": 1.0},
    # Heat capacity per mole of the cell it refers to (phonopy's thermal properties: per mole of primitive cells).
    # kB per cell is R = 8.314 J/K/mol; 3 kB per atom is the classical (Dulong-Petit) limit.
    "heat capacity": {"J/K/mol": 1.0, "kB": _ase.kB * _ase.mol / _ase.J},
    "dimensionless": {"1": 1.0},
    # Simulated time per wall-clock time (MD speed); fs/s is what a timestep times steps per second gives.
    "rate": {"ns/day": 1.0, "fs/s": 1e-6 * 86400},
    # Timing benchmarks (md-speed): wall time per MD step (with /atom: per atom and step), steps per
    # second, and memory (MB and GB decimal; B bytes; KiB, MiB, GiB binary as /proc and torch report).
    "time per step": {"s/step": 1.0, "ms/step": 1e-3, "us/step": 1e-6},
    "step rate": {"steps/s": 1.0},
    "memory": {"MB": 1.0, "GB": 1e3, "B": 1e-6, "KiB": 2**10 / 1e6, "MiB": 2**20 / 1e6, "GiB": 2**30 / 1e6},
}
_NORMALISATIONS = ("", "/atom", "/molecule", "/H2O")
_DIMENSION = {unit: dim for dim, table in _UNITS.items() for unit in table}


def _split(unit: str) -> tuple[str, str]:
    for suffix in _NORMALISATIONS[1:]:
        if unit.endswith(suffix) and unit[: -len(suffix)] in _DIMENSION:
            return unit[: -len(suffix)], suffix
    if unit in _DIMENSION:
        return unit, ""
    raise OmniBenchError(f"unknown unit {unit!r}; known: {', '.join(known_units())}")


def known_units() -> list[str]:
    """Every base unit, without normalisation suffixes."""
    return sorted(_DIMENSION)


def check_unit(unit: str) -> str:
    """Return ``unit`` if omni-bench knows it, else raise with the list of known ones."""
    _split(unit)
    return unit


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """Convert ``value`` from one unit to another of the same dimension and normalisation."""
    if from_unit == to_unit:
        return float(value)
    base_from, norm_from = _split(from_unit)
    base_to, norm_to = _split(to_unit)
    dim_from, dim_to = _DIMENSION[base_from], _DIMENSION[base_to]
    if dim_from != dim_to or norm_from != norm_to:
        raise OmniBenchError(f"cannot convert {from_unit!r} to {to_unit!r}: different dimensions")
    table = _UNITS[dim_from]
    return float(value) * table[base_from] / table[base_to]
