"""The shipped ``omni`` reference model: its card, its checkpoint, and a real run through omni-bench."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from helpers import run_task

from omni_bench.data import sha256_file
from omni_bench.models.registry import builtin_cards, find_card, resolve_models

MAX_CHECKPOINT_BYTES = 25 * 2**20
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def card():
    assert "omni" in builtin_cards(), "reference_model/model_card.yaml is not found as the built-in 'omni'"
    return find_card("omni")


def test_card_describes_the_shipped_checkpoint(card):
    checkpoint = card.resolve_checkpoint()
    assert checkpoint.stat().st_size <= MAX_CHECKPOINT_BYTES
    training = card.extra["training"]
    assert training["checkpoint_sha256"] == sha256_file(checkpoint)
    assert set(card.channels) == {"PBE", "R2SCAN", "PBE0", "GFN2"}
    assert training["dbs"]["structures_in_training"] > 0 and training["dbs"]["mixed_in"]
    assert ("selective L2" in card.description) == (training["regularisation_lambda"] > 0)
    assert card.extra["parameters"] > 800_000
    for field in ("hardware", "wall_time_s", "epochs", "git_at_card", "frames_per_channel"):
        assert training[field], field


def test_card_task_figures_are_the_committed_leaderboard_results_of_its_checkpoint(card):
    """The card's task figures come from reports/leaderboard-results, and only from runs of this checkpoint."""
    from omni_bench_reference.card import task_figures

    results = REPO / "reports" / "leaderboard-results"
    figures = task_figures(results, "omni", card.extra["training"]["checkpoint_sha256"])
    assert set(figures) == {f"omni@{c}" for c in card.channels}
    assert card.extra["task_figures"] == figures
    s22 = json.loads((results / "omni@PBE0" / "s22.json").read_text())
    assert figures["omni@PBE0"]["s22"]["value"] == round(s22["metrics"]["mae"]["value"], 4)
    assert figures["omni@PBE0"]["s22"]["reference"] == "CCSD(T)/CBS"
    assert task_figures(results, "omni", "0" * 64) == {}  # another checkpoint's results are not this card's


def test_checkpoint_loads_with_weights_only(card):
    checkpoint = torch.load(card.resolve_checkpoint(), weights_only=True, map_location="cpu")
    assert set(checkpoint["config"]["_modal_map"]) == {"PBE", "R2SCAN", "PBE0", "GFN2"}


def test_every_channel_is_a_variant():
    labels = [v.label for v in resolve_models(["omni"], ["all"])]
    assert labels == [f"omni@{c}" for c in find_card("omni").channels]


@pytest.mark.slow
@pytest.mark.parametrize("channel", ["PBE0", "GFN2"])
def test_omni_runs_s22(channel, tmp_path, data_root):
    (outcome,) = run_task("s22", f"omni@{channel}", tmp_path, data_root=data_root, limit=3)
    assert outcome.n_failed == 0
    mae = outcome.metrics["mae"]["value"]
    assert math.isfinite(mae) and 0 <= mae < 50  # kcal/mol: bounded by physics, not a stored figure


def _ablation_run(runs, name: str, ie_mae: float, lam: float | None = None, checkpoint_sha256: str = "0" * 64) -> None:
    """A finished run folder with the metrics.json fields the ablation report reads."""
    run = runs / name
    run.mkdir(parents=True)
    variant, seed = name.rsplit("-", 1)
    metrics = {"name": variant,
               "recipe": {"epochs": 12, "patience": 3, "min_delta": 1e-5, "batch_size": 8, "learning_rate": 5e-4,
                          "lr_decay_per_epoch": 0.9, "seed": int(seed)},
               "checkpoint": {"sha256": checkpoint_sha256},
               "regularisation_lambda": (lam if lam is not None
                                         else 1e-3 if name.startswith(("selreg", "both")) else 0.0),
               "dbs": {"dbs_fraction": 0.125 if name.startswith(("dbs", "both")) else 0.0},
               "hardware": "CPU", "best_epoch": 10, "epochs": 12, "wall_s_training": 600.0,
               "final_validation": {"val_energy_mae_meV_per_atom_PBE0": 20.0, "val_force_mae_meV_per_A_PBE0": 150.0},
               "domain_b": {"dimers": 56, "interaction_dimers": 56, "interaction_energy_mae_kcal_per_mol": ie_mae,
                            "energy_mae_meV_per_atom": 10.0, "force_mae_meV_per_A": 100.0}}
    (run / "metrics.json").write_text(json.dumps(metrics))


def test_ablation_report_gives_mean_and_spread_and_a_verdict_against_the_seed_spread(tmp_path):
    from omni_bench_reference.ablation_report import report

    for seed, (plain, dbs, both) in enumerate([(1.20, 1.00, 1.19), (1.22, 1.02, 1.23), (1.24, 1.01, 1.21)]):
        _ablation_run(tmp_path, f"plain-{seed}", plain)
        _ablation_run(tmp_path, f"dbs-{seed}", dbs)
        _ablation_run(tmp_path, f"both-{seed}", both)
    text = report(tmp_path)
    assert "| interaction energy MAE (kcal/mol) | 1.22 ± 0.02 | 1.01 ± 0.01 | 1.21 ± 0.02 |" in text
    assert "| + domain-bridging set | -0.21 (larger than 2 × 0.02) |" in text
    assert "| + both (the full recipe) | -0.01 (not larger than 2 × 0.02) |" in text
    assert "plain (n=3)" in text
    assert "| dbs (seed 1) | 1.02 | 10.0 | 100 |" in text  # every run on its own line
    assert "Beyond the ablation" not in text and "The shipped `omni` is none of these runs." in text


def test_ablation_report_lists_the_runs_beyond_it_and_names_the_shipped_run(tmp_path):
    from omni_bench_reference.ablation_report import report, shipped_run

    for seed in (1, 2):
        _ablation_run(tmp_path, f"plain-{seed}", 1.2)
    shipped = tmp_path / "omni.pth"
    shipped.write_bytes(b"a checkpoint")
    _ablation_run(tmp_path, "uncapped-both-lambda1e-5-1", 0.9, lam=1e-5, checkpoint_sha256=sha256_file(shipped))
    _ablation_run(tmp_path, "uncapped-both-lambda1e-4-1", 1.0, lam=1e-4)
    text = report(tmp_path)
    assert "## Beyond the ablation" in text
    row = "| uncapped-both-lambda1e-4-1 | 0.0001 | 10.0 | 12.0 | 1.00 | 10.0 | 100 | - | - | - | 20.0 | 150 | - |"
    assert row in text
    assert "uncapped-both-lambda1e-5-1 | 1e-05 |" in text
    assert "plain (n=2)" in text and "uncapped" not in text.split("## Beyond the ablation")[0]
    assert shipped_run(tmp_path, shipped) == "uncapped-both-lambda1e-5-1"
    assert shipped_run(tmp_path, tmp_path / "missing.pth") is None
