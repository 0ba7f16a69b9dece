"""Levels of theory as the project writes them (task files, model cards, the reference model's card), the
warnings a results table carries, the card section of a results file, and the colour palette."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers import TWO_CHANNEL_CARD, run_into

from omni_bench.models.card import load_card
from omni_bench.models.loaded import CHARGE_SPIN_IGNORED
from omni_bench.models.registry import builtin_cards
from omni_bench.reporting import figures
from omni_bench.reporting.load import load_results
from omni_bench.reporting.theory import CHARGE_SPIN_NOTE, level_of_theory, warnings_for
from omni_bench.results import card_summary
from omni_bench.task_registry import all_tasks

REPO = Path(__file__).resolve().parent.parent
PBE, R2SCAN, CC, DMC = "PBE/PBE+U", "r2SCAN", "CCSD(T)", "DMC"

#: task -> (family, dispersion in the reference), read from the real strings in tasks/*.yaml
TASKS = {
    "dcdft": (PBE, False), "golddac": (PBE, True), "ice13-r2scan": (R2SCAN, False), "ice13": (DMC, True),
    "mamun-noble": ("BEEF-vdW", True), "mamun-noble-relaxed": ("BEEF-vdW", True), "matpes-elements-pbe": (PBE, False),
    "matpes-elements-r2scan": (R2SCAN, False), "md-speed": (None, False), "mofsimbench-eos": (PBE, True),
    "mor41": (CC, True), "openff-torsions-wb97m": ("wB97X/wB97M", True), "openff-torsions": (CC, True),
    "rost61": (CC, True), "s22": (CC, True), "wbm-formation": (PBE, False), "x23-r2scan": (R2SCAN, False),
    "x23": (DMC, True),
}
#: (card, channel or None) -> (family, dispersion in the training data)
CARDS = {
    ("7net-0", None): (PBE, False), ("7net-l3i5", None): (PBE, False), ("chgnet", None): (PBE, False),
    ("chgnet-r2scan", None): (R2SCAN, False), ("gfn2-xtb", None): ("GFN2-xTB", True), ("emt", None): ("EMT", False),
    ("7net-mf-0", "PBE"): (PBE, False), ("7net-mf-0", "R2SCAN"): (R2SCAN, False),
    ("7net-omni", "mpa"): (PBE, False), ("7net-omni", "omat24"): (PBE, False), ("7net-omni", "oc22"): (PBE, False),
    ("7net-omni", "matpes_pbe"): (PBE, False), ("7net-omni", "matpes_r2scan"): (R2SCAN, False),
    ("7net-omni", "mp_r2scan"): (R2SCAN, False), ("7net-omni", "oc20"): ("RPBE", False),
    ("7net-omni", "odac23"): (PBE, True), ("7net-omni", "omol25_low"): ("wB97X/wB97M", True),
    ("7net-omni", "omol25_high"): ("wB97X/wB97M", True), ("7net-omni", "spice"): ("wB97X/wB97M", True),
    ("7net-omni", "qcml"): (None, False), ("7net-omni", "pet_mad"): ("PBEsol", False),
    ("omni", "PBE"): (PBE, False), ("omni", "R2SCAN"): (R2SCAN, False), ("omni", "PBE0"): ("PBE0", False),
    ("omni", "GFN2"): ("GFN2-xTB", True),
}


@pytest.mark.parametrize("task", sorted(TASKS))
def test_task_levels_of_theory(task):
    lot = level_of_theory(all_tasks()[task].level_of_theory)
    assert (lot.family, lot.dispersion) == TASKS[task], lot.text


def test_every_task_names_a_level_of_theory_the_reports_can_compare():
    unknown = [name for name, spec in all_tasks().items()
               if not level_of_theory(spec.level_of_theory).known and not spec.level_of_theory.startswith("none")]
    assert not unknown, f"add a rule to omni_bench/reporting/theory.py for: {unknown}"


@pytest.mark.parametrize("card,channel", sorted(CARDS, key=str))
def test_model_card_levels_of_theory(card, channel):
    path = REPO / "reference_model" / "model_card.yaml" if card == "omni" else builtin_cards()[card]
    info = load_card(path).channel_info(channel)
    lot = level_of_theory(info.level_of_theory)
    assert (lot.family, lot.dispersion) == CARDS[(card, channel)], lot.text


@pytest.mark.parametrize("text,family,dispersion", [
    ("PBE+D3 (VASP)", PBE, True), ("PBE-D3(BJ)", PBE, True), ("PBEsol", "PBEsol", False),
    ("r2SCAN (no dispersion correction)", R2SCAN, False), ("DLPNO-CCSD(T)/CBS // PBEh-3c", CC, True),
    ("wB97M-V/def2-TZVPD", "wB97X/wB97M", True), ("ωB97X/6-31G*", "wB97X/wB97M", False),
    ("PBE0/def2-SVP (PySCF, RI-JK), no dispersion", "PBE0", False), ("", None, False),
])
def test_level_of_theory_rules(text, family, dispersion):
    lot = level_of_theory(text)
    assert (lot.family, lot.dispersion) == (family, dispersion)


@pytest.fixture(scope="module")
def emt_results(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("theory")
    (folder / "emt-channels.yaml").write_text(TWO_CHANNEL_CARD)
    return run_into(folder, ["emt", str(folder / "emt-channels.yaml")], ["s22", "dcdft"], channels=["all"], limit=6)


def _result(results, label, task):
    return next(r for r in results if r.label == label and r.task == task)


def test_results_file_records_the_card_and_warnings_follow_it(emt_results):
    results = load_results([emt_results])
    s22 = _result(results, "emt", "s22")
    card = load_card(builtin_cards()["emt"])
    assert s22.record["card"] == {**card.summary(), "level_of_theory": card.level_of_theory,
                                  "trained_with_dispersion": False, "in_domain": [], "energy_convention": "raw"}
    assert [(w.kind, w.short) for w in warnings_for(s22)] == [("lot", "LoT EMT vs CCSD(T)")]
    dcdft = _result(results, "emt", "dcdft")
    assert [w.kind for w in warnings_for(dcdft)] == ["lot", "failed"] and dcdft.n_failed > 0
    assert f"{dcdft.n_failed} failed" in [w.short for w in warnings_for(dcdft)]

    # a PBE model trained with dispersion, scored with +d3 on a PBE reference without dispersion, in domain,
    # with charge/spin dropped on 3 items (the note the model adapter writes)
    card = {"level_of_theory": "PBE/PBE+U (Materials Project)", "trained_with_dispersion": True,
            "in_domain": ["dcdft"]}
    record = {**dcdft.record, "card": card, "notes": {CHARGE_SPIN_IGNORED: 3}}
    marked = {w.kind: w for w in warnings_for(replace(dcdft, record=record, d3=True, n_failed=0))}
    assert set(marked) == {"dispersion", "in-domain", "charge-spin"}
    assert marked["charge-spin"].short == "charge/spin not passed: 3" and CHARGE_SPIN_IGNORED.startswith(
        CHARGE_SPIN_NOTE)
    kinds = [w.short for w in warnings_for(replace(dcdft, record=record, d3=True))]
    assert "D3 counted twice" in kinds and "dispersion differs" in kinds
    # the same model without +d3 on golddac's PBE+D3 reference agrees; without dispersion it does not
    golddac = {**record, "notes": {}, "task": {**record["task"], "name": "golddac", "level_of_theory": "PBE+D3 (VASP)"}}
    assert not warnings_for(replace(dcdft, record=golddac, task="golddac", n_failed=0, d3=False))
    plain = {**golddac, "card": {**card, "trained_with_dispersion": False}}
    assert [w.short for w in warnings_for(replace(dcdft, record=plain, task="golddac", n_failed=0))] == [
        "dispersion differs"]


def test_results_written_before_the_card_section_fall_back_to_the_fingerprint(emt_results):
    s22 = _result(load_results([emt_results]), "emt-channels@scaled", "s22")
    old = {k: v for k, v in s22.record.items() if k != "card"}
    assert s22.record["model"]["fingerprint"]["level_of_theory"] == "EMT x 1.3"
    assert [w.short for w in warnings_for(replace(s22, record=old))] == ["LoT EMT vs CCSD(T)"]


def test_card_summary_reads_the_channel_and_in_domain_from_the_card():
    card = load_card(builtin_cards()["7net-mf-0"])
    summary = card_summary(card, "R2SCAN")
    assert {k: summary[k] for k in ("level_of_theory", "trained_with_dispersion", "in_domain", "name")} == {
        "level_of_theory": "r2SCAN (Materials Project)", "trained_with_dispersion": False, "in_domain": [],
        "name": "7net-mf-0"}
    assert card_summary(replace(card, in_domain=["golddac"]), "PBE")["in_domain"] == ["golddac"]


def _lab(colour: str) -> np.ndarray:
    rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255
    rgb = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ rgb
    f = np.cbrt(xyz / [0.95047, 1.0, 1.08883])  # every palette colour is far above the linear segment
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_palette_keeps_at_least_twenty_model_variants_apart():
    """The issue's 11 models on 10 colours: gfn2-xtb and 7net-0 were the same blue."""
    labs = [_lab(c) for c in figures.PALETTE]
    assert len(figures.PALETTE) >= 20
    assert min(np.linalg.norm(a - b) for a, b in itertools.combinations(labs, 2)) >= 20  # CIE76 distance
    assert max(lab[0] for lab in labs) <= 70  # dark enough for markers and lines on white
    labels = [f"model-{i}" for i in range(30)]
    assert len({style.colour for style in figures.styles(labels[:20]).values()}) == 20
    looks = figures.styles(labels)
    assert len({(s.colour, s.symbol) for s in looks.values()}) == 30  # past 24: same colours, other symbols
    assert figures.styles(reversed(labels)) == looks  # the same label looks the same in every figure
