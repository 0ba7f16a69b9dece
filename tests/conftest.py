"""Shared fixtures: the reference data root, and EMT results on S22 and the Delta test. Shared helpers (real
runs, task items, models loaded once per session) are in helpers.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import REPO, TWO_CHANNEL_CARD, run_into


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared reference data (CI exports OMNI_BENCH_DATA=../shared/data). Missing data is an error."""
    root = Path(os.environ.get("OMNI_BENCH_DATA") or REPO.parent / "shared" / "data")
    if not (root / "MANIFEST.md").is_file():
        pytest.fail(f"reference data not found at {root}: set OMNI_BENCH_DATA")
    return root


@pytest.fixture(scope="session")
def emt_results(tmp_path_factory) -> Path:
    """EMT and both channels of a two-channel EMT card on all of S22 and the Delta test (11 of 16 fail)."""
    folder = tmp_path_factory.mktemp("emt-results")
    card = folder / "emt-channels.yaml"
    card.write_text(TWO_CHANNEL_CARD)
    return run_into(folder, ["emt", str(card)], ["s22", "dcdft"], channels=["all"])
