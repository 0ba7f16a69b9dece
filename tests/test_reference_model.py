"""The shipped ``omni`` reference model: its card, its checkpoint, and a real run through omni-bench."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import run_task

from omni_bench.data import sha256_file
from omni_bench.models.registry import builtin_cards, find_card, resolve_models

MAX_CHECKPOINT_BYTES = 25 * 2**20


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
    assert training["dbs"]["structures_in_training"] > 0 and training["regularisation_lambda"] > 0
    assert card.extra["parameters"] > 800_000
    for field in ("hardware", "wall_time_s", "epochs", "git_at_card", "frames_per_channel"):
        assert training[field], field


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
