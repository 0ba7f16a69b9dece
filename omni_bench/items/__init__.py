"""What loaders produce and protocols consume: one benchmark item and its reference values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from ase import Atoms


class Quantity(NamedTuple):
    """A number with its unit, so that no value travels without one."""

    value: float
    unit: str


@dataclass
class Item:
    """One unit of work that is computed, stored and resumed as a whole.

    ``structures`` maps a role (``complex``, ``monomer_1``, ``crystal``...) to a structure; charge and
    spin travel in ``Atoms.info['charge']`` and ``Atoms.info['spin']`` (spin multiplicity 2S+1).
    ``reference`` holds the reference values that are scored, ``groups`` labels used to split metrics
    (for example gas or region), ``meta`` anything a protocol's ``derive`` step needs.
    """

    id: str
    structures: dict[str, Atoms]
    reference: dict[str, Quantity] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)


@dataclass
class Prediction:
    """A model value for one scored quantity, in the protocol's unit, beside its reference.

    ``value`` is None when the items it depends on failed; ``error`` then says why.
    """

    id: str
    quantity: str
    value: float | None
    reference: Quantity | None  # None for quantities without a reference (timings, counts)
    groups: dict[str, str] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Entry:
    """One scored number: a model prediction against its reference, both in the task's unit."""

    id: str
    quantity: str
    predicted: float | None
    reference: float
    unit: str
    groups: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.predicted is None
