"""The Python API (``omni_bench.evaluate``, ``leaderboard``, ``report``) and results bundles (``omni-bench
export``): an EMT instance on S22, its results exported as one archive and joined to other results, and
bundles that were tampered with refused."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from ase.calculators.emt import EMT

import omni_bench
from omni_bench import cli
from omni_bench.errors import OmniBenchError
from omni_bench.reporting.load import load_results

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def evaluated(tmp_path):
    return omni_bench.evaluate(EMT(), name="my-emt", tasks="s22", limit=3, store=tmp_path / "store.sqlite",
                               out=tmp_path / "results")


def test_evaluate_a_calculator_instance_returns_metrics_and_predictions(evaluated, tmp_path):
    metrics = evaluated.metrics.set_index("metric")
    assert set(evaluated.metrics["model"]) == {"my-emt"} and metrics.loc["mae", "unit"] == "kcal/mol"
    assert metrics.loc["mae", "n"] == 3 and metrics.loc["mae", "n_failed"] == 0
    predictions = evaluated.predictions["s22"]
    assert list(predictions["id"]) == ["Ammonia_dimer", "Water_dimer", "Formic_acid_dimer"]
    errors = (predictions["predicted"] - predictions["reference"]).abs()
    assert metrics.loc["mae", "value"] == pytest.approx(errors.mean())
    # the same store: nothing computed again; the results file is the CLI's, with the instance in its fingerprint
    again = omni_bench.evaluate(EMT(), name="my-emt", tasks="s22", limit=3, store=tmp_path / "store.sqlite",
                                out=tmp_path / "results")
    assert [o.computed for o in again.outcomes] == [0]
    record = json.loads((tmp_path / "results" / "my-emt" / "s22.json").read_text())
    assert record["model"]["fingerprint"]["calculator"]["class"] == "ase.calculators.emt:EMT"


def test_a_calculator_instance_needs_a_name_and_a_model_must_be_one_of_three_things():
    with pytest.raises(OmniBenchError, match="needs name="):
        omni_bench.evaluate(EMT(), tasks="s22")
    with pytest.raises(OmniBenchError, match="must be a name, a card path or an ASE Calculator"):
        omni_bench.evaluate(42, name="x", tasks="s22")
    with pytest.raises(OmniBenchError, match="name the tasks"):
        omni_bench.evaluate("emt")


def test_leaderboard_and_report_from_python(evaluated, tmp_path):
    omni_bench.evaluate("emt", tasks="s22", limit=3, store=tmp_path / "store.sqlite", out=tmp_path / "results")
    board = omni_bench.leaderboard(tmp_path / "results", out=tmp_path / "lb", bootstrap=100)
    assert set(board.tasks["label"]) == {"emt", "my-emt"}
    assert (tmp_path / "lb.html").is_file() and (tmp_path / "lb.md").is_file()
    html, markdown = omni_bench.report(tmp_path / "results", tmp_path / "report", bootstrap=100)
    assert html.is_file() and "my-emt" in markdown.read_text()


@pytest.mark.slow
def test_the_example_runs_as_a_user_runs_it(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "examples" / "evaluate_calculator.py")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "my-emt  s22" in done.stdout and "Formic_acid_dimer" in done.stdout


# --- results bundles ---------------------------------------------------------------------------------------

def test_an_exported_bundle_is_read_as_its_folder(emt_results, tmp_path, capsys):
    bundle = tmp_path / "emt.tar.gz"
    assert cli.main(["export", "--results", str(emt_results), "--model", "emt", "--out", str(bundle)]) == 0
    assert "2 results of 1 model variants on 2 tasks" in capsys.readouterr().out
    from_bundle = {r.key: r for r in load_results([bundle])}
    from_folder = {r.key: r for r in load_results([emt_results]) if r.label == "emt"}
    assert set(from_bundle) == set(from_folder)
    for key, result in from_bundle.items():
        pd.testing.assert_frame_equal(result.predictions, from_folder[key].predictions)
    assert cli.main(["gate", "--baseline", str(emt_results / "emt" / "s22.json"), "--results", str(bundle),
                     "--task", "s22"]) == 0


def tampered(bundle: Path, out: Path, change) -> Path:
    """A copy of ``bundle`` whose members went through ``change(name, data) -> [(name, data, type)]``."""
    with tarfile.open(bundle) as source, tarfile.open(out, "w:gz") as target:
        for member in source:
            data = source.extractfile(member).read()
            for name, body, kind in change(member.name, data):
                info = tarfile.TarInfo(name)
                info.size, info.type = len(body), kind
                if kind == tarfile.SYMTYPE:
                    info.size, info.linkname = 0, "/etc/passwd"
                target.addfile(info, io.BytesIO(body) if kind == tarfile.REGTYPE else None)
    return out


def edit_csv(name, data):
    return [(name, data.replace(b"ok", b"ok ", 1) if name.endswith(".csv") else data, tarfile.REGTYPE)]


def escape(name, data):
    return [(name, data, tarfile.REGTYPE), ("emt/../../evil.json", b"{}", tarfile.REGTYPE)]


def link(name, data):
    return [(name, data, tarfile.REGTYPE), ("emt/x.json", b"", tarfile.SYMTYPE)]


@pytest.mark.parametrize(("change", "problem"), [(edit_csv, "does not match its sha256"),
                                                  (escape, "is not at <label>/<file>"),
                                                  (link, "is not a plain file")])
def test_a_tampered_bundle_is_refused_in_one_line(emt_results, tmp_path, capsys, change, problem):
    bundle = tmp_path / "emt.tar.gz"
    assert cli.main(["export", "--results", str(emt_results), "--model", "emt", "--out", str(bundle)]) == 0
    bad = tampered(bundle, tmp_path / "bad.tar.gz", change)
    capsys.readouterr()
    assert cli.main(["leaderboard", "--results", str(bad)]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and problem in error and str(bad) in error
    assert not (tmp_path / "evil.json").exists()


@pytest.mark.slow
def test_a_bundle_from_another_store_joins_the_committed_leaderboard(emt_results, tmp_path):
    """EMT's results, exported from the test's own store, join the committed results: EMT is ranked on the
    tasks it ran, and no committed model's normalised score moves."""
    bundle = tmp_path / "emt.tar.gz"
    assert cli.main(["export", "--results", str(emt_results), "--model", "emt", "--task", "s22",
                     "--out", str(bundle)]) == 0
    committed = REPO / "reports" / "leaderboard-results"
    alone = omni_bench.leaderboard([committed], tasks=["s22"], bootstrap=200)
    joined = omni_bench.leaderboard([committed, bundle], tasks=["s22"], bootstrap=200)
    rows = joined.tasks.set_index("label")
    assert rows.loc["emt", "rank"] >= 1 and rows.loc["emt", "n"] == 22
    before = alone.tasks.set_index("label")["norm"]
    pd.testing.assert_series_equal(before, rows.loc[before.index, "norm"])
