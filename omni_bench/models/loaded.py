"""A model variant turned into a working calculator, behind the small interface protocols use.

Protocols ask for energies of structures; this adapter puts charge and spin from ``Atoms.info`` where the
model takes them (and notes where it cannot), boxes molecules for models that need a cell, adds D3, and
turns non-finite output into an error so that the runner records a failure instead of a number.
"""

from __future__ import annotations

import importlib
import inspect
import math

from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.calculators.mixing import SumCalculator

from ..errors import OmniBenchError
from .factories import dftd3_bj, resolve_device
from .registry import ModelVariant

CHARGE_SPIN_IGNORED = "charge/spin not passed: the model does not accept them"


class NonFiniteResult(RuntimeError):
    """The model returned NaN or infinity."""


def import_factory(spec: str):
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise OmniBenchError(f"cannot import {module_name!r} for model factory {spec!r}: {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise OmniBenchError(f"module {module_name!r} has no {attr!r} (model factory {spec!r})") from None


class LoadedModel:
    """A ready calculator plus what protocols need: ``energy(atoms)`` and ``attach(atoms)``."""

    def __init__(self, variant: ModelVariant, device: str = "auto"):
        self.variant = variant
        self.device = resolve_device(device)
        self.base_calc = self._build()
        self.calc: Calculator = self.base_calc
        if variant.d3:
            functional = variant.card.channel_info(variant.channel).d3_functional
            self.calc = SumCalculator([self.base_calc, dftd3_bj(functional)])
        self.notes: set[str] = set()

    def _build(self) -> Calculator:
        card, variant = self.variant.card, self.variant
        factory = import_factory(card.factory)
        checkpoint = card.resolve_checkpoint()
        kwargs = {k: (str(checkpoint) if v == "{checkpoint}" else v) for k, v in variant.args.items()}
        if variant.channel is not None:
            kwargs[card.channel_arg] = variant.channel
        try:
            params = inspect.signature(factory).parameters
            if "device" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
                kwargs.setdefault("device", self.device)
        except (TypeError, ValueError):
            pass
        try:
            return factory(**kwargs)
        except Exception as exc:  # any failure to build the model is the user's to fix, in one line
            raise OmniBenchError(f"model {variant.label}: {card.factory}(**{kwargs}) failed: "
                                 f"{type(exc).__name__}: {exc}") from None

    def attach(self, atoms: Atoms) -> Atoms:
        """A copy of ``atoms`` ready for this model, with the calculator attached."""
        atoms = atoms.copy()
        self._apply_charge_spin(atoms)
        box = self.variant.card.molecule_box
        if box and not atoms.pbc.any():
            atoms.center(vacuum=box)
        atoms.calc = self.calc
        return atoms

    def energy(self, atoms: Atoms) -> float:
        """Potential energy in eV; raises ``NonFiniteResult`` for NaN or infinity."""
        value = float(self.attach(atoms).get_potential_energy())
        if not math.isfinite(value):
            raise NonFiniteResult(f"model returned a non-finite energy ({value})")
        return value

    def _apply_charge_spin(self, atoms: Atoms) -> None:
        charge = int(atoms.info.get("charge", 0))
        multiplicity = int(atoms.info.get("spin", 1))
        routes = self.variant.card.charge_spin
        if routes is None:
            if charge != 0 or multiplicity != 1:
                self.notes.add(CHARGE_SPIN_IGNORED)
            return
        spin = multiplicity if routes.get("spin_convention", "multiplicity") == "multiplicity" else multiplicity - 1
        self.base_calc.set(**{routes["charge"]: charge, routes["spin"]: spin})
