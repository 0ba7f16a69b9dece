"""TorsionNet500 scans and Tautobase tautomer pairs (Schrodinger's MLFF test data).

The protocols validated on the tabulated energies: wB97X-D3BJ scored against DLPNO-CCSD(T) must give what numpy
gives straight from the JSON files; loaders checked against the raw records; 7net-0 on a slice.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
from ase.units import Hartree, kcal, mol
from helpers import run_task, task_items

TABULATED = "omni_bench.models.factories:tabulated"
WB97X = "key=ref_energy:wB97X-D3BJ"
TORSIONS = "MLFF_test_data_Schrodinger/TorsionNet500"
TAUTOMERS = "MLFF_test_data_Schrodinger/tautobase"
HARTREE_IN_KCAL_MOL = Hartree / (kcal / mol)
CCSDT, DFT = "E[DLPNO-CCSD(T)](Ha)", "E[wB97X-D3BJ/def2-TZVPD](Ha)"


def _scans(data_root) -> dict[str, list[dict]]:
    return {p.stem: sorted(json.loads(p.read_text()), key=lambda r: r["torsion_angle"])
            for p in sorted((data_root / TORSIONS).glob("fragment_*.json"))}


def test_torsionnet_loader_against_the_raw_scans(data_root):
    items = task_items("torsionnet500", data_root)
    raw = _scans(data_root)
    assert len(items) == 500 and [i.id for i in items] == list(raw)
    for item in items[::50]:
        records = raw[item.id]
        assert list(item.meta["angles"]) == list(range(-165, 181, 15))
        for record, (role, atoms) in zip(records, item.structures.items(), strict=True):
            assert role == f"phi={int(record['torsion_angle']):+d}"
            np.testing.assert_allclose(atoms.positions, record["coordinates"])
            assert atoms.get_chemical_symbols() == record["elements"] and not atoms.pbc.any()
            assert atoms.info["charge"] == 0 and atoms.info["spin"] == 1
            assert item.reference[f"energy@{role}"].value == record[CCSDT]
            assert atoms.info["ref_energy:wB97X-D3BJ"] == pytest.approx(record[DFT] * Hartree, rel=1e-14)


def test_tabulated_wb97x_against_dlpno_ccsdt_matches_numpy(tmp_path, data_root):
    """Protocol validation: the whole set's figures, computed again here from the JSON files."""
    [outcome] = run_task("torsionnet500", TABULATED, tmp_path, data_root=data_root, model_args=[WB97X])
    relative, barriers = [], []
    for records in _scans(data_root).values():
        reference = np.array([r[CCSDT] for r in records]) * HARTREE_IN_KCAL_MOL
        dft = np.array([r[DFT] for r in records]) * HARTREE_IN_KCAL_MOL
        relative.append((dft - dft.min()) - (reference - reference.min()))
        barriers.append(np.ptp(dft) - np.ptp(reference))
    relative, barriers = np.concatenate(relative), np.array(barriers)
    m = outcome.metrics
    assert outcome.n_failed == 0 and m["relative_energy_mae"]["n"] == 12000 and m["barrier_mae"]["n"] == 500
    assert m["relative_energy_mae"]["value"] == pytest.approx(np.abs(relative).mean(), rel=1e-9)
    assert m["relative_energy_rmse"]["value"] == pytest.approx(np.sqrt((relative**2).mean()), rel=1e-9)
    assert m["barrier_mae"]["value"] == pytest.approx(np.abs(barriers).mean(), rel=1e-9)
    assert m["barriers_off_by_over_1_kcal_mol"]["value"] == np.sum(np.abs(barriers) > 1.0)
    # The figures the task notes quote.
    assert (round(m["relative_energy_mae"]["value"], 3), round(m["barrier_mae"]["value"], 3)) == (0.161, 0.260)
    assert m["barriers_off_by_over_1_kcal_mol"]["value"] == 14


def test_cpu_subset_is_the_first_50_scans_by_hash_and_its_tabulated_figures_match_numpy(tmp_path, data_root):
    """torsionnet500-small: the scans picked from the file names alone, and the figures its task notes quote."""
    raw = _scans(data_root)
    picked = sorted(sorted(raw, key=lambda stem: hashlib.sha256(stem.encode()).hexdigest())[:50])
    assert [i.id for i in task_items("torsionnet500-small", data_root)] == picked
    [outcome] = run_task("torsionnet500-small", TABULATED, tmp_path, data_root=data_root, model_args=[WB97X])
    barriers = np.array([np.ptp([r[DFT] for r in raw[s]]) - np.ptp([r[CCSDT] for r in raw[s]]) for s in picked])
    m = outcome.metrics
    assert m["relative_energy_mae"]["n"] == 1200 and m["barrier_mae"]["n"] == 50
    assert m["barrier_mae"]["value"] == pytest.approx(np.abs(barriers).mean() * HARTREE_IN_KCAL_MOL, rel=1e-9)
    assert (round(m["relative_energy_mae"]["value"], 3), round(m["barrier_mae"]["value"], 3)) == (0.196, 0.303)
    assert m["barriers_off_by_over_1_kcal_mol"]["value"] == 4


@pytest.mark.parametrize("subset", [{"scans": 0}, {"every": 4}, [50]])
def test_a_bad_subset_names_the_field_and_the_fix(subset, data_root):
    from omni_bench.errors import OmniBenchError
    from omni_bench.loaders import torsionnet500

    files = {f"{TORSIONS}/{p.name}": p for p in (data_root / TORSIONS).glob("fragment_00*.json")}
    with pytest.raises(OmniBenchError, match=r"dataset.params.subset must be \{scans: n\}"):
        torsionnet500.load(files, {"subset": subset})


def test_wb97x_variant_scores_its_own_level_exactly(tmp_path, data_root):
    [outcome] = run_task("torsionnet500-wb97x", TABULATED, tmp_path, data_root=data_root, model_args=[WB97X],
                         limit=20)
    assert outcome.metrics["relative_energy_mae"]["value"] == pytest.approx(0.0, abs=1e-9)
    assert outcome.metrics["barriers_off_by_over_1_kcal_mol"]["value"] == 0


def test_tautomer_loader_order_charges_and_balance(data_root):
    items = task_items("tautomers", data_root)
    assert len(items) == 2 * 1499
    pairs = [i.meta["reactions"][0] for i in items[::2]]
    numbers = [int(r.id) for r in pairs]
    on_disk = sorted(int(p.stem.removeprefix("tautomer_pair_")) for p in (data_root / TAUTOMERS).glob("*.json"))
    assert numbers == on_disk and len(set(numbers)) == 1499 and numbers[-1] == 1680
    assert [r.id for r in pairs] == sorted(r.id for r in pairs)  # zero-padded: string order is numeric order
    charged = sorted(int(r.id) for r in pairs if r.groups["charge"] != "neutral")
    assert charged == [55, 297, 757, 947, 957, 1004, 1097]
    by_id = {i.id: i for i in items}
    assert by_id["0055/1"].structures["molecule"].info["charge"] == 1
    raw = json.loads((data_root / TAUTOMERS / "tautomer_pair_664.json").read_text())
    reaction = next(r for r in pairs if r.id == "0664")
    assert reaction.reference.value == 0.0 and raw[0]["coordinates"] == raw[1]["coordinates"]
    raw = json.loads((data_root / TAUTOMERS / "tautomer_pair_1.json").read_text())
    assert pairs[0].reference == (raw[1][DFT] - raw[0][DFT], "Hartree")
    assert pairs[0].stoichiometry == {"0001/1": -1.0, "0001/2": 1.0}


def test_tautomers_tabulated_is_exact_and_a_flat_model_scores_the_mean_abs_reference(tmp_path, data_root):
    [outcome] = run_task("tautomers", TABULATED, tmp_path, data_root=data_root, model_args=[WB97X])
    assert outcome.n_failed == 0 and outcome.metrics["mae"]["n"] == 1499
    assert outcome.metrics["mae"]["value"] == pytest.approx(0.0, abs=1e-8)
    reference = [json.loads(p.read_text()) for p in (data_root / TAUTOMERS).glob("*.json")]
    mean_abs = np.mean([abs(r[1][DFT] - r[0][DFT]) for r in reference]) * HARTREE_IN_KCAL_MOL
    assert mean_abs == pytest.approx(8.10, abs=0.005)  # the figure in the task's reference notes


@pytest.mark.slow
@pytest.mark.parametrize("task, limit, n", [("torsionnet500", 1, 24), ("tautomers", 2, 2)])
def test_7net0_on_a_slice(task, limit, n, tmp_path, data_root):
    [outcome] = run_task(task, "7net-0", tmp_path, data_root=data_root, limit=limit)
    headline = outcome.metrics["relative_energy_mae" if task == "torsionnet500" else "mae"]
    assert outcome.n_failed == 0 and headline["n"] == n
    # Torsion and tautomer energies are a few kcal/mol; beyond 20 kcal/mol the protocol is broken.
    assert math.isfinite(headline["value"]) and 0 < headline["value"] < 20
