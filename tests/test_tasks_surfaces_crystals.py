"""Tasks mamun-noble(-relaxed), matpes-elements-{pbe,r2scan} and wbm-formation: protocols validated with
the tabulated DFT energies, loader checks, the adsorbate anomaly checks, and real models on small slices."""

from __future__ import annotations

import csv
import json
import math
import shutil

import numpy as np
import pytest
from helpers import card_file, run_task, task_items

from omni_bench.commands.run import format_table
from omni_bench.executors.serial import run_serial
from omni_bench.items import Item
from omni_bench.loaders._structure_dicts import atoms_from_structure_dict, read_json_gz
from omni_bench.models.registry import find_card, resolve_models
from omni_bench.protocols import adsorption_energy
from omni_bench.reporting.load import load_results
from omni_bench.run.options import RunOptions
from omni_bench.store import ResultStore, StoredItem
from omni_bench.task_registry import all_tasks

TABULATED = "omni_bench.models.factories:tabulated"


def _by_id(items: list[Item]) -> dict[str, Item]:
    return {i.id: i for i in items}


def _predictions(outcome) -> list[dict]:
    path = outcome.results_file.with_name(f"{outcome.task}.predictions.csv")
    with open(path) as fh:
        return list(csv.DictReader(fh))


# --- protocols against the published DFT numbers (tabulated model) ---------------------------------------

@pytest.mark.parametrize(("task", "key", "metric", "n_scored"), [
    ("mamun-noble", "ref_energy:BEEF-vdW", "mae", 31),
    ("matpes-elements-pbe", "ref_energy:PBE", "mae", 89),
    ("matpes-elements-r2scan", "ref_energy:r2SCAN", "mae", 89),
    ("wbm-formation", "ref_energy:PBE", "mae", 972),
    # MP2020-corrected energies, from a card that declares that convention: scored against the corrected reference
    ("wbm-formation", "ref_energy:PBE+MP2020", "mae", 972),
])
def test_tabulated_dft_energies_reproduce_the_reference(task, key, metric, n_scored, tmp_path, data_root):
    model = TABULATED
    if key == "ref_energy:PBE+MP2020":
        model = tmp_path / "corrected.yaml"
        model.write_text(f"name: corrected\ndescription: tabulated\nfactory: {TABULATED}\nlevel_of_theory: PBE\n"
                         "trained_with_dispersion: false\nenergy_convention: mp2020-corrected\n")
    [outcome] = run_task(task, str(model), tmp_path, data_root=data_root, model_args=[f"key={key}"])
    mae = outcome.metrics[metric]
    assert (mae["n"], mae["n_failed"], outcome.n_failed) == (n_scored, 0, 0)
    assert mae["value"] < 1e-6
    if task == "wbm-formation":
        assert outcome.metrics["f1_unstable"]["value"] == 1.0


def test_adsorption_energy_derive_propagates_flags_and_failures(data_root):
    items = task_items("mamun-noble-relaxed", data_root)
    adslab = _by_id(items)["Cu12/Hstar"]
    [reaction] = adslab.meta["reactions"]
    params = {**adsorption_energy.PARAMS, "relax": True}

    def stored(item_id, **values):
        return StoredItem(item_id, "ok", {"energy": 1.0, **values}, None, [], None)

    results = {sid: stored(sid) for sid in reaction["stoichiometry"]}
    by_quantity = {p.quantity: p for p in adsorption_energy.derive([adslab], results, params)}
    expected = sum(reaction["stoichiometry"].values())  # every energy is 1 eV
    assert by_quantity["adsorption_energy"].value == pytest.approx(expected)
    assert by_quantity["anomaly"].value == 0
    assert by_quantity["adsorption_energy_normal"].value == pytest.approx(expected)

    results["gas/H2gas"] = stored("gas/H2gas", dissociated=1.0)  # a broken gas reference spoils the reaction
    by_quantity = {p.quantity: p for p in adsorption_energy.derive([adslab], results, params)}
    assert by_quantity["anomaly"].value == 1 and by_quantity["dissociated"].value == 1
    assert "adsorption_energy_normal" not in by_quantity

    results["Cu12/star"] = StoredItem("Cu12/star", "failed", {}, "RuntimeError: boom", [], None)
    failed = adsorption_energy.derive([adslab], results, params)
    assert all(p.value is None and "Cu12/star" in p.error for p in failed)


# --- loaders ------------------------------------------------------------------------------------------------

def test_mamun_items_are_shared_structures_ordered_before_their_reactions(data_root):
    items = task_items("mamun-noble", data_root)
    kinds = [i.meta["kind"] for i in items]
    assert (kinds.count("gas"), kinds.count("slab"), kinds.count("adslab")) == (3, 5, 31)
    seen: set[str] = set()
    for item in items:
        seen.add(item.id)
        for reaction in item.meta.get("reactions", []):
            assert set(reaction["stoichiometry"]) <= seen, "a reaction's structures must come no later than it"
            assert reaction["reference"].unit == "eV"
            coefficients = {_by_id(items)[sid].meta["kind"]: c for sid, c in reaction["stoichiometry"].items()}
            assert coefficients["slab"] == -1 and coefficients["adslab"] == 1


def test_mamun_fixed_atoms_are_the_bottom_two_layers_and_adsorbates_the_nonmetals(data_root):
    for item in task_items("mamun-noble", data_root):
        atoms = item.structures[item.meta["kind"]]
        assert atoms.info["charge"] == 0 and atoms.info["spin"] == 1
        if item.meta["kind"] == "gas":
            assert not atoms.constraints and atoms.pbc.all()
            continue
        fixed = sorted(atoms.constraints[0].get_indices())
        metal = [i for i, z in enumerate(atoms.numbers) if z > 18]
        lowest_eight = sorted(sorted(metal, key=lambda i: atoms.positions[i, 2])[:8])
        assert fixed == lowest_eight
        if item.meta["kind"] == "adslab":
            assert sorted(item.meta["adsorbate_indices"]) == [i for i in range(len(atoms)) if i not in metal]


def test_matpes_atoms_carry_a_spin_multiplicity_of_the_right_parity(data_root):
    items = _by_id(task_items("matpes-elements-pbe", data_root))
    assert len(items) == 89
    for item in items.values():
        atom = item.structures["atom"]
        assert len(atom) == 1 and item.reference["cohesive_energy"].unit == "eV/atom"
        assert (atom.info["spin"] - 1) % 2 == atom.numbers[0] % 2  # unpaired electrons have the electrons' parity
    # MatPES O and Fe atoms are spin-polarised (1.5 and 3.5 Bohr magnetons); Pd is closed-shell.
    assert [items[e].structures["atom"].info["spin"] for e in ("O", "Fe", "Pd", "Cu")] == [3, 5, 1, 2]


def test_wbm_element_references_precede_the_compounds_that_use_them(data_root):
    items = task_items("wbm-formation", data_root)
    elements = [i for i in items if i.meta["kind"] == "element"]
    compounds = [i for i in items if i.meta["kind"] == "compound"]
    assert len(compounds) == 972 and len(elements) == len({i.meta["element"] for i in elements})
    listed: set[str] = set()
    for item in items:
        crystal = item.structures["crystal"]
        if item.meta["kind"] == "element":
            assert set(crystal.get_chemical_symbols()) == {item.meta["element"]}
            listed.add(item.meta["element"])
        else:
            assert set(item.meta["composition"]) <= listed
            assert sum(item.meta["composition"].values()) == len(crystal)
            assert item.reference["formation_energy"].unit == "eV/atom"
            assert (item.groups["mp2020"] == "corrected") == (item.meta["mp2020_correction"] != 0)


def test_structure_dicts_parse_like_pymatgen(data_root):
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    records = read_json_gz(data_root / "matcalc_benchmarks/wbm-random-pbe52-equilibrium-2025.1.json.gz")[:20]
    matpes = read_json_gz(data_root / "matcalc_benchmarks/MatPES-PBE-Element-Refs.json.gz")
    for payload in [r["structure"] for r in records] + [matpes["P"]["structure"], matpes["Fe"]["structure_atomic"]]:
        mine = atoms_from_structure_dict(payload, "test")
        theirs = AseAtomsAdaptor.get_atoms(Structure.from_dict(payload))
        assert mine.get_chemical_symbols() == theirs.get_chemical_symbols()
        assert np.allclose(mine.cell.array, theirs.cell.array) and np.allclose(mine.positions, theirs.positions)


# --- relaxation anomaly checks on the DFT geometries ---------------------------------------------------------

@pytest.fixture(scope="module")
def cu_items(data_root) -> dict[str, Item]:
    return _by_id(task_items("mamun-noble-relaxed", data_root))


def _flags(item: Item, final) -> dict[str, bool]:
    initial = item.structures[item.meta["kind"]]
    return adsorption_energy.check_relaxation(initial, final, item, adsorption_energy.PARAMS)


def test_unmoved_structures_raise_no_flag(cu_items):
    for item_id in ("Cu12/OHstar", "Cu12/CH3star", "Cu12/star", "gas/CH4gas"):
        item = cu_items[item_id]
        assert not any(_flags(item, item.structures[item.meta["kind"]].copy()).values()), item_id


def test_lifted_adsorbate_is_desorbed(cu_items):
    item = cu_items["Cu12/OHstar"]
    final = item.structures["adslab"].copy()
    final.positions[item.meta["adsorbate_indices"], 2] += 3.0
    assert _flags(item, final)["desorbed"]


def test_stretched_bond_is_dissociated(cu_items):
    item = cu_items["Cu12/OHstar"]
    final = item.structures["adslab"].copy()
    oxygen, hydrogen = sorted(item.meta["adsorbate_indices"], key=lambda i: -final.numbers[i])
    bond = final.positions[hydrogen] - final.positions[oxygen]
    final.positions[hydrogen] += 0.4 * bond / np.linalg.norm(bond)  # O-H 0.98 -> 1.38 A
    flags = _flags(item, final)
    assert flags["dissociated"] and not flags["desorbed"] and not flags["site_moved"]
    water = cu_items["gas/H2Ogas"]
    final = water.structures["gas"].copy()
    final.positions[0] += [0.0, 0.0, 1.0]
    assert _flags(water, final) == {"dissociated": True}


def test_hop_to_the_neighbouring_site_is_site_moved(cu_items):
    item = cu_items["Cu12/Hstar"]
    initial = item.structures["adslab"]
    hydrogen = item.meta["adsorbate_indices"][0]
    a1, a2 = initial.cell[0] / 2, initial.cell[1] / 2  # the 2x2 cell's primitive surface vectors
    hopped, nudged = initial.copy(), initial.copy()
    hopped.positions[hydrogen] += (a1 + a2) / 3  # hollow -> the other hollow (or top)
    nudged.positions[hydrogen] += [0.1, 0.05, 0.0]
    assert _flags(item, hopped)["site_moved"]
    assert not _flags(item, nudged)["site_moved"]


def test_neighbour_crossing_the_tolerance_without_a_shift_is_not_site_moved(cu_items):
    # Au OH* sits on an asymmetric bridge: its third Au at 1.28 x the shortest distance. Lifting the OH
    # brings that Au inside the 1.25 x tolerance, changing the neighbour set, but the OH went nowhere.
    item = cu_items["Au12/OHstar"]
    initial, adsorbate = item.structures["adslab"], item.meta["adsorbate_indices"]
    slab = [i for i in range(len(initial)) if i not in adsorbate]
    lifted = initial.copy()
    lifted.positions[adsorbate, 2] += 0.5
    anchor = adsorption_energy.binding_atom(initial, adsorbate, slab)
    tolerance = adsorption_energy.PARAMS["site_tolerance"]
    before, after = (adsorption_energy.site(a, anchor, slab, tolerance) for a in (initial, lifted))
    assert before != after
    assert not _flags(item, lifted)["site_moved"]


def test_displaced_surface_atom_is_distorted(cu_items):
    for item_id in ("Cu12/star", "Cu12/Ostar"):
        item = cu_items[item_id]
        final = item.structures[item.meta["kind"]].copy()
        top = int(np.argmax(final.positions[:, 2] * (final.numbers > 18)))
        final.positions[top] += [0.8, 0.0, 0.0]
        assert _flags(item, final)["surface_distorted"], item_id


def test_relaxed_task_counts_anomalies_consistently_with_emt(tmp_path, data_root):
    # EMT is not a catalysis model; it is here because it relaxes in milliseconds and so exercises the
    # whole relax -> check -> derive -> score path.
    [outcome] = run_task("mamun-noble-relaxed", "emt", tmp_path, data_root=data_root, limit=3)
    m = outcome.metrics
    assert outcome.n_failed == 0 and m["mae"]["n"] == 3  # Cu H*, O*, OH*
    n_anomalous = round(m["anomaly_fraction"]["value"] * m["anomaly_fraction"]["n"])
    assert m["mae_normal"]["n"] == m["mae"]["n"] - n_anomalous
    for row in _predictions(outcome):
        if row["quantity"] in (*adsorption_energy.FLAGS, "anomaly", "not_converged"):
            assert float(row["predicted"]) in (0.0, 1.0)


# --- real models on small slices ---------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("model", ["7net-0", "chgnet"])
def test_real_model_adsorption_energies_are_plausible(model, tmp_path, data_root):
    [single] = run_task("mamun-noble", model, tmp_path / "single", data_root=data_root, limit=3)
    [relaxed] = run_task("mamun-noble-relaxed", model, tmp_path / "relaxed", data_root=data_root, limit=1)
    assert single.n_failed == relaxed.n_failed == 0
    assert single.metrics["mae"]["n"] == 3 and relaxed.metrics["mae"]["n"] == 1
    # CatBench calls an adsorption-energy error above 2 eV an energy anomaly: a sane model stays below.
    assert math.isfinite(single.metrics["mae"]["value"]) and single.metrics["max_abs_error"]["value"] < 2.0
    assert math.isfinite(relaxed.metrics["mae"]["value"]) and relaxed.metrics["mae"]["value"] < 2.0  # one reaction


@pytest.mark.slow
@pytest.mark.parametrize(("model", "task"), [
    ("7net-0", "matpes-elements-pbe"), ("chgnet", "matpes-elements-pbe"), ("chgnet-r2scan", "matpes-elements-r2scan"),
])
def test_real_model_cohesive_energies_beat_no_binding(model, task, tmp_path, data_root):
    [outcome] = run_task(task, model, tmp_path, data_root=data_root, limit=6)
    rows = _predictions(outcome)
    assert outcome.n_failed == 0 and len(rows) == 6
    assert all(math.isfinite(float(r["predicted"])) for r in rows)
    # A model that predicted no binding at all would have MAE = mean reference cohesive energy.
    assert outcome.metrics["mae"]["value"] < np.mean([abs(float(r["reference"])) for r in rows])


@pytest.mark.slow
@pytest.mark.parametrize("model", ["7net-0", "chgnet"])
def test_real_model_formation_energies_beat_zero(model, tmp_path, data_root):
    [outcome] = run_task("wbm-formation", model, tmp_path, data_root=data_root, limit=16)
    rows = _predictions(outcome)
    assert outcome.n_failed == 0 and len(rows) >= 4
    assert all(math.isfinite(float(r["predicted"])) for r in rows)
    # Predicting 0 eV/atom for everything would give MAE = mean |reference|.
    assert outcome.metrics["mae"]["value"] < np.mean([abs(float(r["reference"])) for r in rows])


def test_each_model_is_scored_against_the_reference_in_its_own_convention(tmp_path, data_root, capsys):
    """The tabulated model returns the data's energies: raw ones for a 'raw' card, corrected ones for an
    'mp2020-corrected' card; each then reproduces its own reference exactly and misses the other."""
    assert find_card("chgnet").energy_convention == "mp2020-corrected"
    assert find_card("7net-0").energy_convention == "raw"
    raw = card_file(tmp_path, "raw", "omni_bench.models.factories:tabulated", args={"key": "ref_energy:PBE"})
    corrected = card_file(tmp_path, "corrected", "omni_bench.models.factories:tabulated",
                          args={"key": "ref_energy:PBE+MP2020"}, energy_convention="mp2020-corrected")
    undeclared = card_file(tmp_path, "undeclared", "omni_bench.models.factories:tabulated",
                           args={"key": "ref_energy:PBE+MP2020"})  # corrected energies, card says raw (default)
    store = ResultStore(tmp_path / "s.db")
    options = RunOptions(store=store, out_dir=tmp_path / "out", data_root=data_root, device="cpu", limit=150,
                         progress=False)
    outcomes = run_serial(resolve_models([str(raw), str(corrected), str(undeclared)]),
                              [all_tasks()["wbm-formation"]], options)
    store.close()
    assert [o.reference_convention for o in outcomes] == ["raw", "mp2020-corrected", "raw"]
    assert [o.metrics["mae"]["value"] for o in outcomes[:2]] == pytest.approx([0, 0], abs=1e-6)
    assert outcomes[1].metrics["mae_by_mp2020[mp2020=corrected]"]["n"] > 10
    assert outcomes[2].metrics["mae"]["value"] > 0.05  # the convention matters on this slice
    outcomes.pop()
    for label in ("raw", "corrected"):
        record = json.loads((tmp_path / "out" / label / "wbm-formation.json").read_text())
        assert record["card"]["energy_convention"] == ("raw" if label == "raw" else "mp2020-corrected")
    table = format_table(outcomes)
    assert "reference" in table.splitlines()[0] and "mp2020-corrected" in table
    shutil.rmtree(tmp_path / "out" / "undeclared")
    for result in load_results([tmp_path / "out"]):  # each CSV holds the reference its model was scored against
        rows = result.predictions
        assert (rows["predicted"] - rows["reference"]).abs().max() < 1e-6
