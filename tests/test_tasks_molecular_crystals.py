"""Molecular crystals: X23 lattice energies and DMC-ICE13 polymorph energies, against DMC and against r2SCAN.

The protocols are validated with the tabulated model: the VASP single points of X23_DFT_functionals must
give the published X23 errors of PBE+D3 and vdW-DF2, and the published DMC-ICE13 DFT energies must give
the same relative-energy errors as a computation straight from the CSV files.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from ase.io import read
from helpers import run_task, task_items
from scipy.optimize import linear_sum_assignment

from omni_bench import units
from omni_bench.data import task_files
from omni_bench.errors import OmniBenchError
from omni_bench.items import Item, Quantity
from omni_bench.loaders import ice13 as ice13_loader
from omni_bench.loaders import x23 as x23_loader
from omni_bench.protocols import relative_energy
from omni_bench.store import StoredItem
from omni_bench.task_registry import all_tasks

TABULATED = "omni_bench.models.factories:tabulated"
KJ_PER_EV = units.convert(1.0, "eV", "kJ/mol")


@pytest.fixture(scope="module")
def dmc_x23() -> pd.DataFrame:
    return pd.read_csv(all_tasks()["x23"].path.parent / "x23-lattice-energies-dmc.csv", comment="#")


@pytest.fixture(scope="module")
def vasp_x23() -> pd.DataFrame:
    """VASP lattice energies per functional (kJ/mol/molecule), indexed by system number, from the shipped table."""
    table = pd.read_csv(all_tasks()["x23"].path.parent / "x23-vasp-energies.csv", comment="#")
    table["number"] = table.system.str[:2]
    wide = table.pivot_table(index=["number", "functional"], columns="phase",
                             values=["energy_sigma0_eV", "n_atoms"])
    n_molecules = wide["n_atoms"]["solid"] / wide["n_atoms"]["gas"]
    lattice = (wide["energy_sigma0_eV"]["solid"] / n_molecules - wide["energy_sigma0_eV"]["gas"]) * KJ_PER_EV
    return lattice.unstack("functional")


@pytest.fixture(scope="module")
def ice13_tables(data_root) -> tuple[pd.DataFrame, pd.Series]:
    """Published absolute energies (method x phase) and the separately published DMC relative energies."""
    folder = data_root / "DMC_ICE13"
    absolute = pd.read_csv(folder / "dmc_ice13_published_dft_absolute_energies.csv", index_col="method")
    relative = pd.read_csv(folder / "dmc_ice13_relative_energies.csv", index_col="phase")
    return absolute, relative["DMC_relative_kJmol"]


# --- loaders -----------------------------------------------------------------------------------------------

def test_x23_loader_items_units_and_counts(data_root, dmc_x23):
    items = task_items("x23", data_root)
    assert [i.id for i in items] == list(dmc_x23.system_id)
    for item, row in zip(items, dmc_x23.itertuples(), strict=True):
        solid, molecule = item.structures["solid"], item.structures["molecule"]
        assert solid.pbc.all() and not molecule.pbc.any()
        assert all(a.info["charge"] == 0 and a.info["spin"] == 1 for a in (solid, molecule))
        assert item.meta["n_molecules"] == row.n_molecules_in_cell == len(solid) // len(molecule)
        assert item.reference["lattice_energy"] == Quantity(row.E_latt_DMC_kJ_mol, "kJ/mol/molecule")
        assert len([k for k in solid.info if k.startswith("ref_energy:")]) == 17
    succinic = items[-1]
    assert succinic.id == "23Succinic_acid" and succinic.meta["n_molecules"] == 8  # upstream nmol said 2


def test_x23_loader_rejects_a_wrong_molecule_count():
    molecule = Atoms("CO2", positions=[[0, 0, 0], [0, 0, 1.16], [0, 0, -1.16]], cell=[5, 10, 10])
    solid = molecule.repeat((2, 1, 1))
    assert x23_loader.check_molecule_count(solid, molecule, 2, "here") == 2
    with pytest.raises(OmniBenchError, match="n_molecules_in_cell"):
        x23_loader.check_molecule_count(solid, molecule, 8, "here")
    with pytest.raises(OmniBenchError, match="whole number"):
        x23_loader.check_molecule_count(solid[:-1], molecule, 2, "here")


def test_x23_r2scan_reference_is_the_vasp_r2scan_lattice_energy(data_root, vasp_x23):
    items = task_items("x23-r2scan", data_root)
    for item in items:
        assert item.reference["lattice_energy"].unit == "kJ/mol/molecule"
        assert item.reference["lattice_energy"].value == pytest.approx(vasp_x23.loc[item.id[:2], "R2SCAN"], abs=1e-9)


def _worst_distance(a: Atoms, b: Atoms, periodic: bool) -> float:
    """Largest atom displacement between two structures after the best atom matching per element
    (and, for crystals, after removing a rigid translation of the whole cell)."""
    assert a.get_chemical_formula() == b.get_chemical_formula()
    if periodic:
        assert np.allclose(a.cell, b.cell, atol=1e-6)
        shift = a.get_scaled_positions()[0] - b.get_scaled_positions()[0]
        b = b.copy()
        b.set_scaled_positions(b.get_scaled_positions() + shift)
    else:
        a, b = a.copy(), b.copy()
        a.positions -= a.get_center_of_mass()
        b.positions -= b.get_center_of_mass()
    worst = 0.0
    for element in set(a.get_chemical_symbols()):
        ia = [i for i, s in enumerate(a.get_chemical_symbols()) if s == element]
        ib = [i for i, s in enumerate(b.get_chemical_symbols()) if s == element]
        diff = a.positions[ia][:, None] - b.positions[ib][None]
        if periodic:
            frac = np.linalg.solve(a.cell.array.T, diff.reshape(-1, 3).T).T
            frac -= np.round(frac)
            diff = (frac @ a.cell.array).reshape(diff.shape)
        distance = np.linalg.norm(diff, axis=-1)
        rows, cols = linear_sum_assignment(distance)
        worst = max(worst, float(distance[rows, cols].max()))
    return worst


def test_x23_dft_single_points_are_on_the_dmc_geometries(data_root):
    """The energies attached by system number belong to these very structures, not just the same systems."""
    frames = read(data_root / "X23_DFT_functionals" / "x23_vasp_singlepoints.extxyz", index=":")
    pbe = {(f.info["system"][:2], f.info["phase"]): f for f in frames if f.info["functional"] == "PBE+D3"}
    for item in task_items("x23", data_root):
        number = item.id[:2]
        solid, gas = pbe[(number, "solid")], pbe[(number, "gas")]
        assert _worst_distance(item.structures["solid"], solid, periodic=True) < 1e-4, item.id
        assert _worst_distance(item.structures["molecule"], gas, periodic=False) < 1e-4, item.id
        assert item.structures["solid"].info["ref_energy:PBE+D3"] == pytest.approx(solid.info["REF_energy"])
        assert item.structures["molecule"].info["ref_energy:PBE+D3"] == pytest.approx(gas.info["REF_energy"])


def test_ice13_loader_items_units_and_counts(data_root, ice13_tables):
    absolute, dmc_relative = ice13_tables
    items = task_items("ice13", data_root)
    assert [i.id for i in items] == list(absolute.columns)  # Ih first, so a --limit slice keeps it
    assert items[0].id == "Ih" and items[0].reference == {}
    for item in items:
        crystal = item.structures["crystal"]
        assert crystal.pbc.all() and crystal.info["charge"] == 0 and crystal.info["spin"] == 1
        assert item.meta == {"n_formula_units": crystal.get_chemical_symbols().count("O"), "relative_to": "Ih"}
        assert len([k for k in crystal.info if k.startswith("ref_energy:")]) == len(absolute)
        if item.id != "Ih":
            ref = item.reference["relative_energy"]
            assert ref.unit == "kJ/mol/H2O" and ref.value == pytest.approx(dmc_relative[item.id], abs=1e-9)
    assert {i.id: i.meta["n_formula_units"] for i in items} == {
        "Ih": 12, "II": 12, "III": 12, "IV": 16, "VI": 10, "VII": 12, "VIII": 8, "IX": 12, "XI": 8, "XIII": 28,
        "XIV": 12, "XV": 10, "XVII": 6}


def test_ice13_loader_rejects_an_unknown_reference(data_root):
    spec = all_tasks()["ice13"]
    with pytest.raises(OmniBenchError, match="not a row of"):
        ice13_loader.load(task_files(spec, data_root), {"reference": "PBE-D5", "relative_to": "Ih"})


# --- protocols with the tabulated model --------------------------------------------------------------------

@pytest.mark.parametrize("functional, published_mae", [("PBE+D3", 6.0), ("vdW-DF2", 4.4)])
def test_x23_tabulated_dft_reproduces_published_mae(tmp_path, data_root, dmc_x23, vasp_x23, functional,
                                                    published_mae):
    [outcome] = run_task("x23", TABULATED, tmp_path, data_root, model_args=[f"key=ref_energy:{functional}"])
    mae = outcome.metrics["mae"]
    assert mae["unit"] == "kJ/mol/molecule" and mae["n"] == 23 and mae["n_failed"] == 0
    assert mae["value"] == pytest.approx(published_mae, abs=0.1)
    independent = np.mean(np.abs(vasp_x23[functional].to_numpy() - dmc_x23.E_latt_DMC_kJ_mol.to_numpy()))
    assert mae["value"] == pytest.approx(independent, abs=1e-9)


def test_x23_r2scan_task_scores_pbe_d3_against_r2scan(tmp_path, data_root, vasp_x23):
    [outcome] = run_task("x23-r2scan", TABULATED, tmp_path, data_root, model_args=["key=ref_energy:PBE+D3"])
    independent = np.mean(np.abs(vasp_x23["PBE+D3"] - vasp_x23["R2SCAN"]))
    assert outcome.metrics["mae"]["value"] == pytest.approx(independent, abs=1e-9)
    assert outcome.metrics["mae"]["n"] == 23


def _ice13_relative_mae(absolute: pd.DataFrame, method: str, reference: pd.Series) -> float:
    relative = absolute.loc[method].drop("Ih") - absolute.loc[method, "Ih"]
    return float(np.mean(np.abs(relative - reference.drop("Ih", errors="ignore")[relative.index])))


@pytest.mark.parametrize("method", ["PBE", "PBE-D3(BJ)", "R2SCAN"])
def test_ice13_tabulated_dft_matches_the_csv(tmp_path, data_root, ice13_tables, method):
    absolute, dmc_relative = ice13_tables
    [outcome] = run_task("ice13", TABULATED, tmp_path, data_root, model_args=[f"key=ref_energy:{method}"])
    mae = outcome.metrics["mae"]
    assert mae["unit"] == "kJ/mol/H2O" and mae["n"] == 12 and mae["n_failed"] == 0  # Ih is not scored
    assert mae["value"] == pytest.approx(_ice13_relative_mae(absolute, method, dmc_relative), abs=1e-6)


def test_ice13_r2scan_task_scores_pbe_against_r2scan(tmp_path, data_root, ice13_tables):
    absolute, _ = ice13_tables
    r2scan_relative = absolute.loc["R2SCAN"] - absolute.loc["R2SCAN", "Ih"]
    [outcome] = run_task("ice13-r2scan", TABULATED, tmp_path, data_root, model_args=["key=ref_energy:PBE"])
    expected = _ice13_relative_mae(absolute, "PBE", r2scan_relative)
    assert outcome.metrics["mae"]["value"] == pytest.approx(expected, abs=1e-6)


def test_relative_energy_derive_fails_polymorphs_whose_reference_failed():
    items = [Item(p, {}, {} if p == "Ih" else {"relative_energy": Quantity(1.0, "kJ/mol/H2O")},
                  meta={"n_formula_units": 4, "relative_to": "Ih"}) for p in ("Ih", "II", "III")]
    ok = {"energy_per_h2o": -1.0}
    results = {"Ih": StoredItem("Ih", "failed", {}, "RuntimeError: boom", [], None),
               "II": StoredItem("II", "ok", ok, None, [], None)}
    predictions = {p.id: p for p in relative_energy.derive(items, results, {})}
    assert set(predictions) == {"II", "III"}
    assert predictions["II"].value is None and "Ih" in predictions["II"].error and "boom" in predictions["II"].error
    assert predictions["III"].value is None and predictions["III"].error == "not computed"
    results["Ih"] = StoredItem("Ih", "ok", {"energy_per_h2o": -1.5}, None, [], None)
    assert relative_energy.derive(items, results, {})[0].value == pytest.approx(0.5)


# --- real models on a few items ------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("model", ["7net-0", "chgnet"])
def test_real_models_on_x23_slice(tmp_path, data_root, model):
    [outcome] = run_task("x23", model, tmp_path, data_root, limit=2)
    mae = outcome.metrics["mae"]
    assert outcome.n_failed == 0 and mae["n"] == 2
    # A PBE-level model without dispersion underbinds (PBE: +48 kJ/mol/molecule on average); an error
    # above 150 kJ/mol/molecule on these small molecules would mean a broken lattice energy.
    assert math.isfinite(mae["value"]) and mae["value"] < 150.0
    assert outcome.metrics["max_abs_error"]["value"] < 200.0


@pytest.mark.slow
@pytest.mark.parametrize("model", ["7net-0", "chgnet"])
def test_real_models_on_ice13_slice(tmp_path, data_root, model):
    [outcome] = run_task("ice13", model, tmp_path, data_root, limit=2)
    mae = outcome.metrics["mae"]
    assert outcome.n_failed == 0 and mae["n"] == 2  # Ih, II, III: Ih is the zero
    # Every published method, HF and LDA included, stays within 14 kJ/mol/H2O of DMC here.
    assert math.isfinite(mae["value"]) and mae["value"] < 25.0
