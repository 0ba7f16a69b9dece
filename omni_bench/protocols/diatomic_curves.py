"""Dimer curves: a pair of atoms from ``r_min`` to ``r_max``, and whether the curve is physical.

Per item (a pair of elements, ``loaders/diatomics.py``) the dimer is computed (energy and forces) on
``points`` distances spaced geometrically from ``r_min`` to ``r_max`` (a constant ratio between neighbours:
dense where the curve is steep), alone in space (or in the box the model card asks for), and each isolated
atom once. From the curve E(r):

- ``spurious_minima``: local minima of E(r) beyond the first, over the whole grid. As MLIP Arena counts the
  sign flips of the energy difference ("energy-diff-flip-times"), energy steps smaller than ``energy_noise``
  (1 meV there) are dropped first, so float noise on the flat tail is no minimum. ``spurious_minima_bonding``
  counts them over MLIP Arena's range only (r >= 0.9 x the pair's mean covalent radius, below), where
  molecules and solids live; the difference is the holes at short range;
- ``no_repulsive_wall``: 1 unless E rises (no step down by more than ``energy_noise``) from its lowest point
  all the way in to ``r_min``, and ends at least ``wall_height`` above it: a curve that collapses at short
  range, or falls on the way in from its well, has no wall (a hole deeper than the well, walled off again
  at shorter range, is counted among the spurious minima instead);
- ``force_energy_deviation``: at every ``consistency_every``-th distance the force on the second atom along
  the bond, F (positive: apart), against -dE/dr from a central difference of two extra energies at
  r (1 +/- ``consistency_step``): the median of |F + dE/dr| / max(|F|, |dE/dr|, 1 eV/A). MLIP Arena's
  "conservation deviation" is the mean of |F + dE/dr| with dE/dr from the curve itself; a relative measure,
  a local difference and the median are needed here, where a curve can reach 1e10 eV below 0.5 A and turn
  there too sharply for any difference step at one or two distances;
- ``tortuosity``: MLIP Arena's smoothness measure (``mlip_arena/tasks/diatomics/analysis.py``; Chiang et al.,
  "MLIP Arena", ICLR 2025 AI4Mat workshop) over MLIP Arena's range, r >= 0.9 x the mean covalent radius of the
  pair (ASE's covalent radii): the total variation of E(r), sum |E(r_i+1) - E(r_i)|, over the rise from the
  minimum to both ends, |E(r_max) - E_min| + (E(r_start) - E_min); 1 for a curve with one minimum and no
  wiggle, more for every oscillation (over the whole grid the wall's height would swamp it);
- ``far_field_energy``: E(r_max) - E(atom 1) - E(atom 2), the energy of the pair at ``r_max`` against the
  isolated atoms (left out, with a note, where the model cannot compute a lone atom);
- ``unphysical``: 1 when any of these fails its threshold (any spurious minimum; no wall;
  ``max_force_energy_deviation``, ``max_tortuosity``, ``max_far_field_energy``);
- ``curve_energy``: every point of the curve, E(r) minus the isolated atoms (or minus E(r_max) where they
  failed), unscored, for the report's plots (one prediction per distance, id ``A-B@r``);
- ``not_covered``: 1 for a pair with an element the model does not cover, 0 otherwise (a count, unscored
  against any ideal).

Element coverage: the task's loader gives the candidate elements; a pair is computed only where the model
covers both. What the model says decides (``declared_elements``: a SevenNet calculator's ``type_map``, a MACE
calculator's ``z_table``); a model that says nothing is probed (``probe_element``): an element is covered when
a lone atom of it, or else a dimer at twice its covalent radius, computes without an exception. A pair with an
element not covered is stored with ``not_covered`` = 1 and no curve, with a note naming the element and why:
it is counted and named in the results, but is no failure and no scored item (the leaderboard compares the
models on the pairs each scored).
"""

from __future__ import annotations

import weakref

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, covalent_radii

from ..errors import ItemTimeout, StopTask
from ..items import Item, Prediction
from ..store import StoredItem
from ._physicality import evaluate, ideal_predictions

PARAMS = {
    "r_min": 0.1,
    "r_max": 6.0,
    "points": 120,
    "consistency_every": 6,
    "consistency_step": 1e-3,
    "energy_noise": 1e-3,
    "wall_height": 1.0,
    "max_tortuosity": 1.1,
    "max_force_energy_deviation": 0.05,
    "max_far_field_energy": 0.043,
}
QUANTITIES = {
    "unphysical": "1",
    "spurious_minima": "1",
    "spurious_minima_bonding": "1",
    "no_repulsive_wall": "1",
    "force_energy_deviation": "1",
    "tortuosity": "1",
    "far_field_energy": "eV",
    "curve_energy": "eV",
    "not_covered": "1",
}
#: ideal value of each scored quantity
IDEALS = {"unphysical": 0.0, "spurious_minima": 0.0, "spurious_minima_bonding": 0.0, "no_repulsive_wall": 0.0,
          "force_energy_deviation": 0.0, "tortuosity": 1.0, "far_field_energy": 0.0}
#: a relative force deviation is measured against at least this force (eV/A), so that the flat tail's
#: tiny forces do not turn float noise into large relative errors
FORCE_FLOOR = 1.0
ISOLATED_ATOM_FAILED = "an isolated atom failed; far_field_energy left out and the curve is plotted against E(r_max)"
NOT_COVERED = "element not covered by the model, its pairs left out (not failed)"
#: per loaded model: {atomic number: (covered, how it was found)}, so each element is probed once per run
_COVERAGE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def distances(params: dict) -> np.ndarray:
    """The grid: ``points`` distances from ``r_min`` to ``r_max`` with a constant ratio between neighbours."""
    if not 0 < params["r_min"] < params["r_max"] or int(params["points"]) < 5:
        raise ValueError(f"diatomic_curves: need 0 < r_min < r_max and points >= 5, got r_min={params['r_min']}, "
                         f"r_max={params['r_max']}, points={params['points']}")
    return np.geomspace(float(params["r_min"]), float(params["r_max"]), int(params["points"]))


def compute(item: Item, model, params: dict) -> dict[str, float]:
    first, second = item.structures["atom_1"], item.structures["atom_2"]
    symbols = first.get_chemical_symbols() + second.get_chemical_symbols()
    uncovered = False
    for symbol in dict.fromkeys(symbols):
        covered, how = element_coverage(model, symbol)
        if not covered:
            model.notes.add(f"{NOT_COVERED}: {symbol} ({how})")
            uncovered = True
    if uncovered:
        return {"not_covered": 1.0}
    rs = distances(params)
    isolated = None
    try:
        isolated = model.energy(first) + model.energy(second)
    except Exception as exc:  # a model may not compute a lone atom (no neighbours): the curve still counts
        model.notes.add(f"{ISOLATED_ATOM_FAILED} ({type(exc).__name__}: {str(exc)[:120]})")
    probes = consistency_indices(rs, params)
    step = float(params["consistency_step"])
    at = np.concatenate([rs, rs[probes] * (1 + step), rs[probes] * (1 - step)])
    dimers = [Atoms(symbols, positions=[[0.0, 0.0, 0.0], [0.0, 0.0, r]]) for r in at]
    curve = _batched_curve(model, dimers) or [evaluate(model, dimer)[:2] for dimer in dimers]
    energies = np.array([energy for energy, _ in curve])
    forces = np.array([f[1, 2] for _, f in curve])  # along the bond, on the second atom: positive pushes apart
    n, m = len(rs), len(probes)
    slopes = (energies[n:n + m] - energies[n + m:]) / (2 * step * rs[probes])
    bonding = rs >= 0.9 * (covalent_radii[first.numbers[0]] + covalent_radii[second.numbers[0]]) / 2
    values = curve_checks(rs, energies[:n], forces[:n], slopes, isolated, params, probes, bonding)
    zero = isolated if isolated is not None else energies[n - 1]
    values.update({f"curve_energy_{i:03d}": float(e - zero) for i, e in enumerate(energies[:n])})
    values["not_covered"] = 0.0
    return values


def element_coverage(model, symbol: str) -> tuple[bool, str]:
    """Whether ``model`` covers the element, and how that was found (its own list, or a probe)."""
    try:
        known = _COVERAGE.setdefault(model, {})
    except TypeError:  # a model object without weak references: probed every time
        known = {}
    number = atomic_numbers[symbol]
    if number not in known:
        declared = declared_elements(getattr(model, "base_calc", None))
        if declared is not None:
            known[number] = (number in declared, f"not among the {len(declared)} elements of the model's own list")
        else:
            known[number] = probe_element(model, symbol)
    return known[number]


def declared_elements(calc) -> set[int] | None:
    """The atomic numbers a calculator says it covers: a SevenNet calculator's ``type_map`` ({Z: index}), a
    MACE calculator's ``z_table.zs``; None where it says nothing (then the element is probed)."""
    type_map = getattr(calc, "type_map", None)
    if isinstance(type_map, dict) and type_map and all(isinstance(z, int) for z in type_map):
        return set(type_map)
    zs = getattr(getattr(calc, "z_table", None), "zs", None)
    if zs is not None and len(zs):
        return {int(z) for z in zs}
    return None


def probe_element(model, symbol: str) -> tuple[bool, str]:
    """Covered when a lone atom computes, or else (a model that needs a neighbour) a dimer at twice the
    covalent radius; not covered, with the lone atom's error, when both raise."""
    try:
        model.energy(Atoms(symbol, positions=[[0.0, 0.0, 0.0]]))
        return True, "a lone atom computes"
    except (ItemTimeout, StopTask):  # the harness stopping the item, not the model failing
        raise
    except Exception as lone:  # the probe: an exception says the element is not covered (checked once more)
        error = f"probe: {type(lone).__name__}: {str(lone)[:120]}"
    bond = 2 * float(covalent_radii[atomic_numbers[symbol]])
    try:
        model.energy(Atoms([symbol, symbol], positions=[[0.0, 0.0, 0.0], [0.0, 0.0, bond]]))
        return True, "a dimer computes (a lone atom does not)"
    except (ItemTimeout, StopTask):  # the harness stopping the item, not the model failing
        raise
    except Exception:  # both probes raised: not covered, with the lone atom's error as the reason
        return False, error


def consistency_indices(rs: np.ndarray, params: dict) -> np.ndarray:
    """The grid points where the force is checked against a local difference of the energy."""
    every = int(params["consistency_every"])
    if every < 1 or not 0 < params["consistency_step"] < 0.1:
        raise ValueError("diatomic_curves: params.consistency_every must be >= 1 and consistency_step in (0, 0.1)")
    return np.arange(0, len(rs), every)


def _batched_curve(model, dimers: list[Atoms]) -> list[tuple[float, np.ndarray]] | None:
    """Energies and forces of the whole curve in one batch, for models that compute forces in batches
    (``LoadedModel.batched_forces``: the same network as their calculator); None where they cannot, and the
    curve goes through the calculator point by point."""
    if not getattr(model, "batched_forces", False):
        return None
    try:
        return model.energies_forces([model.attach(dimer) for dimer in dimers])
    except Exception as exc:  # the batch failed: the calculator computes each point, and fails where it must
        model.notes.add(f"batched curve failed, computed point by point ({type(exc).__name__}: {str(exc)[:120]})")
        return None


def curve_checks(rs: np.ndarray, energies: np.ndarray, forces: np.ndarray, slopes: np.ndarray,
                 isolated: float | None, params: dict, probes: np.ndarray | None = None,
                 bonding: np.ndarray | None = None) -> dict[str, float]:
    """The checks of one curve, as the module docstring defines them: distances ascending, energies in eV,
    forces along the bond on the second atom in eV/A, ``slopes`` dE/dr (eV/A) at the grid points ``probes``
    (default: all), tortuosity over the points ``bonding`` (default: all)."""
    noise = params["energy_noise"]
    probes = np.arange(len(rs)) if probes is None else probes
    bonding = np.ones(len(rs), dtype=bool) if bonding is None else bonding
    values = {
        "spurious_minima": float(max(0, count_minima(energies, noise) - 1)),
        "spurious_minima_bonding": float(max(0, count_minima(energies[bonding], noise) - 1)),
        "no_repulsive_wall": 0.0 if has_repulsive_wall(energies, noise, params["wall_height"]) else 1.0,
        "force_energy_deviation": force_energy_deviation(forces[probes], slopes),
        "tortuosity": tortuosity(energies[bonding]) if bonding.sum() >= 3 else 1.0,
    }
    if isolated is not None:
        values["far_field_energy"] = float(energies[-1] - isolated)
    failed = (values["spurious_minima"] > 0 or values["no_repulsive_wall"] > 0
              or values["force_energy_deviation"] > params["max_force_energy_deviation"]
              or values["tortuosity"] > params["max_tortuosity"]
              or abs(values.get("far_field_energy", 0.0)) > params["max_far_field_energy"])
    values["unphysical"] = 1.0 if failed else 0.0
    return values


def _minima(energies: np.ndarray, noise: float) -> list[int]:
    """Grid indices of the interior local minima: a fall followed by a rise, steps below ``noise`` ignored
    (each minimum placed at the last point of its fall)."""
    steps = np.diff(energies)
    kept = np.flatnonzero(np.abs(steps) >= noise)
    signs = np.sign(steps[kept])
    return [int(kept[k]) + 1 for k in range(len(kept) - 1) if signs[k] < 0 < signs[k + 1]]


def count_minima(energies: np.ndarray, noise: float) -> int:
    """Interior local minima of the curve, steps below ``noise`` ignored."""
    return len(_minima(energies, noise))


def has_repulsive_wall(energies: np.ndarray, noise: float, height: float) -> bool:
    """E rises, without a step down larger than ``noise``, from its lowest point in to the shortest distance,
    and by at least ``height``."""
    bottom = int(np.argmin(energies))
    inner = energies[: bottom + 1]  # shortest distance first, up to the minimum
    if bottom == 0 or inner[0] - inner[-1] < height:
        return False
    return bool(np.all(np.diff(inner) <= noise))  # falling towards the minimum: each step down, or flat


def force_energy_deviation(forces: np.ndarray, slopes: np.ndarray) -> float:
    """Median relative deviation of the force from -dE/dr (see the module docstring)."""
    scale = np.maximum(np.maximum(np.abs(forces), np.abs(slopes)), FORCE_FLOOR)
    return float(np.median(np.abs(forces + slopes) / scale))


def tortuosity(energies: np.ndarray) -> float:
    """MLIP Arena's tortuosity of a curve (any order of distances: the measure is symmetric)."""
    lowest = float(np.min(energies))
    rise = abs(energies[-1] - lowest) + (energies[0] - lowest)
    variation = float(np.sum(np.abs(np.diff(energies))))
    if variation == 0:  # a flat curve: nothing to call tortuous
        return 1.0
    return variation / max(rise, 1e-6)


def single_points(item: Item, params: dict) -> list[Atoms]:
    """Only the isolated atoms go through ``model.energy``; the curve needs forces too (``model.attach``)."""
    return [item.structures["atom_1"], item.structures["atom_2"]]


def derive(items: list[Item], results: dict[str, StoredItem], params: dict) -> list[Prediction]:
    """The checks against their ideals (``far_field_energy`` left out where the isolated atoms failed) for
    the pairs the model covers, ``not_covered`` (1 or 0) for every computed pair, and the curve's points,
    unscored, for the plots."""
    uncovered = {item.id for item in items if _not_covered(results.get(item.id))}
    predictions = ideal_predictions([item for item in items if item.id not in uncovered], results, QUANTITIES,
                                    IDEALS, optional=("far_field_energy",))
    rs = distances(params)
    for item in items:
        stored = results.get(item.id)
        if stored is None or stored.status != "ok":  # coverage unknown: a failed value, as every quantity's
            predictions.append(Prediction(item.id, "not_covered", None, None, dict(item.groups),
                                          stored.error if stored else "not computed"))
            continue
        # stored before coverage was recorded (no value): a computed curve, so covered
        predictions.append(Prediction(item.id, "not_covered", float(item.id in uncovered), None, dict(item.groups)))
        for i, r in enumerate(rs):
            value = stored.values.get(f"curve_energy_{i:03d}")
            if value is not None:
                predictions.append(Prediction(f"{item.id}@{r:.4f}", "curve_energy", value, None,
                                              {**item.groups, "pair": item.id}))
    return predictions


def _not_covered(stored: StoredItem | None) -> bool:
    return stored is not None and stored.status == "ok" and stored.values.get("not_covered", 0.0) > 0
