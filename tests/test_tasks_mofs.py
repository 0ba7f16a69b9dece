"""MOF tasks: GoldDAC CO2/H2O interaction energies and MOFSimBench DFT equations of state.

Each task is checked three ways: the loader against the raw files (counts, units, mapping), the protocol
against the published DFT numbers with the tabulated model, and 7net-0/CHGNet on a small slice.
"""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
from ase import units as ase_units
from ase.eos import EquationOfState
from helpers import loaded_model, run_task, task_items

from omni_bench.items import Quantity
from omni_bench.loaders import golddac, mofsimbench
from omni_bench.protocols import eos_curve, interaction_energy_shared, mof_bulk_modulus
from omni_bench.store import StoredItem
from omni_bench.task_registry import all_tasks
from omni_bench.units import convert

TABULATED = "omni_bench.models.factories:tabulated"
GOLDDAC_SLICE = 15  # 2 gases + the smallest framework (VATYIZ, 26 atoms) + its 12 complexes
PUBLISHED_FIT_TOLERANCE = 0.01  # relative; justified in test_tabulated_dft_curves_give_the_published_b0


def _files(task: str, data_root):
    return {f.path: data_root / f.path for f in all_tasks()[task].files}


def _params(task: str) -> dict:
    return all_tasks()[task].loader_params


@pytest.fixture(scope="module")
def golddac_items(data_root):
    return golddac.load(_files("golddac", data_root), _params("golddac"))


@pytest.fixture(scope="module")
def mofsim_items(data_root):
    return mofsimbench.load(_files("mofsimbench-eos", data_root), _params("mofsimbench-eos"))


# --- GoldDAC -------------------------------------------------------------------------------------------


def test_golddac_loader_counts_and_mapping(golddac_items):
    complexes = [i for i in golddac_items if "interaction_energy" in i.reference]
    assert len(golddac_items) == 262 and len(complexes) == 240
    assert Counter(i.groups.get("role") for i in golddac_items if not i.reference) == {"gas": 2, "framework": 20}
    assert Counter((i.groups["gas"], i.groups["region"]) for i in complexes) == {
        (gas, region): n for gas in ("CO2", "H2O")
        for region, n in (("repulsion", 40), ("equilibrium", 20), ("weak_attraction", 60))}
    ids = {i.id for i in golddac_items}
    for item in complexes:
        assert item.reference["interaction_energy"].unit == "eV"
        assert all(f in ids for f in item.meta["fragments"])
        atoms = item.structures["structure"]
        assert atoms.pbc.all() and "charge" not in atoms.info and "spin" not in atoms.info
    # Reference = REF_energy differences, rebuilt here from the tabulated energies on the structures.
    energy = {i.id: i.structures["structure"].info[golddac.REF_KEY] for i in golddac_items}
    for item in complexes:
        rebuilt = energy[item.id] - sum(energy[f] for f in item.meta["fragments"])
        assert item.reference["interaction_energy"].value == pytest.approx(rebuilt, abs=1e-9)


def test_golddac_h2o_complexes_sit_on_another_framework_geometry(golddac_items):
    """The data surprise the task notes document: only CO2 complexes share the bare framework's geometry."""
    geometry = Counter((i.groups["gas"], i.groups["framework_geometry"]) for i in golddac_items if i.reference)
    assert geometry == {("CO2", "same"): 120, ("H2O", "different"): 120}


def test_golddac_limit_prefix_is_self_contained(golddac_items):
    prefix = golddac_items[:GOLDDAC_SLICE]
    ids = {i.id for i in prefix}
    complexes = [i for i in prefix if i.reference]
    assert len(complexes) == 12 and all(set(i.meta["fragments"]) <= ids for i in complexes)


def test_golddac_derive_reports_a_missing_fragment(golddac_items):
    complex_item = next(i for i in golddac_items if i.reference)
    framework, gas = complex_item.meta["fragments"]
    results = {complex_item.id: StoredItem(complex_item.id, "ok", {"energy": -10.0}, None, [], 0.1),
               gas: StoredItem(gas, "failed", {}, "RuntimeError: boom", [], 0.1)}
    (prediction,) = interaction_energy_shared.derive([complex_item], results, {})
    assert prediction.value is None
    assert framework in prediction.error and "not computed" in prediction.error and "boom" in prediction.error


def test_golddac_tabulated_reproduces_reference_exactly(tmp_path, data_root):
    (outcome,) = run_task("golddac", TABULATED, tmp_path, data_root=data_root, model_args=["key=ref_energy:PBE+D3"])
    assert outcome.n_items == 262 and outcome.n_failed == 0
    metrics = outcome.metrics
    assert metrics["mae"]["n"] == 240 and metrics["mae"]["n_failed"] == 0
    for name, metric in metrics.items():
        assert abs(metric["value"]) < 1e-9, name
    assert {metrics[f"mae_by_gas[gas={g}]"]["n"] for g in ("CO2", "H2O")} == {120}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["7net-0", "chgnet"])
def test_golddac_real_models_on_one_mof(model, tmp_path, data_root):
    (outcome,) = run_task("golddac", model, tmp_path, data_root=data_root, limit=12)  # VATYIZ's 12 complexes
    assert outcome.n_items == GOLDDAC_SLICE and outcome.n_failed == 0
    mae = outcome.metrics["mae"]
    assert mae["n"] == 12 and mae["n_failed"] == 0
    # Plausible bounds: the reference values of this slice span ~-0.4..+8 eV; a model that gets the sign
    # and the repulsive wall roughly right stays well below 2 eV, and near equilibrium below 0.5 eV.
    assert math.isfinite(mae["value"]) and 0 < mae["value"] < 2.0
    assert outcome.metrics["mae_by_region[region=equilibrium]"]["value"] < 0.5


# --- MOFSimBench ---------------------------------------------------------------------------------------


def _csv_rows(data_root) -> dict[str, dict]:
    import csv

    with open(data_root / mofsimbench.CSV_FILE, newline="") as fh:
        return {row["structure"]: row for row in csv.DictReader(fh)}


def test_mofsimbench_loader_units_volumes_and_order(mofsim_items, data_root):
    rows = _csv_rows(data_root)
    assert len(mofsim_items) == 100
    sizes = [len(i.structures["V0"]) for i in mofsim_items]
    assert sizes == sorted(sizes)
    in_ev = set(_params("mofsimbench-eos")["energies_in_ev"])
    for item in mofsim_items:
        row = rows[item.id]
        volumes = json.loads(row["volumes_A3"])
        roles = [f"V{k}" for k in range(len(volumes))]
        assert sorted(item.structures) == sorted(roles)
        assert item.reference["bulk_modulus"] == Quantity(float(row["B0_GPa"]), "GPa")
        for role, volume, energy in zip(roles, volumes, json.loads(row["energies_au"]), strict=True):
            atoms = item.structures[role]
            assert atoms.get_volume() == pytest.approx(volume, rel=1e-6)
            expected = energy if item.id in in_ev else convert(energy, "Hartree", "eV")
            assert atoms.info[mofsimbench.REF_KEY] == pytest.approx(expected, rel=1e-12)
        anchor = item.meta["reference_index"]
        assert item.meta["relative_energy"][anchor].value == 0.0
        assert all(q.unit == "eV/atom" and q.value >= 0 for q in item.meta["relative_energy"])
    assert Counter(len(i.structures) for i in mofsim_items) == {5: 99, 11: 1}


def test_mofsimbench_rows_flagged_as_ev_really_are_ev(data_root):
    """Read as Hartree, the three flagged rows fit to 27.2x their published B0: their energies are in eV."""
    flagged = _params("mofsimbench-eos")["energies_in_ev"]
    files = _files("mofsimbench-eos", data_root)
    as_hartree = mofsimbench.load(files, {"structures": flagged})
    for item in as_hartree:
        b0 = _bm_b0(*_curve(item))
        assert b0 / item.reference["bulk_modulus"].value == pytest.approx(convert(1.0, "Hartree", "eV"), rel=1e-3)


def test_tabulated_dft_curves_give_the_published_b0(tmp_path, data_root, mofsim_items):
    """Our fit of the DFT energies against the CSV's B0_GPa, row by row.

    ase.eos Birch-Murnaghan on absolute energies (as MOFSimBench fits) gives the published B0 to a median
    of 6e-5 relative and within 1% for 98 of 100 rows. The tolerance is 1%, and a row may exceed it only if
    its B0 is not determined by the published data: refitting with the energies perturbed within the CSV's
    own rounding (6 decimals of Hartree, +/-0.5e-6 Ha) must move its B0 by more than 1% (5-point,
    4-parameter fits of very flat curves, where curve_fit's answer depends on noise at the 1e-5 eV level).
    """
    (outcome,) = run_task("mofsimbench-eos", TABULATED, tmp_path, data_root=data_root,
                          model_args=["key=ref_energy:PBE-D3"])
    assert outcome.n_items == 100 and outcome.n_failed == 0
    metrics = outcome.metrics
    assert metrics["b0_mae"]["n"] == 100
    assert metrics["b0_mae"]["value"] < 0.05  # GPa; mean published B0 is 18 GPa
    assert metrics["relative_energy_mae"]["value"] < 1e-9  # bookkeeping of the curve: exact
    # The tabulated energies are the DFT's relaxed ones; the protocol says so instead of relaxing.
    assert eos_curve.NO_FORCES_NOTE in json.loads(outcome.results_file.read_text())["notes"]

    outliers = []
    for item in mofsim_items:
        volumes, energies = _curve(item)
        b0 = _bm_b0(volumes, energies)
        if abs(b0 / item.reference["bulk_modulus"].value - 1) > PUBLISHED_FIT_TOLERANCE:
            outliers.append(item.id)
            assert _rounding_spread(volumes, energies) > PUBLISHED_FIT_TOLERANCE, item.id
    assert len(outliers) <= 3, outliers


def _curve(item) -> tuple[list[float], np.ndarray]:
    roles = sorted(item.structures, key=lambda r: int(r[1:]))
    volumes = [item.structures[r].get_volume() for r in roles]
    return volumes, np.array([item.structures[r].info[mofsimbench.REF_KEY] for r in roles])


def _bm_b0(volumes, energies) -> float:
    """B0 in GPa from ase.eos Birch-Murnaghan, the fit the task's protocol uses."""
    return EquationOfState(volumes, energies, eos="birchmurnaghan").fit(warn=False)[2] / ase_units.GPa


def _rounding_spread(volumes, energies, samples: int = 100) -> float:
    """Relative 5-95 percentile width of B0 over refits with energies perturbed within the CSV rounding."""
    rng = np.random.default_rng(0)
    half_digit = convert(0.5e-6, "Hartree", "eV")
    b0 = [_bm_b0(volumes, energies + rng.uniform(-half_digit, half_digit, len(energies))) for _ in range(samples)]
    low, mid, high = np.percentile(b0, [5, 50, 95])
    return (high - low) / mid


def test_eos_curve_keeps_the_energy_curve_when_the_fit_fails(mofsim_items):
    item = mofsim_items[0]
    roles = sorted(item.structures, key=lambda r: int(r[1:]))
    # A convex curve falling over every sampled volume: its minimum lies beyond them (at index 2 n of n points).
    # A straight line is no test of this: its fitted B0 is zero to rounding, of either sign.
    values = {f"energy:{r}": -float(k) + k * k / (4.0 * len(roles)) for k, r in enumerate(roles)}
    results = {item.id: StoredItem(item.id, "ok", values, None, [], 1.0)}
    predictions = eos_curve.derive([item], results, eos_curve.PARAMS)
    b0 = next(p for p in predictions if p.quantity == "bulk_modulus")
    assert b0.value is None and "outside the sampled volumes" in b0.error
    curve = [p for p in predictions if p.quantity == "relative_energy"]
    assert len(curve) == len(roles) - 1 and all(p.value is not None for p in curve)
    # A concave curve (the compressed cells relaxed onto a lower branch) fits to a negative bulk modulus.
    values = {f"energy:{r}": float((k - 2) ** 2) * -0.01 for k, r in enumerate(roles)}
    results = {item.id: StoredItem(item.id, "ok", values, None, [], 1.0)}
    b0 = next(p for p in eos_curve.derive([item], results, eos_curve.PARAMS) if p.quantity == "bulk_modulus")
    assert b0.value is None and "no minimum" in b0.error


@pytest.mark.slow
@pytest.mark.parametrize("model", ["7net-0", "chgnet"])
def test_mofsimbench_real_models_on_the_smallest_mof(model, tmp_path, data_root):
    """On the CPU subset's protocol (fmax 0.01 eV/A; the full task's 0.001 costs a few times more force calls
    and runs the same code)."""
    (outcome,) = run_task("mofsimbench-eos-small", model, tmp_path, data_root=data_root, limit=1)
    assert outcome.n_failed == 0
    b0 = outcome.metrics["b0_mae"]
    curve = outcome.metrics["relative_energy_mae"]
    assert curve["n"] == 4 and math.isfinite(curve["value"])
    # Plausible bounds: CALF-20 has a DFT B0 of 28 GPa; a model off by more than 100 GPa, or with curve
    # energies off by more than 20 meV/atom at +/-4% volume strain, is broken rather than inaccurate.
    assert curve["value"] < 20.0
    if b0["n"]:
        assert b0["value"] < 100.0


# --- MOFSimBench's own bulk-modulus protocol ----------------------------------------------------------------

#: loose tolerances and 5 volumes (MOFSimBench: 0.001 eV/A, 11 volumes; test_mof_bulk_modulus_samples_*
#: checks the 11) so that the step-by-step check costs about a minute of CPU
LOOSE = {"cell_fmax": 0.05, "fmax": 0.05, "n_volumes": 5}
#: relative agreement of the protocol's B0 with the hand computation: both run the same optimisers from the same
#: structure, but the protocol's FIRE may get its forces from the batched path (lock-step), whose floating-point
#: noise can move each point's converged positions within the force tolerance
HAND_B0_TOLERANCE = 0.005  # measured: 23.254 against 23.244 GPa (0.04 %)


def _hand_computed_b0_gpa(start, calc, params) -> float:
    """MOFSimBench's bulk_modulus.py with ase alone: FrechetCellFilter + LBFGS, isotropic scalings within
    +-4 % of the relaxed volume, FIRE at fixed cell, Birch-Murnaghan."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE, LBFGS

    relaxed = start.copy()
    relaxed.calc = calc
    assert LBFGS(FrechetCellFilter(relaxed), logfile=None).run(fmax=params["cell_fmax"], steps=1000)
    volumes, energies = [], []
    for factor in np.linspace(0.96, 1.04, params["n_volumes"]) ** (1 / 3):
        atoms = relaxed.copy()
        atoms.calc = calc
        atoms.set_cell(relaxed.get_cell() * factor, scale_atoms=True)
        assert FIRE(atoms, logfile=None).run(fmax=params["fmax"], steps=1000)
        volumes.append(atoms.get_volume())
        energies.append(atoms.get_potential_energy())
    _, _, b0 = EquationOfState(volumes, energies, eos="birchmurnaghan").fit()
    return b0 / ase_units.GPa


@pytest.mark.slow
def test_mof_bulk_modulus_reproduces_a_hand_computed_b0_step_by_step(data_root):
    """CALF-20 (44 atoms, the smallest MOF of the data) with 7net-0 + D3(BJ, PBE), as the task's d3: auto gives
    it: the protocol's B0 against MOFSimBench's steps done by hand with ase."""
    from ase.calculators.mixing import SumCalculator
    from dftd3.ase import DFTD3

    spec = all_tasks()["mofsimbench-bulk-modulus-small"]
    (item,) = task_items("mofsimbench-bulk-modulus-small", data_root, limit=1)
    assert item.id == "calf" and len(mof_bulk_modulus.starting_structure(item)) == 44
    params = {**spec.run_params, **LOOSE}
    model = loaded_model("7net-0")
    values = mof_bulk_modulus.compute(item, model, params)
    assert mof_bulk_modulus.D3_ADDED_NOTE in model.notes
    stored = {"calf": StoredItem("calf", "ok", values, None, [], None)}
    prediction, converged = mof_bulk_modulus.derive([item], stored, params)
    assert prediction.error is None and converged.quantity == "not_converged"
    b0 = convert(prediction.value, mof_bulk_modulus.QUANTITIES["bulk_modulus"], "GPa")

    by_hand = _hand_computed_b0_gpa(mof_bulk_modulus.starting_structure(item),
                                    SumCalculator([model.base_calc, DFTD3(method="pbe", damping="d3bj")]), params)
    print(f"CALF-20, 7net-0+D3: protocol B0 {b0:.3f} GPa, by hand {by_hand:.3f} GPa (DFT 28.2)")
    assert b0 == pytest.approx(by_hand, rel=HAND_B0_TOLERANCE)
    assert 5.0 < b0 < 80.0  # DFT: 28.2 GPa


def test_mof_bulk_modulus_samples_11_volumes_within_4_percent_of_the_relaxed_cell(data_root):
    """MOFSimBench's scaling: cell vectors times linspace(0.96, 1.04, 11) ** (1/3), atoms scaled with the cell."""
    spec = all_tasks()["mofsimbench-bulk-modulus"]
    (item,) = task_items("mofsimbench-bulk-modulus-small", data_root, limit=1)
    relaxed = mof_bulk_modulus.starting_structure(item)
    assert relaxed.get_volume() == pytest.approx(746.926, abs=1e-2)  # the DFT-optimised CIF, strain 1.000
    cells = mof_bulk_modulus.scaled_cells(relaxed, spec.run_params["volume_range"], spec.run_params["n_volumes"])
    ratios = np.array([atoms.get_volume() for atoms in cells]) / relaxed.get_volume()
    assert np.allclose(ratios, np.linspace(0.96, 1.04, 11), rtol=1e-12)
    for atoms in cells:
        assert np.allclose(atoms.cell.cellpar()[3:], relaxed.cell.cellpar()[3:])
        assert np.allclose(atoms.get_scaled_positions(), relaxed.get_scaled_positions(), atol=1e-12)


def test_mof_bulk_modulus_names_its_failures_and_counts_unconverged_volumes(data_root):
    """A stored failure keeps its reason; a fit whose minimum lies outside the 11 volumes is named so the
    leaderboard counts it as 'minimum outside the sampled range', and a failed cell relaxation as 'not
    converged'. Fixed-cell relaxations that stop short are fitted as they stand (as MOFSimBench does) and
    flag the framework in not_converged."""
    from omni_bench.reporting.leaderboard import failure_kind

    spec = all_tasks()["mofsimbench-bulk-modulus-small"]
    (item,) = task_items("mofsimbench-bulk-modulus-small", data_root, limit=1)
    volumes = list(np.linspace(960.0, 1040.0, 11))
    rising = {f"volume:P{i:02d}": v for i, v in enumerate(volumes)}
    rising.update({f"energy:P{i:02d}": 0.002 * (v - 900.0) ** 2 / 1000 for i, v in enumerate(volumes)})
    curve = {item.id: StoredItem(item.id, "ok", {**rising, "unconverged_volumes": 0.0}, None, [], None)}
    outside, flag = mof_bulk_modulus.derive([item], curve, spec.run_params)
    assert outside.value is None and failure_kind(outside.error) == "minimum outside the sampled range"
    assert flag.quantity == "not_converged" and flag.value == 0.0
    well = {f"volume:P{i:02d}": v for i, v in enumerate(volumes)}
    well.update({f"energy:P{i:02d}": 0.002 * (v - 1000.0) ** 2 / 1000 for i, v in enumerate(volumes)})
    short = {item.id: StoredItem(item.id, "ok", {**well, "unconverged_volumes": 3.0}, None, [], None)}
    fitted, flag = mof_bulk_modulus.derive([item], short, spec.run_params)
    assert fitted.value > 0 and fitted.error is None and flag.value == 1.0
    stuck = StoredItem(item.id, "failed", {}, "NotConverged: cell relaxation (LBFGS, FrechetCellFilter) did not "
                       "converge", [], None)
    failed, flag = mof_bulk_modulus.derive([item], {item.id: stuck}, spec.run_params)
    assert failed.value is None and failure_kind(failed.error) == "not converged" and flag.value is None
    missing, _ = mof_bulk_modulus.derive([item], {}, spec.run_params)
    assert missing.value is None and missing.error == "not computed"


@pytest.mark.slow
def test_mof_bulk_modulus_adds_d3_to_a_model_trained_without_dispersion(data_root):
    """7net-0 (PBE, no dispersion; its card names D3 for PBE) gets exactly DFT-D3(BJ, PBE) on top, through the
    same attribute a +d3 run sets, and a model that has D3 already gets none twice."""
    from dftd3.ase import DFTD3

    sevennet = loaded_model("7net-0")
    dispersed = mof_bulk_modulus.with_dispersion(sevennet)
    assert dispersed is not sevennet and sevennet.d3_calc is None and dispersed.base_calc is sevennet.base_calc
    (item,) = task_items("mofsimbench-bulk-modulus-small", data_root, limit=1)
    calf = mof_bulk_modulus.starting_structure(item)
    d3 = calf.copy()
    d3.calc = DFTD3(method="pbe", damping="d3bj")
    added = dispersed.attach(calf).get_potential_energy() - sevennet.attach(calf).get_potential_energy()
    assert added == pytest.approx(d3.get_potential_energy(), abs=1e-6) and added < -1.0  # eV, 44 atoms
    assert mof_bulk_modulus.with_dispersion(dispersed) is dispersed


def test_mof_bulk_modulus_adds_no_d3_where_it_cannot_or_need_not():
    emt = loaded_model("emt")  # trained without dispersion, but its card names no D3 functional
    assert mof_bulk_modulus.with_dispersion(emt) is emt and mof_bulk_modulus.NO_D3_NOTE in emt.notes
    gfn2 = loaded_model("gfn2-xtb")  # D4 inside
    assert mof_bulk_modulus.with_dispersion(gfn2) is gfn2 and mof_bulk_modulus.NO_D3_NOTE not in gfn2.notes
