"""What a model returns is checked before anything uses it: one place for every path (the ASE calculator in
process or in a worker, batched energies, batched forces of lock-step relaxations).

Why: a wrong result that looks like a number is worse than a failure. Forces of shape (n+1, 3) full of zeros
once gave relaxations "converged" in 0 steps, stored as ok; a NaN energy gives a NaN metric. A result that is
not a finite real number of the right shape raises ``InvalidResult`` naming what was wrong, and the runner
records the structure's item as failed with that reason.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from ase.calculators.calculator import Calculator, all_changes


class InvalidResult(RuntimeError):
    """The model returned something that is not a result: not a real number, or an array of the wrong shape."""


class NonFiniteResult(InvalidResult):
    """The model returned NaN or infinity."""


def real_number(value: Any, what: str = "energy") -> float:
    """``value`` as a float when it is one real number (a Python or numpy number, or an array holding exactly
    one); NaN and infinity pass (``checked_energy`` refuses them)."""
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return float(value)
    array = _real_array(value, what)
    if array.size != 1 or array.ndim > 1:
        raise InvalidResult(f"model returned an array of shape {array.shape} as {what}, not a number")
    return float(array.item())


def checked_energy(value: Any, what: str = "energy") -> float:
    """A finite real number, as a float."""
    number = real_number(value, what)
    if not np.isfinite(number):
        raise NonFiniteResult(f"model returned a non-finite {what} ({number})")
    return number


def checked_forces(value: Any, n_atoms: int) -> np.ndarray:
    """Forces: finite real numbers of shape (n_atoms, 3)."""
    forces = _real_array(value, "forces")
    if forces.shape != (n_atoms, 3):
        raise InvalidResult(f"model returned forces of shape {forces.shape} for {n_atoms} atoms, not ({n_atoms}, 3)")
    if not np.isfinite(forces).all():
        raise NonFiniteResult("model returned non-finite forces")
    return forces


def checked_stress(value: Any) -> np.ndarray:
    """Stress: 6 finite Voigt components or a finite 3x3 tensor (kept as given: ASE converts a 3x3 one)."""
    stress = _real_array(value, "stress")
    if stress.shape not in ((6,), (3, 3)):
        raise InvalidResult(f"model returned stress of shape {stress.shape}, not (6,) or (3, 3)")
    if not np.isfinite(stress).all():
        raise NonFiniteResult("model returned a non-finite stress")
    return stress


def _real_array(value: Any, what: str) -> np.ndarray:
    """``value`` as a float64 array when it holds real numbers (numpy arrays, lists, CPU tensors)."""
    try:
        array = np.asarray(value)
    except Exception:  # an object numpy cannot read at all
        array = None
    if array is None or array.dtype.kind not in "fiu":
        kind = f"dtype {array.dtype}" if array is not None else type(value).__name__
        raise InvalidResult(f"model returned {what} of {kind}, not real numbers")
    return array.astype(np.float64, copy=False)


#: the results ASE reads as energies, forces and stress, and their checks
_CHECKS = {"energy": lambda v, n: checked_energy(v), "free_energy": lambda v, n: checked_energy(v, "free energy"),
           "forces": checked_forces, "stress": lambda v, n: checked_stress(v)}


def checked_results(results: dict[str, Any], n_atoms: int, wanted) -> dict[str, Any]:
    """``results`` with energies, forces and stress checked: a wanted one that is wrong raises; one that was not
    asked for and is wrong is left out (so that asking for it later fails, and only then)."""
    out = dict(results)
    for name, check in _CHECKS.items():
        if name not in out:
            continue
        try:
            out[name] = check(out[name], n_atoms)
        except InvalidResult:
            if name in wanted:
                raise
            del out[name]
    return out


class CheckedCalculator(Calculator):
    """The model's calculator behind ``checked_results``: what an optimiser, a protocol or matcalc reads from it
    has been checked. It asks the model through its ordinary ``get_property``, so the model's own caching and
    its reactions to changes apply as they would without it. ``answered`` (set by ``LoadedModel``) gives the
    checked results computed ahead in batches for exactly this structure, or None."""

    def __init__(self, model: Calculator):
        super().__init__()
        self.model = model
        self.implemented_properties = list(getattr(model, "implemented_properties", ()))
        self.answered = None

    def check_state(self, atoms, tol=1e-15):
        """Always a change: the model alone decides what it has cached (``set`` of charge and spin resets it,
        unseen from here, while the positions stay the same)."""
        return list(all_changes)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        ahead = self.answered(self.atoms) if self.answered is not None else None
        if ahead is not None and all(name in ahead for name in properties):
            self.results = dict(ahead)
            return
        for name in properties:
            self.model.get_property(name, self.atoms)
        self.results = checked_results(self.model.results, len(self.atoms), properties)
