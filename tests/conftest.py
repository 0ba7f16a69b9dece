"""Shared fixtures: the reference data root, and EMT results on S22 and the Delta test. Shared helpers (real
runs, task items, models loaded once per session) are in helpers.py."""

from __future__ import annotations

import os
import sys
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


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """A test that sets torch's thread count (an in-process training run sets 1) leaves it as it found it:
    otherwise every later test runs its models on one core."""
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch else None
    yield
    torch = sys.modules.get("torch")
    if torch is not None and threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
