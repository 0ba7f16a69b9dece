"""matcalc's crystal property sets: elastic moduli (MP binaries) and phonon heat capacity (Alexandria binaries).

The loader against the raw files and the stratified subset rule (recomputed here); the protocols against
physics the test can check independently (EMT: K_VRH of a cubic crystal is its E(V) bulk modulus; Cv per cell
scales with the cell and stays below 3 kB per atom); 7net-0 end to end on the cheapest crystal of each subset.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import re
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.eos import EquationOfState
from ase.filters import ExpCellFilter
from ase.optimize import BFGS
from ase.units import GPa
from helpers import REPO, loaded_model, run_task, task_items

from omni_bench import units
from omni_bench.items import Item
from omni_bench.loaders.matcalc_properties import ELEMENT_CLASSES, element_class
from omni_bench.protocols import elastic_moduli, phonon_heat_capacity
from omni_bench.task_registry import all_tasks

FILES = {"elastic-moduli": "mp-binary-pbe-elasticity-2025.1.json.gz",
         "heat-capacity": "alexandria-binary-pbe-phonon-2025.1.json.gz"}  # by full task
CLASSES = [name for name, _ in ELEMENT_CLASSES] + ["intermetallic"]


def _records(data_root, task):
    with gzip.open(data_root / "matcalc_benchmarks" / FILES[task], "rt") as fh:
        return json.load(fh)


def test_element_classes():
    assert element_class({"Na", "Cl"}) == "halide" and element_class({"Zn", "O"}) == "oxide"
    assert element_class({"O", "F"}) == "halide"  # first match wins: OF2 is a fluoride
    assert element_class({"Si", "C"}) == "boride-carbide-silicide" and element_class({"Cu", "Au"}) == "intermetallic"


@pytest.mark.parametrize("task", ["elastic-moduli", "heat-capacity"])
def test_subset_follows_its_rule_and_the_full_task_has_every_crystal(task, data_root):
    records = _records(data_root, task)
    subset = task_items(f"{task}-small", data_root)
    full = task_items(task, data_root)
    assert [i.id for i in full] == [r["mp_id"] for r in records]
    assert [i.id for i in task_items(f"{task}-small", data_root)] == [i.id for i in subset]  # deterministic
    rule = all_tasks()[f"{task}-small"].loader_params["subset"]
    expected = set()
    for name in CLASSES:  # recomputed from the raw records: per class, the first k small crystals by sha256(mp_id)
        pool = [r["mp_id"] for r in records if len(r["structure"]["sites"]) <= rule["max_sites"]
                and element_class({s["species"][0]["element"] for s in r["structure"]["sites"]}) == name]
        expected |= set(sorted(pool, key=lambda m: hashlib.sha256(m.encode()).hexdigest())[:rule["per_class"]])
    assert {i.id for i in subset} == expected
    assert Counter(i.groups["class"] for i in subset) == {name: rule["per_class"] for name in CLASSES}
    sizes = [len(i.structures["crystal"]) for i in subset]
    assert sizes == sorted(sizes), "the cheapest crystals come first, for --limit"
    by_id = {r["mp_id"]: r for r in records}
    for item in subset:
        for quantity, value in item.reference.items():
            assert value.value == float(by_id[item.id][quantity])


def test_heat_capacity_reference_is_per_primitive_cell(data_root):
    """Every reference Cv is below the classical 3 kB per atom of the given cell, and close to it for many:
    the values are per mole of the given (primitive) cells, which is what the protocol returns."""
    items = task_items("heat-capacity", data_root)
    ratio = np.array([units.convert(i.reference["heat_capacity"].value, "J/K/mol", "kB")
                      / (3 * len(i.structures["crystal"])) for i in items])
    assert ratio.max() < 1.0 and np.percentile(ratio, 95) > 0.97


def emt_model():
    """EMT as the runner loads a model (its relaxations, calculator and notes), with no notes yet."""
    model = loaded_model("emt")
    model.notes.clear()
    return model


def test_elastic_bulk_modulus_of_a_cubic_crystal_is_its_eos_bulk_modulus():
    """EMT copper: K_VRH from matcalc's strain-stress fit against ase.eos on the relaxed cell's E(V)."""
    item = Item("Cu", {"crystal": bulk("Cu", "fcc", a=3.65)})
    result = elastic_moduli.compute(item, emt_model(), elastic_moduli.PARAMS)
    relaxed = bulk("Cu", "fcc", a=3.65)
    relaxed.calc = EMT()
    BFGS(ExpCellFilter(relaxed), logfile=None).run(fmax=1e-4)
    cell = relaxed.cell.copy()
    volumes, energies = [], []
    for scale in np.linspace(0.98, 1.02, 9):
        relaxed.set_cell(cell * scale, scale_atoms=True)
        volumes.append(relaxed.get_volume())
        energies.append(relaxed.get_potential_energy())
    b0 = EquationOfState(volumes, energies).fit()[2] / GPa
    assert result["bulk_modulus_vrh"] == pytest.approx(b0, rel=0.02)
    assert 20 < result["shear_modulus_vrh"] < result["bulk_modulus_vrh"]


def test_born_stability_of_synthetic_tensors():
    """Cubic: stable iff C11 > |C12|, C11 + 2 C12 > 0 and C44 > 0 (the Voigt tensor's eigenvalues)."""
    def cubic(c11, c12, c44):
        voigt = np.zeros((6, 6))
        voigt[:3, :3] = c12
        np.fill_diagonal(voigt[:3, :3], c11)
        voigt[3:, 3:] = np.eye(3) * c44
        return voigt

    elastic_moduli.born_stability(cubic(170.0, 120.0, 75.0))  # copper-like
    for unstable, smallest in ((cubic(120.0, 170.0, 75.0), -50.0), (cubic(170.0, 120.0, -1.75), -1.75),
                               (cubic(100.0, -60.0, 30.0), -20.0)):
        with pytest.raises(elastic_moduli.ElasticallyUnstable, match=r"^elastically unstable: .*"
                           f"{smallest:.4g} GPa"):
            elastic_moduli.born_stability(unstable)


def test_elastically_unstable_crystal_fails_with_its_reason_after_a_tight_recheck():
    """EMT bcc copper (unstable to the Bain distortion, C11 < C12) stays bcc by symmetry when relaxed: its
    tensor fails Born stability at fmax 0.05 and again after the recheck at 0.001, so the item fails as
    ElasticallyUnstable with the eigenvalue and the note (started at EMT's bcc lattice constant, so the
    relaxations are short)."""
    model = emt_model()
    params = {**elastic_moduli.PARAMS, "check_stability": True, "recheck_fmax": 0.001}
    with pytest.raises(elastic_moduli.ElasticallyUnstable, match=r"elastically unstable: smallest eigenvalue .* "
                       r"GPa .* after relaxing to fmax 0.001 eV/A; K_VRH would be"):
        elastic_moduli.compute(Item("bcc", {"crystal": bulk("Cu", "bcc", a=2.8555)}), model, params)
    assert model.notes == {elastic_moduli.RECHECK_NOTE}


def test_heat_capacity_is_per_given_cell_and_below_the_classical_limit():
    params = {**phonon_heat_capacity.PARAMS, "min_length": 10.0}
    primitive = phonon_heat_capacity.compute(Item("p", {"crystal": bulk("Cu", "fcc", a=3.6)}), emt_model(), params)
    cubic = phonon_heat_capacity.compute(Item("c", {"crystal": bulk("Cu", "fcc", a=3.6, cubic=True)}), emt_model(),
                                         params)
    assert cubic["heat_capacity"] == pytest.approx(4 * primitive["heat_capacity"], rel=1e-3)
    per_atom_in_kb = units.convert(primitive["heat_capacity"], "J/K/mol", "kB")
    assert 0.9 * 3 < per_atom_in_kb < 3  # copper's Debye temperature (~340 K) is near 300 K


def test_dynamically_unstable_crystal_fails_with_its_imaginary_mode_count():
    """EMT bcc copper: its C11 < C12 makes the [110] transverse acoustic branch imaginary near Gamma, so the
    mesh has modes far below -0.1 THz and the item fails with their count, instead of a Cv of the rest."""
    params = {**phonon_heat_capacity.PARAMS, "min_length": 10.0, "imaginary_threshold_THz": -0.1}
    model = emt_model()
    with pytest.raises(phonon_heat_capacity.DynamicallyUnstable) as caught:
        phonon_heat_capacity.compute(Item("bcc", {"crystal": bulk("Cu", "bcc", a=2.8555)}), model, params)
    counted = re.fullmatch(r"dynamically unstable: (\d+) of (\d+) mesh modes imaginary \(min (-[\d.]+) THz; "
                           r"threshold -0.1 THz\)", str(caught.value))
    assert counted, str(caught.value)
    n_imaginary, n_modes, lowest = int(counted[1]), int(counted[2]), float(counted[3])
    assert 0 < n_imaginary < n_modes and n_modes % 3 == 0 and lowest < -0.5
    # the threshold is a parameter: below the lowest mode, nothing is imaginary and Cv is returned
    cv = phonon_heat_capacity.compute(Item("bcc", {"crystal": bulk("Cu", "bcc", a=2.8555)}), model,
                                      {**params, "imaginary_threshold_THz": 2 * lowest})
    assert cv["heat_capacity"] > 0 and phonon_heat_capacity.NEAR_ZERO_NOTE in model.notes
    # without a threshold (the task files' version 1), phonopy's own treatment: imaginary modes left out, noted
    model.notes.clear()
    cv = phonon_heat_capacity.compute(Item("bcc", {"crystal": bulk("Cu", "bcc", a=2.8555)}), model,
                                      {**params, "imaginary_threshold_THz": None})
    assert cv["heat_capacity"] > 0 and model.notes == {phonon_heat_capacity.IMAGINARY_NOTE}


@pytest.mark.slow
@pytest.mark.parametrize("task", ["elastic-moduli-small", "heat-capacity-small"])
def test_7net0_on_the_cheapest_crystal(task, tmp_path, data_root):
    """The first crystal, and the same value as the committed result of 7net-0: the protocol's stability
    parameters, off by default, leave version 1's computation as it was (the task file's inputs_hash_alias)."""
    loaded_model("7net-0")  # shared with the other test files
    [outcome] = run_task(task, "7net-0", tmp_path, data_root=data_root, limit=1)
    assert outcome.n_failed == 0
    headline = outcome.metrics["bulk_mae" if task.startswith("elastic") else "mae"]
    # Plausible bounds: moduli of binaries are tens to hundreds of GPa, Cv tens of J/K/mol per cell.
    assert headline["n"] == 1 and math.isfinite(headline["value"]) and headline["value"] < 100
    ours = pd.read_csv(tmp_path / "out" / "7net-0" / f"{task}.predictions.csv")
    committed = pd.read_csv(REPO / "reports" / "leaderboard-results" / "7net-0" / f"{task}.predictions.csv")
    merged = ours.merge(committed, on=["id", "quantity"], suffixes=("", "_committed"))
    assert len(merged) == len(ours) > 0
    assert merged["predicted"].to_numpy() == pytest.approx(merged["predicted_committed"].to_numpy(), rel=1e-4)


@pytest.mark.slow
def test_7net0_sini_loose_relaxation_gives_an_unstable_tensor_that_the_recheck_fixes(data_root):
    """7net-0 on SiNi (mp-999192): relaxed to fmax 0.05 its tensor is not positive definite (K_VRH ~1,900 GPa
    against 173.8), which the protocol catches; relaxed on to the task's recheck fmax it is stable and its
    K_VRH near the reference."""
    [item] = [i for i in task_items("elastic-moduli-small", data_root) if i.id == "mp-999192"]
    model = loaded_model("7net-0")
    params = {**elastic_moduli.PARAMS, **all_tasks()["elastic-moduli-small"].run_params, "check_stability": True,
              "recheck_fmax": 0.001}
    with pytest.raises(elastic_moduli.ElasticallyUnstable, match="elastically unstable"):
        elastic_moduli.compute(item, model, {**params, "recheck_fmax": None})
    model.notes.clear()
    result = elastic_moduli.compute(item, model, params)
    assert elastic_moduli.RECHECK_NOTE in model.notes
    assert result["bulk_modulus_vrh"] == pytest.approx(item.reference["bulk_modulus_vrh"].value, rel=0.1)
