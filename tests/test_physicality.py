"""The physicality suite: dimer curves, separability, extensivity, invariances, force consistency and energy
conservation, with no reference data.

Each check runs on EMT (physical, so it passes) and on an EMT with one planted fault (forces of the wrong
sign, a spurious minimum, an energy that depends on orientation, forces with a curl, an energy that is not a
sum over atoms), through the real runner on small variants of the shipped task files; the fault must show up
in the metric that claims to catch it, and in no unrelated one. One slow test runs 7net-0.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from helpers import REPO, TWO_CHANNEL_CARD, task_items

from omni_bench.data import resolve_data_root
from omni_bench.executors.serial import run_serial
from omni_bench.loaders import diatomics as diatomics_loader
from omni_bench.loaders import physicality_structures, separability_pairs
from omni_bench.models.registry import resolve_models
from omni_bench.protocols import diatomic_curves, energy_conservation, separability
from omni_bench.reporting import figures, physicality_plots
from omni_bench.reporting.load import load_results
from omni_bench.run.options import RunOptions
from omni_bench.store import ResultStore
from omni_bench.task_registry import all_tasks
from omni_bench.taskspec import load_task

SUITE = ["diatomics", "separability", "extensivity", "invariances", "force-consistency", "energy-conservation"]
#: small variants of the shipped tasks that EMT covers (Cu, Al, Pt, Au, Ni, Ag, Pd; H, C, N, O crudely)
EMT_EDITS = {
    "diatomics": {"dataset": {"params": {"elements": ["Cu", "Al"], "pairs": ["Cu-O"]}},
                  "counts": {"items": 3}, "protocol": {"params": {"points": 60, "consistency_every": 5}}},
    "separability": {"counts": {"items": 32}},
    "extensivity": {"dataset": {"params": {"elements": ["Al", "Cu", "Pt"]}}, "counts": {"items": 3}},
    "invariances": {"dataset": {"params": {"s22": ["Water_dimer"], "dcdft": ["Cu"], "water_box": 0}},
                    "counts": {"items": 2}},
    "force-consistency": {"dataset": {"params": {"s22": ["Water_dimer"], "dcdft": ["Cu"], "water_box": 0}},
                          "counts": {"items": 2}, "protocol": {"params": {"components": 6}}},
    "energy-conservation": {"dataset": {"params": {"s22": [], "dcdft": ["Cu"], "ice13": [], "mofsimbench": []}},
                            "protocol": {"params": {"thermalisation_steps": 20, "steps": 200}},
                            "counts": {"items": 1}},
}


def _merge(base: dict, edit: dict) -> dict:
    out = dict(base)
    for key, value in edit.items():
        out[key] = _merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def emt_task(folder: Path, name: str, edits: dict | None = None):
    """The shipped task file with ``edits[name]`` (default ``EMT_EDITS``) merged in, written to ``folder`` and
    loaded."""
    raw = _merge(yaml.safe_load((REPO / "tasks" / f"{name}.yaml").read_text()), (edits or EMT_EDITS).get(name, {}))
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_task(folder / f"{name}.yaml")


def run_into(folder: Path, models: list[str], specs: list, *, channels: list[str] | None = None,
             model_args: list[str] | None = None) -> Path:
    """helpers.run_into with the reference data root ($OMNI_BENCH_DATA): the surface pairs, the ice and the MOF
    come from other tasks' data files."""
    store = ResultStore(folder / "store.sqlite")
    options = RunOptions(store=store, out_dir=folder / "out", data_root=resolve_data_root()[0], data_origin="test",
                         device="cpu", progress=False)
    try:  # the cards name this module's factories: the test trusts its own code
        run_serial(resolve_models(models, channels, model_args, trust_code=True), specs, options)
    finally:
        store.close()
    return folder / "out"


def run_suite(folder: Path, model: str, tasks: list[str], model_args: list[str] | None = None,
              channels: list[str] | None = None) -> dict:
    """Run the EMT variants of ``tasks`` for ``model``; {(label, task): TaskResult}."""
    specs = [emt_task(folder / "tasks", name) for name in tasks]
    out = run_into(folder, [model], specs, model_args=model_args, channels=channels)
    return {(r.label, r.task): r for r in load_results([out])}


def metric(result, name: str) -> float:
    return result.metrics[name]["value"]


def values(result, quantity: str) -> dict[str, float]:
    rows = result.predictions[(result.predictions["quantity"] == quantity) & (result.predictions["status"] == "ok")]
    return dict(zip(rows["id"], rows["predicted"], strict=True))


# --- planted faults: EMT underneath, one unphysical feature on top -------------------------------------------


class _Planted(Calculator):
    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self):
        super().__init__()
        self.inner = EMT()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        wanted = [p for p in properties if p in ("energy", "forces", "stress")] or ["energy"]
        if self.atoms.pbc.all() and "stress" not in wanted:
            wanted.append("stress")
        self.inner.calculate(self.atoms, wanted, system_changes)
        energy, forces = self.inner.results["energy"], np.array(self.inner.results["forces"])
        energy, forces = self.plant(self.atoms, energy, forces)
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}
        if "stress" in self.inner.results:
            self.results["stress"] = self.inner.results["stress"]

    def plant(self, atoms: Atoms, energy: float, forces: np.ndarray) -> tuple[float, np.ndarray]:
        raise NotImplementedError


class _WrongSign(_Planted):
    """Forces of the wrong sign: the gradient of the energy, not minus it."""

    def plant(self, atoms, energy, forces):
        return energy, -forces


class _Dip(_Planted):
    """A narrow Gaussian well of ``depth`` eV at ``r0`` A added to every pair of a molecule (forces to match):
    a spurious minimum on the dimer curve, beyond EMT's own."""

    def __init__(self, depth: float = 1.0, r0: float = 4.8, width: float = 0.3):
        super().__init__()
        self.depth, self.r0, self.width = depth, r0, width

    def plant(self, atoms, energy, forces):
        if atoms.pbc.any():
            return energy, forces
        forces = forces.copy()
        for i in range(len(atoms)):
            for j in range(i + 1, len(atoms)):
                d = atoms.positions[j] - atoms.positions[i]
                r = np.linalg.norm(d)
                g = -self.depth * np.exp(-((r - self.r0) ** 2) / (2 * self.width**2))
                energy += g
                de_dr = -g * (r - self.r0) / self.width**2
                forces[j] -= de_dr * d / r
                forces[i] += de_dr * d / r
        return energy, forces


class _Oriented(_Planted):
    """An energy that depends on orientation: c x sum_i (x_i - mean x)^2, translation and permutation invariant
    and conservative (its forces are exactly minus its gradient), but not rotation invariant."""

    def __init__(self, c: float = 0.05):
        super().__init__()
        self.c = c

    def plant(self, atoms, energy, forces):
        x = atoms.positions[:, 0] - atoms.positions[:, 0].mean()
        forces = forces.copy()
        forces[:, 0] -= 2 * self.c * x
        return energy + self.c * float(np.sum(x**2)), forces


class _Curl(_Planted):
    """Forces with a curl, c z x (r - centre): not the gradient of any energy. The energy is EMT's."""

    def __init__(self, c: float = 0.3):
        super().__init__()
        self.c = c

    def plant(self, atoms, energy, forces):
        offset = atoms.positions - atoms.positions.mean(axis=0)
        return energy, forces + self.c * np.cross([0.0, 0.0, 1.0], offset)


class _NotASum(_Planted):
    """An energy with a term in the square of the atom count: not a sum over atoms (a global readout)."""

    def __init__(self, c: float = 0.01):
        super().__init__()
        self.c = c

    def plant(self, atoms, energy, forces):
        return energy + self.c * len(atoms) ** 2, forces


class _Typed(_Planted):
    """EMT that says it covers H and Cu only (a SevenNet-style ``type_map``), though EMT computes O too."""

    type_map = {1: 0, 29: 1}

    def plant(self, atoms, energy, forces):
        return energy, forces


class _NeedsNeighbour(_Planted):
    """EMT that raises for a lone atom (a model whose graph needs an edge), as some calculators do."""

    def plant(self, atoms, energy, forces):
        if len(atoms) == 1:
            raise RuntimeError("no neighbours within the cutoff")
        return energy, forces


class _FailsShortRange(_Planted):
    """EMT that raises below 0.3 A: a covered element whose curve fails, which must stay a failure."""

    def plant(self, atoms, energy, forces):
        if len(atoms) == 2 and atoms.get_distance(0, 1) < 0.3:
            raise RuntimeError("atoms too close")
        return energy, forces


def typed_emt() -> Calculator:
    return _Typed()


def needs_neighbour_emt() -> Calculator:
    return _NeedsNeighbour()


def fails_short_range_emt() -> Calculator:
    return _FailsShortRange()


def wrong_sign_emt() -> Calculator:
    return _WrongSign()


def dip_emt() -> Calculator:
    return _Dip()


def oriented_emt() -> Calculator:
    return _Oriented()


def curl_emt() -> Calculator:
    return _Curl()


def not_a_sum_emt() -> Calculator:
    return _NotASum()


@pytest.fixture(scope="module")
def emt_suite(tmp_path_factory) -> dict:
    """EMT on the EMT variants of the whole suite, run once for the tests that read it."""
    return run_suite(tmp_path_factory.mktemp("emt-physicality"), "emt", SUITE)


# --- the tasks as shipped ------------------------------------------------------------------------------------


def test_the_suite_is_the_six_physicality_tasks_with_stated_thresholds():
    tasks = {name: spec for name, spec in all_tasks().items() if "physicality" in spec.suites}
    assert sorted(tasks) == sorted(SUITE)
    for spec in tasks.values():
        assert spec.domain == "physicality" and spec.scale.value > 0 and spec.scale.source
        assert spec.level_of_theory.startswith("none")
    # only the surface pairs and the ice and MOF runs read task data: three small files of other tasks
    assert {name for name, spec in tasks.items() if spec.needs_data} == {"separability", "energy-conservation"}
    assert sorted(f.path.split("/")[0] for name in ("separability", "energy-conservation") for f in tasks[name].files) \
        == ["DMC_ICE13", "MOFSimBench", "Mamun2019_CatBench_noble_subset"]


def test_loaders_give_the_declared_items_without_data():
    pairs = diatomics_loader.load({}, {"elements": ["H", "Cu"], "pairs": ["C-H"]})
    assert [(p.id, p.groups["kind"]) for p in pairs] == [("H-H", "homonuclear"), ("Cu-Cu", "homonuclear"),
                                                         ("C-H", "heteronuclear")]
    box = physicality_structures.water_box(8, seed=0)
    assert len(box) == 24 and box.pbc.all()
    assert sum(box.get_masses()) / box.get_volume() / 0.602214 == pytest.approx(0.997, rel=1e-3)  # g/cm^3
    distances = box.get_all_distances(mic=True)[np.triu_indices(24, 1)]
    assert distances.min() > 0.9  # O-H bonds, no atoms on top of each other


def test_task_data_gives_surface_pairs_an_ice_and_a_mof(data_root):
    pairs = {item.id: item for item in task_items("separability", data_root)}
    assert len(pairs) == 32 and sum(item.groups["kind"] == "surface" for item in pairs.values()) == 10
    oh = pairs["Cu12/OHstar"]  # the adsorbate+slab geometry split by the data's adsorbate_indices
    assert oh.structures["monomer_1"].get_chemical_formula() == "Cu12"
    assert oh.structures["monomer_2"].get_chemical_formula() == "HO" and oh.structures["monomer_2"].pbc.all()
    runs = {item.id: item for item in task_items("energy-conservation", data_root)}
    assert {k: (len(i.structures["structure"]), i.groups["kind"]) for k, i in runs.items()} == {
        "Water_dimer": (6, "molecule"), "W2": (2, "crystal"), "ice-XVII": (18, "ice"), "calf": (44, "mof")}
    assert runs["calf"].structures["structure"].get_chemical_formula() == "C12H8N12O8Zn4"
    mamun = {f.path: data_root / f.path for f in all_tasks()["separability"].files}
    with pytest.raises(Exception, match="not an adsorbate"):  # the clean slab is no pair
        separability_pairs.load(mamun, {"s22": [], "surfaces": ["Cu12/star"]})
    with pytest.raises(Exception, match="must list its file ice_Ih.vasp"):
        physicality_structures.load({}, {"ice13": ["Ih"]})


# --- physical curves pass, planted faults are caught ---------------------------------------------------------


def test_emt_passes_every_check_of_the_suite(emt_suite):
    r = {task: emt_suite[("emt", task)] for task in SUITE}
    assert all(result.n_failed == 0 for result in r.values()), {t: x.record["failures"] for t, x in r.items()}
    assert metric(r["diatomics"], "unphysical_fraction") == 0
    assert metric(r["diatomics"], "force_energy_deviation_max") < 1e-3
    assert metric(r["diatomics"], "tortuosity_excess_max") < 1e-3
    assert metric(r["separability"], "residual_max") < 1e-6  # meV: EMT is a sum of local terms
    assert metric(r["extensivity"], "residual_max") < 1e-6  # meV/atom
    assert metric(r["invariances"], "force_deviation_max") < 1e-9
    assert metric(r["invariances"], "energy_deviation_max") < 1e-9
    assert metric(r["force-consistency"], "force_error_max") < 1e-3  # eV/A, five-point difference
    assert metric(r["force-consistency"], "stress_error_max") < 1e-3  # GPa
    assert metric(r["energy-conservation"], "drift_max") < 0.1  # meV/atom per ps, Cu at 300 K, 1 fs


def test_curves_are_recorded_for_the_plots_and_drawn(emt_suite):
    result = emt_suite[("emt", "diatomics")]
    curve = values(result, "curve_energy")
    assert len(curve) == 3 * 60 and "Cu-Cu@0.1000" in curve and "Cu-Cu@6.0000" in curve
    assert curve["Cu-Cu@6.0000"] == pytest.approx(0.0, abs=1e-9)  # against the isolated atoms
    frame = physicality_plots.curve_frame([result])
    assert set(frame["pair"]) == {"Cu-Cu", "Al-Al", "Cu-O"} and len(frame) == 180
    html = "".join(physicality_plots.task_figures("diatomics", [result], figures.styles(["emt"])))
    assert 'id="curves-diatomics"' in html and "Cu-O" in html
    separability = emt_suite[("emt", "separability")]  # no curve points: no figure
    assert physicality_plots.task_figures("separability", [separability], figures.styles(["emt"])) == []


def test_wrong_sign_forces_fail_force_checks_and_blow_up_md(tmp_path):
    r = run_suite(tmp_path, "test_physicality:wrong_sign_emt", ["diatomics", "force-consistency",
                                                                "energy-conservation"])
    label = "test_physicality:wrong_sign_emt"
    curves = r[(label, "diatomics")]
    assert min(values(curves, "force_energy_deviation").values()) > 1.0  # |F + dE/dr| = 2|F|
    assert metric(curves, "unphysical_fraction") == 1.0
    assert metric(curves, "spurious_minima_max") == 0 and metric(curves, "no_wall_fraction") == 0  # energy is EMT's
    assert metric(r[(label, "force-consistency")], "force_error_mean") > 0.1
    md = r[(label, "energy-conservation")]
    assert md.n_failed == 1 or metric(md, "drift_max") > 10 * md.record["task"]["config"]["scale"]["value"]


def test_a_spurious_minimum_is_counted_and_nothing_else_moves(tmp_path):
    label = "test_physicality:dip_emt"
    curves = run_suite(tmp_path, label, ["diatomics"])[(label, "diatomics")]
    spurious = values(curves, "spurious_minima")
    assert spurious == {"Cu-Cu": 1.0, "Al-Al": 1.0, "Cu-O": 1.0}
    assert values(curves, "spurious_minima_bonding") == spurious  # at 4.8 A, in MLIP Arena's range
    assert all(v > 1.01 for v in values(curves, "tortuosity").values())  # the dip adds up to 2 eV of variation
    assert metric(curves, "force_energy_deviation_max") < 1e-3  # the dip's forces are its gradient
    assert metric(curves, "no_wall_fraction") == 0 and metric(curves, "unphysical_fraction") == 1.0


def test_an_orientation_dependent_energy_breaks_rotation_only(tmp_path):
    label = "test_physicality:oriented_emt"
    r = run_suite(tmp_path, label, ["invariances", "force-consistency"])
    invariances = r[(label, "invariances")]
    assert metric(invariances, "force_deviation_mean") > invariances.record["task"]["config"]["scale"]["value"]
    assert metric(invariances, "energy_deviation_max") > 1.0  # meV/atom
    assert metric(r[(label, "force-consistency")], "force_error_max") < 1e-3  # still conservative


def test_forces_with_a_curl_fail_consistency_and_drift_in_nve(tmp_path):
    label = "test_physicality:curl_emt"
    r = run_suite(tmp_path, label, ["force-consistency", "energy-conservation", "invariances"])
    scale = {task: r[(label, task)].record["task"]["config"]["scale"]["value"] for task in
             ("force-consistency", "energy-conservation")}
    assert metric(r[(label, "force-consistency")], "force_error_max") > scale["force-consistency"]
    assert metric(r[(label, "energy-conservation")], "drift_max") > scale["energy-conservation"]
    assert metric(r[(label, "invariances")], "energy_deviation_max") < 1e-9  # the energy is EMT's


def test_an_energy_that_is_not_a_sum_fails_separability_and_extensivity(tmp_path):
    label = "test_physicality:not_a_sum_emt"
    r = run_suite(tmp_path, label, ["separability", "extensivity"])
    # 0.01 eV x ((a + b)^2 - a^2 - b^2) = 0.02 a b eV per pair: 0.02 x 3 x 3 eV for the water dimer
    residuals = values(r[(label, "separability")], "separability_residual")
    assert residuals["Water_dimer"] == pytest.approx(180.0)
    assert residuals["Cu12/OHstar"] == pytest.approx(0.02 * 12 * 2 * 1000)  # slab of 12 atoms, OH of 2
    # 0.01 eV x (N^2 - 8 n^2) / N for N = 8 n atoms: 0.07 n eV/atom, 280 meV/atom for 4-atom fcc cells
    assert values(r[(label, "extensivity")], "extensivity_residual")["Cu"] == pytest.approx(280.0)


#: the EMT diatomics variant with Fe, which EMT does not cover, among the candidates
WITH_FE = {"diatomics": _merge(EMT_EDITS["diatomics"], {"dataset": {"params": {
    "elements": ["Cu", "Fe", "Al"], "pairs": ["Cu-O", "Fe-O"]}}, "counts": {"items": 5}})}


def run_curves(folder: Path, model: str, edits: dict) -> object:
    out = run_into(folder, [model], [emt_task(folder / "tasks", "diatomics", edits)])
    return load_results([out])[0]


def test_elements_a_model_does_not_cover_are_named_and_counted_not_failed(tmp_path):
    curves = run_curves(tmp_path, "emt", WITH_FE)
    assert curves.n_failed == 0
    assert values(curves, "not_covered") == {"Cu-Cu": 0.0, "Fe-Fe": 1.0, "Al-Al": 0.0, "Cu-O": 0.0, "Fe-O": 1.0}
    assert metric(curves, "not_covered_count") == 2
    assert curves.metrics["unphysical_fraction"]["n"] == 3 and curves.metrics["unphysical_fraction"]["n_failed"] == 0
    assert metric(curves, "unphysical_fraction") == 0  # the three covered curves, as without Fe
    assert not any(pair.startswith("Fe") for pair in physicality_plots.curve_frame([curves])["pair"])
    assert any("not covered" in note and "Fe" in note for note in curves.record["notes"])
    assert physicality_plots.not_covered([curves]) == {"emt": ["Fe-Fe", "Fe-O"]}
    html = "".join(physicality_plots.task_figures("diatomics", [curves], figures.styles(["emt"])))
    assert "Fe-Fe, Fe-O" in html


def test_the_model_s_own_element_list_decides_over_a_probe(tmp_path):
    label = "test_physicality:typed_emt"  # says H and Cu; EMT would compute O and Al
    curves = run_curves(tmp_path, label, WITH_FE)
    assert values(curves, "not_covered") == {"Cu-Cu": 0.0, "Fe-Fe": 1.0, "Al-Al": 1.0, "Cu-O": 1.0, "Fe-O": 1.0}
    assert curves.n_failed == 0 and curves.metrics["unphysical_fraction"]["n"] == 1


def test_a_model_that_cannot_do_a_lone_atom_still_covers_its_elements(tmp_path):
    label = "test_physicality:needs_neighbour_emt"
    curves = run_curves(tmp_path, label, EMT_EDITS)
    assert set(values(curves, "not_covered").values()) == {0.0} and curves.n_failed == 0
    assert values(curves, "far_field_energy") == {}  # no isolated atoms: left out, with a note
    assert any(diatomic_curves.ISOLATED_ATOM_FAILED in note for note in curves.record["notes"])


def test_a_covered_element_whose_curve_fails_is_a_failure(tmp_path):
    label = "test_physicality:fails_short_range_emt"
    curves = run_curves(tmp_path, label, EMT_EDITS)
    assert curves.n_failed == 3 and values(curves, "not_covered") == {}  # none hidden as not covered
    assert curves.metrics["unphysical_fraction"]["n_failed"] == 3


def test_a_model_without_stress_still_has_its_forces_checked(tmp_path):
    label = "fake_models:faulty_emt"  # EMT's energy and forces, no stress
    r = run_suite(tmp_path, label, ["invariances", "force-consistency"])
    for task, force_metric, stress_metric in (("invariances", "force_deviation_max", "stress_deviation_max"),
                                               ("force-consistency", "force_error_max", "stress_error_max")):
        result = r[(label, task)]
        assert result.n_failed == 0 and result.metrics[force_metric]["n"] == 2
        assert result.metrics[stress_metric]["n"] == 0
        assert any("computes no stress" in note for note in result.record["notes"])


def test_every_channel_of_a_multi_channel_model_runs_the_suite(tmp_path):
    card = tmp_path / "emt-channels.yaml"
    card.write_text(TWO_CHANNEL_CARD)
    r = run_suite(tmp_path, str(card), ["diatomics", "separability"], channels=["all"])
    assert {label for label, _ in r} == {"emt-channels@exact", "emt-channels@scaled"}
    exact, scaled = (values(r[(f"emt-channels@{c}", "diatomics")], "curve_energy") for c in ("exact", "scaled"))
    assert all(scaled[k] == pytest.approx(1.3 * exact[k], rel=1e-9, abs=1e-12) for k in exact)
    html = "".join(physicality_plots.task_figures(
        "diatomics", [r[(f"emt-channels@{c}", "diatomics")] for c in ("exact", "scaled")],
        figures.styles(["emt-channels@exact", "emt-channels@scaled"])))
    assert "emt-channels@exact" in html and "emt-channels@scaled" in html


# --- the measures themselves ---------------------------------------------------------------------------------


def _morse(rs, depth=2.0, a=1.5, r0=1.2):
    return depth * (1 - np.exp(-a * (rs - r0))) ** 2 - depth


def test_curve_measures_on_analytic_curves():
    params = {**diatomic_curves.PARAMS}
    rs = diatomic_curves.distances(params)
    assert rs[0] == pytest.approx(0.1) and rs[-1] == pytest.approx(6.0) and np.all(np.diff(np.log(rs)) > 0)
    energy = _morse(rs)
    force = a_morse_force(rs)
    clean = diatomic_curves.curve_checks(rs, energy, force, -force, float(energy[-1]), params)
    assert clean["unphysical"] == 0 and clean["tortuosity"] == pytest.approx(1.0)
    # a hole: the curve falls again below 0.3 A, the wall is gone
    holed = energy.copy()
    holed[rs < 0.3] = -50.0 * (0.3 - rs[rs < 0.3]) / 0.2
    assert diatomic_curves.has_repulsive_wall(energy, 1e-3, 1.0)
    assert not diatomic_curves.has_repulsive_wall(holed, 1e-3, 1.0)
    # a bump of 0.2 eV on the nearly flat attractive tail adds one minimum and nearly 2 x 0.2 eV of variation
    # over a rise of 2 eV (the well) plus the wall
    wiggly = energy + 0.2 * np.exp(-((rs - 4.5) ** 2) / (2 * 0.3**2))
    assert diatomic_curves.count_minima(wiggly, 1e-3) == 2 and diatomic_curves.count_minima(energy, 1e-3) == 1
    rise = 2.0 + energy[0] - energy.min()
    assert 1 + 0.3 / rise < diatomic_curves.tortuosity(wiggly) < 1 + 0.4 / rise
    # steps below the 1 meV noise floor are not minima (MLIP Arena's floor)
    assert diatomic_curves.count_minima(energy + 4e-4 * np.sin(40 * rs), 1e-3) == 1
    assert diatomic_curves.force_energy_deviation(force, -force) == 0
    steep = np.abs(force) > 1.0  # where the force is above the 1 eV/A floor the wrong sign costs exactly 2
    assert diatomic_curves.force_energy_deviation(-force[steep], -force[steep]) == pytest.approx(2.0)


def a_morse_force(rs, depth=2.0, a=1.5, r0=1.2):
    """-dE/dr of ``_morse``: the force along the bond (positive apart)."""
    e = np.exp(-a * (rs - r0))
    return -2 * depth * a * e * (1 - e)


def test_separated_fragments_are_the_stated_distance_apart():
    first = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    second = Atoms("H2", positions=[[0, 2, 0], [0, 2, 0.74]])
    pair = separability.separated(first, second, 15.0)
    d = pair.get_all_distances()[:2, 2:]
    assert d.min() == pytest.approx(15.0, abs=1e-5) and not pair.pbc.any()
    moved = pair.positions[2:] - second.positions  # a rigid shift along the line between the centroids
    assert np.allclose(moved, moved[0]) and np.allclose(np.cross(moved[0], [0, 1, 0]), 0)


def test_an_adsorbate_moves_up_the_normal_and_the_cell_keeps_vacuum_on_both_sides():
    from ase.build import add_adsorbate, fcc111

    slab = fcc111("Cu", size=(2, 2, 3), vacuum=5.0)
    add_adsorbate(slab, "O", 1.2, "fcc")
    top = slab.positions[:12, 2].max()
    pair, alone_slab, alone_o = separability.separated_from_surface(slab[:12], slab[12:], 15.0)
    assert pair.positions[12, 2] - top == pytest.approx(15.0)
    assert pair.cell[2] == pytest.approx([0.0, 0.0, (top + 15.0) - slab.positions[:12, 2].min() + 15.0])
    assert np.allclose(pair.cell[:2], slab.cell[:2]) and pair.pbc.all()
    image_below = slab.positions[:12, 2].min() + pair.cell[2, 2]  # the slab's periodic image above the O
    assert image_below - pair.positions[12, 2] == pytest.approx(15.0)
    assert np.allclose(alone_slab.cell, pair.cell) and np.allclose(alone_o.cell, pair.cell)
    assert np.allclose(alone_o.positions, pair.positions[12:])
    assert np.allclose(alone_slab.positions, slab.positions[:12])
    distances = pair.get_all_distances(mic=True)[:12, 12]
    assert distances.min() >= 15.0 - 1e-9


def test_drift_is_the_fitted_slope_and_a_blow_up_fails():
    times = np.arange(11) * 1e-3  # ps
    assert energy_conservation.drift(times, -3.0 + 0.002 * times)["drift_per_ps"] == pytest.approx(0.002)
    assert energy_conservation.drift(times, -3.0 - 0.002 * times)["drift_per_ps"] == pytest.approx(0.002)
    with pytest.raises(ValueError, match="exploded"):
        energy_conservation.drift(times, np.where(times > 5e-3, np.nan, -3.0))


# --- a real model --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_7net0_runs_the_physicality_suite(tmp_path):
    """The shipped tasks, the NVE runs shortened to 20 + 100 steps (the full suite: see the README)."""
    short_md = {"energy-conservation": {"protocol": {"params": {"thermalisation_steps": 20, "steps": 100}}}}
    specs = [emt_task(tmp_path / "tasks", name, short_md) for name in SUITE]
    out = run_into(tmp_path, ["7net-0"], specs)
    results = {r.task: r for r in load_results([out])}
    assert set(results) == set(SUITE)
    assert all(json.loads(r.path.read_text())["n_failed"] == 0 for r in results.values())
    # an equivariant, conservative, local model: invariances, consistency and separability hold to float noise
    assert metric(results["invariances"], "force_deviation_max") < 1e-3
    assert metric(results["force-consistency"], "force_error_max") < 0.01
    assert metric(results["separability"], "residual_max") < 1.0
    assert metric(results["extensivity"], "residual_max") < 0.1
    assert metric(results["diatomics"], "force_energy_deviation_max") < 0.05
    assert metric(results["energy-conservation"], "drift_max") < 1.0  # meV/atom per ps
    assert results["energy-conservation"].metrics["drift_mean"]["n"] == 4  # dimer, W, ice XVII, CALF-20
    assert metric(results["separability"], "residual_mae_by_kind[kind=surface]") < 1.0
    # SevenNet-0's type_map: 89 elements of H-Pu, without Po, At, Rn, Fr, Ra
    assert physicality_plots.not_covered([results["diatomics"]]) == {"7net-0": ["Po-Po", "At-At", "Rn-Rn", "Fr-Fr",
                                                                              "Ra-Ra"]}
    assert results["diatomics"].metrics["unphysical_fraction"]["n"] == 94
    # most of 7net-0's curves fall into a hole at short range, below MLIP Arena's range
    assert metric(results["diatomics"], "spurious_minima_mean") > metric(results["diatomics"],
                                                                         "spurious_minima_bonding_mean")
