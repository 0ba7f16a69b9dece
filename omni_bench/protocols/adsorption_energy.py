"""Adsorption energies from reaction stoichiometry: E_ads = sum_i coefficient_i * E_i over the gas
references, the clean slab and the adsorbate+slab structure (CatBench / Catalysis-Hub convention).

Items are structures; ``compute`` gives each one's energy, ``derive`` combines them into reactions (see
loaders/mamun_noble.py for why). With ``relax: false`` energies are single points on the DFT geometries.
With ``relax: true`` every structure is first relaxed with the model (atoms fixed in the data stay fixed:
the bottom slab layers), as CatBench does, and each relaxed structure is checked for the failures that make
an adsorption energy meaningless, so that they are counted instead of hidden in the MAE:

- ``desorbed``: no adsorbate atom stays bonded to the surface: the shortest adsorbate-slab distance exceeds
  ``desorption_factor`` x the sum of the two covalent radii (DFT geometries here: 0.88-1.15);
- ``dissociated``: a bond inside the adsorbate (or a gas molecule) changes length by more than
  ``bond_change_threshold`` (a fraction; CatBench's bond_length_change_threshold is 0.2);
- ``site_moved``: the binding site changed: the set of slab atoms (with their periodic image) within
  ``site_tolerance`` x the shortest distance from the adsorbate's binding atom differs before and after,
  and that atom moved at least ``site_min_shift`` A parallel to the surface. Images matter: on a 2x2
  cell an fcc and an hcp hollow have the same three atom indices. The shift guards asymmetric sites,
  where a neighbour near the tolerance enters or leaves the set without the adsorbate going anywhere
  (Au OH*: 1.28 -> 1.22 x the shortest distance with a 0.05 A shift);
- ``surface_distorted``: a slab atom moved more than ``surface_displacement_threshold`` A (CatBench's
  disp_thrs is 0.5 A).

A reaction is an ``anomaly`` when any of its structures is flagged; ``adsorption_energy_normal`` is its
adsorption energy scored only for reactions that are not. Flags are scored as 0/1 against a reference of 0,
so their ``mean_error`` is the fraction of reactions flagged (the metric's ``n`` gives the count).
"""

from __future__ import annotations

import itertools

import numpy as np
from ase import Atoms
from ase.data import covalent_radii

from ..items import Item, Prediction, Quantity
from ..models.lockstep import RelaxSettings

PARAMS = {
    "relax": False,
    "optimizer": "FIRE",
    "fmax": 0.05,
    "max_steps": 500,
    "desorption_factor": 1.5,
    "bond_change_threshold": 0.2,
    "site_tolerance": 1.25,
    "site_min_shift": 0.3,
    "surface_displacement_threshold": 0.5,
}
FLAGS = ("desorbed", "dissociated", "site_moved", "surface_distorted")
QUANTITIES = {
    "energy": "eV",
    "adsorption_energy": "eV",
    "adsorption_energy_normal": "eV",
    "anomaly": "1",
    "not_converged": "1",
    "relax_steps": "1",
    **{flag: "1" for flag in FLAGS},
}
_BOND_FACTOR = 1.25  # pairs closer than 1.25 x the covalent radii sum count as bonded in the DFT geometry


def single_points(item: Item, params: dict) -> list[Atoms]:
    """The structure ``compute`` takes a single point of; none when it relaxes (the runner batches single
    points for models that can)."""
    return [] if params["relax"] else [item.structures[item.meta["kind"]]]


def relaxations(item: Item, params: dict) -> list[tuple[Atoms, RelaxSettings]]:
    """The relaxation ``compute`` asks for (the runner relaxes the items' structures together in lock-step
    for models that can, models/lockstep.py)."""
    return [(item.structures[item.meta["kind"]], _settings(params))] if params["relax"] else []


def _settings(params: dict) -> RelaxSettings:
    return RelaxSettings(params["optimizer"], params["fmax"], params["max_steps"])


def compute(item: Item, model, params: dict) -> dict[str, float]:
    kind = item.meta["kind"]
    initial = item.structures[kind]
    if not params["relax"]:
        return {"energy": model.energy(initial)}
    # The data's FixAtoms (bottom slab layers) stay with the structure and act in every optimiser step.
    relaxed = model.relax(initial, _settings(params))
    values = {"energy": relaxed.energy, "not_converged": float(not relaxed.converged),
              "relax_steps": float(relaxed.steps)}
    values.update({flag: float(v) for flag, v in check_relaxation(initial, relaxed.atoms, item, params).items()})
    return values


def check_relaxation(initial: Atoms, final: Atoms, item: Item, params: dict) -> dict[str, bool]:
    """The anomaly flags that apply to this kind of structure (gas: dissociation; slab: distortion)."""
    kind = item.meta["kind"]
    if kind == "gas":
        return {"dissociated": dissociated(initial, final, range(len(initial)), params["bond_change_threshold"])}
    adsorbate = item.meta.get("adsorbate_indices", [])
    slab = [i for i in range(len(initial)) if i not in adsorbate]
    flags = {"surface_distorted": surface_distorted(initial, final, slab, params["surface_displacement_threshold"])}
    if kind == "adslab":
        flags["desorbed"] = desorbed(final, adsorbate, slab, params["desorption_factor"])
        flags["dissociated"] = dissociated(initial, final, adsorbate, params["bond_change_threshold"])
        anchor, tolerance = binding_atom(initial, adsorbate, slab), params["site_tolerance"]
        flags["site_moved"] = (site(initial, anchor, slab, tolerance) != site(final, anchor, slab, tolerance)
                               and lateral_shift(initial, final, anchor) >= params["site_min_shift"])
    return flags


def scored_units(items: list[Item]) -> list[list[str]]:
    """Each reaction needs its structures: slab, adsorbate on slab, and the gas references."""
    return [list(reaction["stoichiometry"]) for item in items for reaction in item.meta.get("reactions", [])]


def derive(items: list[Item], results: dict, params: dict) -> list[Prediction]:
    """Reactions from structure energies; a reaction with a missing or failed structure gets None."""
    predictions = []
    for item in items:
        for reaction in item.meta.get("reactions", []):
            predictions += _reaction(reaction, results, params)
    return predictions


def _reaction(reaction: dict, results: dict, params: dict) -> list[Prediction]:
    rid, groups = reaction["id"], reaction["groups"]
    energy, error = 0.0, None
    flags = dict.fromkeys((*FLAGS, "not_converged"), 0.0)
    for structure_id, coefficient in reaction["stoichiometry"].items():
        stored = results.get(structure_id)
        if stored is None or stored.status != "ok":
            error = f"structure {structure_id}: " + ("not computed" if stored is None else str(stored.error))
            break
        energy += coefficient * stored.values["energy"]
        for flag in flags:
            flags[flag] = max(flags[flag], stored.values.get(flag, 0.0))
    value = None if error else energy
    out = [Prediction(rid, "adsorption_energy", value, reaction["reference"], groups, error)]
    if not params["relax"]:
        return out
    anomaly = max(flags[f] for f in FLAGS)
    zero = Quantity(0.0, "1")
    out += [Prediction(rid, flag, None if error else flags[flag], zero, groups, error) for flag in flags]
    out.append(Prediction(rid, "anomaly", None if error else anomaly, zero, groups, error))
    if error or not anomaly:
        out.append(Prediction(rid, "adsorption_energy_normal", value, reaction["reference"], groups, error))
    return out


def _image_shifts(atoms: Atoms) -> list[np.ndarray]:
    ranges = [(-1, 0, 1) if periodic else (0,) for periodic in atoms.pbc]
    return [np.array(s, dtype=float) @ atoms.cell.array for s in itertools.product(*ranges)]


def _radius_sum(atoms: Atoms, i: int, j: int) -> float:
    return float(covalent_radii[atoms.numbers[i]] + covalent_radii[atoms.numbers[j]])


def _distances(atoms: Atoms, i: int, others) -> list[tuple[float, int, int]]:
    """(distance, atom, image) from atom ``i`` to every periodic image (within one cell) of ``others``.

    Positions are used as stored (ASE optimisers do not wrap them), so an (atom, image) pair names the
    same neighbour before and after a relaxation."""
    shifts = _image_shifts(atoms)
    return [(float(np.linalg.norm(atoms.positions[j] + shift - atoms.positions[i])), j, k)
            for j in others for k, shift in enumerate(shifts)]


def binding_atom(atoms: Atoms, adsorbate, slab) -> int:
    """The adsorbate atom closest to the slab relative to covalent radii (C of CH3, O of OH)."""
    return min(adsorbate, key=lambda i: min(d / _radius_sum(atoms, i, j) for d, j, _ in _distances(atoms, i, slab)))


def site(atoms: Atoms, anchor: int, slab, tolerance: float) -> frozenset:
    """The slab atoms (with image) that atom ``anchor`` sits on: those within ``tolerance`` x the nearest."""
    distances = _distances(atoms, anchor, slab)
    nearest = min(d for d, _, _ in distances)
    return frozenset((j, k) for d, j, k in distances if d <= tolerance * nearest)


def lateral_shift(initial: Atoms, final: Atoms, index: int) -> float:
    """How far atom ``index`` moved parallel to the surface (the plane of the first two cell vectors)."""
    normal = np.cross(initial.cell[0], initial.cell[1])
    normal /= np.linalg.norm(normal)
    move = final.positions[index] - initial.positions[index]
    return float(np.linalg.norm(move - np.dot(move, normal) * normal))


def desorbed(atoms: Atoms, adsorbate, slab, factor: float) -> bool:
    return all(d > factor * _radius_sum(atoms, i, j) for i in adsorbate for d, j, _ in _distances(atoms, i, slab))


def dissociated(initial: Atoms, final: Atoms, atoms_in_molecule, threshold: float) -> bool:
    """A bond of the initial geometry stretched or shrank by more than ``threshold`` (a fraction)."""
    members = list(atoms_in_molecule)
    for i, j in itertools.combinations(members, 2):
        before = min(d for d, _, _ in _distances(initial, i, [j]))
        if before > _BOND_FACTOR * _radius_sum(initial, i, j):
            continue
        after = min(d for d, _, _ in _distances(final, i, [j]))
        if abs(after / before - 1.0) > threshold:
            return True
    return False


def surface_distorted(initial: Atoms, final: Atoms, slab, threshold: float) -> bool:
    slab = list(slab)
    return bool(np.max(np.linalg.norm(final.positions[slab] - initial.positions[slab], axis=1)) > threshold)
