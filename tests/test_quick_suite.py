"""The embedded quick suite (no data download) with real pretrained models."""

from __future__ import annotations

import pytest
from helpers import run_task


@pytest.mark.slow
@pytest.mark.parametrize("model", ["7net-0", "chgnet"])
def test_s22_interaction_energies_are_plausible(tmp_path, model):
    (outcome,) = run_task("s22", model, tmp_path)
    mae = outcome.metrics["mae"]
    assert outcome.n_failed == 0 and mae["n"] == 22
    # PBE-trained models without D3 miss dispersion: a few kcal/mol, far below the ~5 kcal/mol mean |E_int|
    # of S22 times two, and not zero.
    assert 0.3 < mae["value"] < 8.0


@pytest.mark.slow
@pytest.mark.parametrize("model", ["7net-0", "chgnet"])
def test_dcdft_equations_of_state_are_plausible(tmp_path, model):
    (outcome,) = run_task("dcdft", model, tmp_path, limit=8)
    assert outcome.n_failed == 0
    # MPtrj models reproduce PBE elemental volumes to a few percent (~17 A^3/atom) and B0 to ~10-20 GPa.
    assert 0 < outcome.metrics["v0_mae"]["value"] < 1.0
    assert 0 < outcome.metrics["b0_mae"]["value"] < 40.0
    assert 2.0 < outcome.metrics["b1_mae"]["value"] + 4.0 < 10.0


@pytest.mark.slow
def test_multichannel_model_runs_every_channel(tmp_path):
    outcomes = run_task("s22", "7net-mf-0", tmp_path, limit=2, channels=["all"])
    assert [o.model for o in outcomes] == ["7net-mf-0@PBE", "7net-mf-0@R2SCAN"]
    pbe, r2scan = (o.metrics["mae"]["value"] for o in outcomes)
    assert pbe != r2scan  # the channels route to different output heads
