"""OpenFF torsion profiles: loader checks, the protocol against numbers computed straight from the source JSON and
against the paper's published statistics (tabulated wB97M-D3BJ energies), and real models on a slice."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from ase.data import covalent_radii
from ase.units import Bohr, Hartree, kcal, mol
from helpers import run_task, task_items

from omni_bench import units
from omni_bench.loaders.openff_torsions import elements_from_mapped_smiles
from omni_bench.protocols import torsion_profile
from omni_bench.store import StoredItem

TABULATED = "omni_bench.models.factories:tabulated"
WB97M_KEY = "key=ref_energy:wB97M-D3BJ"
DIR = "OpenFF_QM_torsion_benchmark"
REF_FILE = "ref_mp2_heavy-aug-cc-pvTQz_plus_dCCSDT_heavy-aug-cc-pvdz_single_points_data.json"
WB97M_FILE = "wb97m-d3bj_dzvp_single_points_data.json"
HARTREE_IN_KCAL_MOL = Hartree / (kcal / mol)


def _raw(data_root: Path, name: str) -> dict:
    return json.loads((data_root / DIR / name).read_text())


def _raw_profiles(data_root: Path, name: str) -> dict[str, np.ndarray]:
    """Relative energies (kcal/mol) of every profile, straight from a single-point JSON."""
    out = {}
    for key, record in _raw(data_root, name).items():
        energies = np.array(record["total energies"], dtype=float)
        out[key] = (energies - energies.min()) * HARTREE_IN_KCAL_MOL
    return out


def test_mapped_smiles_gives_elements_in_map_order():
    assert elements_from_mapped_smiles("[Cl:3][c:1]1[n+:2]([H:5])[nH:4]1") == ["C", "N", "Cl", "N", "H"]
    with pytest.raises(ValueError, match="without a map index"):
        elements_from_mapped_smiles("[C:1]([H:2])O")


def test_loader_units_charges_and_geometry(data_root):
    items = task_items("openff-torsions", data_root)
    raw = _raw(data_root, "MP2_heavy-aug-cc-pVTZ_torsiondrive_data.json")
    assert len(items) == 59
    assert Counter(i.groups["charge"] for i in items) == {"neutral": 31, "anion": 16, "cation": 12}
    for item in items:
        assert len(item.structures) == 24
        charge = int(raw[item.id]["metadata"]["mol_charge"])
        for n, (angle, atoms) in enumerate(zip(raw[item.id]["angles"], item.structures.values(), strict=True)):
            assert atoms.info["charge"] == charge and atoms.info["spin"] == 1
            assert atoms.info["dihedral_deg"] == angle
            # Angstrom in the structures, bohr in the source.
            frame = np.array(raw[item.id]["final_geometries"][n])
            np.testing.assert_allclose(atoms.positions, frame * Bohr, atol=1e-12)
            # A wrong element order would leave atoms without a bonded neighbour or put them on top of each other.
            distances = atoms.get_all_distances() + np.eye(len(atoms)) * 99
            radii = covalent_radii[atoms.numbers]
            assert (distances > 0.6 * (radii[:, None] + radii[None, :])).all(), item.id
            assert ((distances < 1.2 * (radii[:, None] + radii[None, :])).any(axis=1)).all(), item.id
        assert all(q.unit == "Hartree" for q in item.reference.values())


def test_tabulated_wb97m_against_ccsdt_matches_direct_computation_and_paper(tmp_path, data_root):
    """The full protocol on tabulated wB97M-D3BJ energies gives what numpy gives on the raw JSON files."""
    [outcome] = run_task("openff-torsions", TABULATED, tmp_path, data_root=data_root, model_args=[WB97M_KEY])
    ref, dft = _raw_profiles(data_root, REF_FILE), _raw_profiles(data_root, WB97M_FILE)
    rel_errors = np.concatenate([dft[k] - ref[k] for k in ref])
    barrier_errors = np.array([np.ptp(dft[k]) - np.ptp(ref[k]) for k in ref])
    m = outcome.metrics
    assert outcome.n_failed == 0
    assert m["relative_energy_mae"]["n"] == 59 * 24 and m["barrier_mae"]["n"] == 59
    assert m["relative_energy_mae"]["value"] == pytest.approx(np.abs(rel_errors).mean(), rel=1e-9)
    assert m["relative_energy_rmse"]["value"] == pytest.approx(np.sqrt((rel_errors**2).mean()), rel=1e-9)
    assert m["barrier_mae"]["value"] == pytest.approx(np.abs(barrier_errors).mean(), rel=1e-9)
    # A hybrid functional against coupled cluster on torsions: well under 1 kcal/mol, but not zero.
    assert 0.05 < m["relative_energy_mae"]["value"] < 1.0
    assert 0.05 < m["barrier_mae"]["value"] < 1.5
    # And the paper's own table for wB97M-D3BJ/DZVP (4 decimals).
    published = _raw(data_root, "all_methods_statistics.json")["wb97m-d3bj/dzvp"]
    assert m["relative_energy_mae"]["value"] == pytest.approx(float(published["MUE"]), abs=6e-5)
    assert m["relative_energy_rmse"]["value"] == pytest.approx(float(published["RMSE"]), abs=6e-5)


def test_adjacent_extrema_barrier_reproduces_published_barrier_mue(data_root):
    """The paper scores barriers as the largest gap between neighbouring stationary points; derive reproduces it."""
    items = task_items("openff-torsions", data_root)
    results = {i.id: StoredItem(i.id, "ok", {f"energy@{r}": a.info["ref_energy:wB97M-D3BJ"]
                                            for r, a in i.structures.items()}, None, [], None)
               for i in items}
    predictions = torsion_profile.derive(items, results, {"barrier": "adjacent_extrema"})
    barriers = [p for p in predictions if p.quantity == "barrier_height"]
    errors = [units.convert(p.value, "eV", "kcal/mol") - units.convert(*p.reference, "kcal/mol") for p in barriers]
    published = _raw(data_root, "all_methods_barrier_statistics.json")["wb97m-d3bj/dzvp"]
    assert len(errors) == 59
    assert np.mean(np.abs(errors)) == pytest.approx(float(published["MUE"]), abs=6e-5)


def test_barrier_definitions_on_a_profile_with_three_wells():
    angles = np.arange(-165, 181, 15)
    # Minima 0, 3.5 and 3 separated by maxima 5, 10 and 6: the global max and min are not neighbours, so the
    # largest gap between adjacent stationary points (10 - 3) is smaller than highest minus lowest (10 - 0).
    energies = np.array([0, 1, 2, 3, 4, 5, 4, 3.5, 4, 6, 8, 10, 8, 6, 4, 3, 4, 5, 6, 5, 4, 3, 2, 1], dtype=float)
    for shift in range(24):  # the scan is periodic: wells across the -165/180 seam count the same
        rolled = np.roll(energies, shift)
        assert torsion_profile.barrier_height(rolled, angles, "max_minus_min") == pytest.approx(10.0)
        assert torsion_profile.barrier_height(rolled, angles, "adjacent_extrema") == pytest.approx(7.0)
    with pytest.raises(ValueError, match="unknown barrier"):
        torsion_profile.barrier_height(energies, angles, "midpoint")


def test_wb97m_reference_variant(tmp_path, data_root):
    """Scored against its own level of theory, the tabulated wB97M-D3BJ model is exact; the items are shared."""
    [outcome] = run_task("openff-torsions-wb97m", TABULATED, tmp_path, data_root=data_root, model_args=[WB97M_KEY])
    assert outcome.metrics["relative_energy_mae"]["n"] == 59 * 24
    assert outcome.metrics["relative_energy_mae"]["value"] == pytest.approx(0.0, abs=1e-9)
    assert outcome.metrics["barrier_mae"]["value"] == pytest.approx(0.0, abs=1e-9)
    ccsdt = {i.id: i.reference for i in task_items("openff-torsions", data_root)}
    wb97m = {i.id: i.reference for i in task_items("openff-torsions-wb97m", data_root)}
    assert ccsdt.keys() == wb97m.keys() and ccsdt["0"] != wb97m["0"]


def test_profile_not_computed_is_reported_failed(data_root):
    items = task_items("openff-torsions", data_root)[:2]
    done = StoredItem(items[0].id, "ok", {f"energy@{r}": 0.01 * n for n, r in enumerate(items[0].structures)},
                      None, [], None)
    predictions = torsion_profile.derive(items, {items[0].id: done}, {"barrier": "max_minus_min"})
    assert len(predictions) == 2 * 26  # 24 relative energies, the barrier and its large-error flag
    first, second = predictions[:26], predictions[26:]
    assert all(p.value is not None and p.error is None for p in first)
    assert all(p.value is None and p.error == "not computed" for p in second)
    assert first[-2].quantity == "barrier_height" and first[-2].value == pytest.approx(0.23)
    barrier_error = units.convert(0.23, "eV", "kcal/mol") - units.convert(*first[-2].reference, "kcal/mol")
    assert first[-1].quantity == "large_barrier_error" and first[-1].reference is None
    assert first[-1].value == float(abs(barrier_error) > 1.0) and abs(abs(barrier_error) - 1.0) > 0.1


@pytest.mark.slow
@pytest.mark.parametrize("model", ["7net-0", "chgnet"])
def test_real_model_on_one_profile(model, tmp_path, data_root):
    [outcome] = run_task("openff-torsions", model, tmp_path, data_root=data_root, limit=1)
    m = outcome.metrics
    assert outcome.n_failed == 0 and m["relative_energy_mae"]["n"] == 24 and m["barrier_mae"]["n"] == 1
    # Torsion barriers of drug-like fragments are a few kcal/mol; an error beyond 10 means a broken protocol.
    for name in ("relative_energy_mae", "barrier_mae"):
        assert math.isfinite(m[name]["value"]) and 0.0 < m[name]["value"] < 10.0, (name, m[name])
