"""Reports and leaderboards built from real runs: EMT on S22 and the Delta test through the runner (fast), and
7net-0 and both channels of 7net-mf-0 on a few items where realism matters (slow). The pages are opened in
headless Chromium, as a reader would open them, in tests/test_report_browser.py."""

from __future__ import annotations

import base64
import gzip
import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import task_items

from omni_bench import cli
from omni_bench.reporting import figures, leaderboard_output
from omni_bench.reporting.bootstrap import bootstrap, unit_of, weighted_statistic
from omni_bench.reporting.leaderboard import (
    FAMILY_PAIRS,
    NORMALISED_CAP,
    PAIR_LEVEL,
    annotate,
    build,
    compare,
    failure_kind,
    failure_kinds,
    normalised_error,
)
from omni_bench.reporting.load import load_results, recomputed_metrics
from omni_bench.reporting.report import build_report, parity_statistics, write_report
from omni_bench.reporting.tables import Bootstraps, HeadlineItems, metric_table
from omni_bench.reporting.text import fmt_ci
from omni_bench.results_format import reference_sha256
from omni_bench.scoring import statistic
from omni_bench.task_registry import all_tasks
from omni_bench.taskspec import STATISTICS, ErrorScale

REPO = Path(__file__).resolve().parent.parent
EMT_CARD = REPO / "omni_bench" / "models" / "cards" / "emt.yaml"


def plotly_divs(html: str) -> list[str]:
    """Ids of the figures on a page; plotly.js itself must be embedded exactly once (gzipped), nothing loaded,
    and every figure must have its JSON."""
    packed = re.findall(r'<script type="application/octet-stream" id="plotly-js-gzip">([A-Za-z0-9+/=]+)</script>',
                        html)
    assert len(packed) == 1, "plotly.js must be inlined once per page"
    assert b"* plotly.js v" in gzip.decompress(base64.b64decode(packed[0]))
    assert not re.search(r'(src|href)="(https?:)?//', html), "no external resources"
    assert "<img" not in html
    divs = re.findall(r'<div id="([^"]+)" class="plotly-graph-div"', html)
    assert re.findall(r'data-plotly-figure="([^"]+)"', html) == divs
    return divs


def figure_data(html: str, div_id: str) -> list[dict]:
    """The traces plotly draws in one figure, read back from the page (arrays plotly packs as typed arrays
    unpacked)."""
    found = re.search(r'<script type="application/json" data-plotly-figure="' + re.escape(div_id) + r'">(.*?)</script>',
                      html, re.S)
    traces = json.loads(found.group(1))["data"]
    for trace in traces:
        for key, value in trace.items():
            if isinstance(value, dict) and "bdata" in value:
                trace[key] = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).tolist()
    return traces


# --- bootstrap ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", STATISTICS)
def test_weighted_statistics_with_unit_weights_equal_the_scoring_ones(name):
    rng = np.random.default_rng(7)
    predicted, reference = rng.normal(size=30), rng.normal(size=30)
    got = weighted_statistic(name, predicted, reference, np.ones((1, 30)))[0]
    assert got == pytest.approx(statistic(name, predicted, reference), rel=1e-12, abs=1e-12)


def test_weighted_statistics_equal_the_statistic_of_the_resampled_rows():
    rng = np.random.default_rng(3)
    predicted, reference = rng.normal(size=12), rng.normal(size=12)
    counts = rng.multinomial(12, np.full(12, 1 / 12), size=5)
    for name in STATISTICS:
        for row in counts:
            rows = np.repeat(np.arange(12), row)
            expected = statistic(name, predicted[rows], reference[rows])
            got = weighted_statistic(name, predicted, reference, row[None, :])[0]
            assert got == pytest.approx(expected, rel=1e-9, abs=1e-12, nan_ok=True), name


def test_weighted_median_abs_error_is_numpys_median_of_the_repeated_items():
    """Integer weights count items that many times (odd and even totals, zero weights, ties)."""
    rng = np.random.default_rng(11)
    predicted, reference = rng.normal(size=9), rng.normal(size=9)
    predicted[4] = reference[4] + abs(predicted[2] - reference[2])  # a tie in |error|
    weights = rng.integers(0, 4, size=(200, 9))
    weights[0] = [0, 0, 0, 0, 0, 0, 0, 0, 5]  # one item only
    weights[1] = [1, 0, 1, 0, 0, 0, 0, 0, 0]  # even total: the mean of the two middle values
    got = weighted_statistic("median_abs_error", predicted, reference, weights)
    for row, value in zip(weights, got, strict=True):
        repeated = np.repeat(np.abs(predicted - reference), row)
        assert value == pytest.approx(np.median(repeated), rel=1e-12, abs=1e-15)
    ones = weighted_statistic("median_abs_error", predicted, reference, np.ones((1, 9)))[0]
    assert ones == statistic("median_abs_error", predicted, reference) == np.median(np.abs(predicted - reference))
    assert np.isnan(weighted_statistic("median_abs_error", predicted, reference, np.zeros((1, 9)))[0])


def test_bootstrap_is_seeded_and_brackets_the_value():
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"id": [f"x{i}" for i in range(23)], "predicted": rng.normal(1.0, 1.0, 23),
                         "reference": np.zeros(23)})
    first = bootstrap(rows, "mae", key=("x23", "mae"))
    assert first.low < first.value < first.high
    assert bootstrap(rows, "mae", key=("x23", "mae")).low == first.low  # same seed, same interval
    assert bootstrap(rows, "mae", key=("x23", "mae"), seed=1).low != first.low


def test_points_of_one_profile_are_resampled_together():
    """Ten angles of four torsion profiles are four independent units, not forty: the interval is wide."""
    errors = np.repeat([1.0, 2.0, 3.0, 4.0], 10)
    profile_ids = [f"{p}@a{i}" for p in range(4) for i in range(10)]
    assert unit_of("17@a-165") == "17" and unit_of("17") == "17"
    clustered = pd.DataFrame({"id": profile_ids, "predicted": errors, "reference": 0.0})
    independent = clustered.assign(id=[i.replace("@", "_") for i in profile_ids])
    wide = bootstrap(clustered, "mae", key=("t", "mae"))
    narrow = bootstrap(independent, "mae", key=("t", "mae"))
    assert wide.value == narrow.value == 2.5
    assert (wide.high - wide.low) > 2 * (narrow.high - narrow.low)
    # every resample of whole profiles has a mean of four profile values: a multiple of 1/4
    assert np.allclose(np.round(wide.replicates * 4), wide.replicates * 4)


def test_a_task_can_resample_whole_groups_such_as_the_complexes_of_one_framework(data_root):
    """GoldDAC's complexes share their framework's computed energy: with ``resample_by: mof`` the interval
    resamples frameworks, and every scored item carries that group."""
    errors = np.repeat([1.0, 2.0, 3.0, 4.0], 12)
    rows = pd.DataFrame({"id": [f"c{i}" for i in range(48)], "predicted": errors, "reference": 0.0,
                         "group_mof": np.repeat(["A", "B", "C", "D"], 12)})
    by_mof = bootstrap(rows, "mae", key=("t", "mae"), resample_by="mof")
    by_item = bootstrap(rows, "mae", key=("t", "mae"))
    assert by_mof.value == by_item.value == 2.5
    assert (by_mof.high - by_mof.low) > 2 * (by_item.high - by_item.low)
    assert np.allclose(np.round(by_mof.replicates * 4), by_mof.replicates * 4)

    assert all_tasks()["golddac"].resample_by == "mof"
    scored = [item for item in task_items("golddac", data_root) if item.reference]
    assert len(scored) == 240 and len({item.groups["mof"] for item in scored}) == 20


def test_torsion_profile_ids_leave_at_sign_for_the_angle(data_root):
    """The convention the resampling relies on: item ids have no '@'; the protocol adds '@<angle>'."""
    items = task_items("openff-torsions", data_root)
    assert items and all("@" not in item.id for item in items)


# --- reading results ---------------------------------------------------------------------------------------

def test_predictions_reproduce_the_metrics_of_the_run(emt_results):
    results = load_results([emt_results])
    assert {(r.label, r.task) for r in results} == {
        (label, task) for label in ("emt", "emt-channels@exact", "emt-channels@scaled") for task in ("s22", "dcdft")}
    for result in results:
        recomputed = recomputed_metrics(result)
        assert set(recomputed) == set(result.metrics)
        for name, value in recomputed.items():
            assert value == pytest.approx(result.metrics[name]["value"], rel=1e-12, nan_ok=True)
    dcdft = next(r for r in results if r.task == "dcdft" and r.label == "emt")
    assert dcdft.n_items == 16 and dcdft.n_failed == 11  # EMT has no parameters for 11 of the 16 elements


# --- leaderboard -------------------------------------------------------------------------------------------

def synthetic_task(errors: dict[str, np.ndarray], seed: int = 1) -> HeadlineItems:
    """A task whose models predict the reference plus the given errors (NaN: a failed item)."""
    rng = np.random.default_rng(seed)
    n = len(next(iter(errors.values())))
    reference = rng.normal(0.0, 5.0, n)
    items = pd.DataFrame({"id": [f"item{i:03d}" for i in range(n)], "reference": reference})
    for label, error in errors.items():
        items[label] = reference + error
    return HeadlineItems("synthetic", "mae", "mae", "lower", None, items,
                         {label: np.ones(n, bool) for label in errors}, ErrorScale(null_predictor="zero"), "molecules")


def ranks_of(headline: HeadlineItems, n_resamples: int = 500) -> dict[str, int]:
    table, _ = compare(headline, Bootstraps({}, {}, n_resamples, 0))
    return dict(zip(table["label"], table["rank"], strict=True))


def test_a_model_that_fails_items_ranks_no_better_than_if_it_had_scored_them_at_its_worst():
    """A is a little better than B on most items but failed sixteen; had it scored them at its own worst
    error, B would beat it. Dropping the failed items (or comparing on common items only) would rank A first."""
    rng = np.random.default_rng(0)
    n, failed = 80, 16
    b = 1.0 + rng.normal(0, 0.05, n)
    a_scored = np.full(n, 0.8) + rng.normal(0, 0.05, n)
    a_scored[failed] = 6.0  # its worst error
    a_failed = a_scored.copy()
    a_failed[:failed] = np.nan
    a_at_worst = a_scored.copy()
    a_at_worst[:failed] = 6.0
    c = 1.3 + rng.normal(0, 0.05, n)
    failing = ranks_of(synthetic_task({"A": a_failed, "B": b, "C": c}))
    scored_badly = ranks_of(synthetic_task({"A": a_at_worst, "B": b, "C": c}))
    assert failing["A"] >= scored_badly["A"] > 1 and failing["B"] == 1
    common_only = ranks_of(synthetic_task({"A": a_failed[failed:], "B": b[failed:], "C": c[failed:]}))
    assert common_only["A"] == 1  # what the failures would have won


def test_the_paired_rank_separates_a_small_consistent_shift_that_intervals_cannot():
    rng = np.random.default_rng(3)
    size = rng.uniform(0, 4, 60)
    sign = rng.choice([-1.0, 1.0], 60)
    headline = synthetic_task({"A": sign * size, "B": sign * (size + 0.1 + rng.normal(0, 0.05, 60))})
    table, pairs = compare(headline, Bootstraps({}, {}, 500, 0))
    table = table.set_index("label")
    assert table.loc["A", "ci_high"] > table.loc["B", "ci_low"]  # the unpaired intervals overlap
    assert table.loc["A", "rank"] == 1 and table.loc["B", "rank"] == 2
    assert pairs.loc[0, "better"] == "A" and pairs.loc[0, "high"] < 0 and pairs.loc[0, "p_value"] < PAIR_LEVEL
    assert pairs.loc[0, "p_adjusted"] == pytest.approx(min(1.0, pairs.loc[0, "p_value"] * FAMILY_PAIRS))


def test_a_pair_verdict_reads_only_its_own_pair_whatever_models_join():
    """A and B differ at p ~ 0.015: below 5% (Holm's correction with the two alone would separate them) but
    not at the fixed level. Ten more models join, all worse than A and B and alike among themselves: Holm's
    correction over the table's pairs would now call A and B indistinguishable; the fixed level gives the
    same verdict either way."""
    rng = np.random.default_rng(7)
    size = rng.uniform(0, 2, 80)
    sign = rng.choice([-1.0, 1.0], 80)
    errors = {"A": sign * size, "B": sign * (size + 0.05 + rng.normal(0, 0.15, 80))}
    alone = compare(synthetic_task(errors), Bootstraps({}, {}, 500, 0))[1].iloc[0]
    assert PAIR_LEVEL < alone["p_value"] < 0.05
    crowd = {**errors, **{f"M{i}": sign * (size + 1.0 + rng.normal(0, 0.3, 80)) for i in range(10)}}
    table, pairs = compare(synthetic_task(crowd), Bootstraps({}, {}, 500, 0))
    joined = pairs[(pairs["first"] == "A") & (pairs["second"] == "B")].iloc[0]
    assert joined["better"] == alone["better"] == "" and joined["p_value"] == alone["p_value"]
    ranks = table.set_index("label")
    assert ranks.loc["A", "rank"] == ranks.loc["B", "rank"] == 1  # the M models are all worse and separated
    assert (ranks.loc[[f"M{i}" for i in range(10)], "rank"] == 3).all()
    assert (ranks["rank_worst"] >= ranks["rank"]).all()


def test_a_noisy_model_has_a_good_rank_and_a_wide_rank_range():
    """C is worse than A on average but so noisy that nobody beats it significantly: rank 1= like A, with the
    range 1-3; A and B are precise and separated, and A's range is 1-2 (C may yet be better)."""
    rng = np.random.default_rng(5)
    n = 40
    errors = {"A": 1.0 + rng.normal(0, 0.05, n), "B": 1.5 + rng.normal(0, 0.05, n), "C": rng.normal(0, 1.8, n)}
    table = compare(synthetic_task(errors), Bootstraps({}, {}, 500, 0))[0].set_index("label")
    assert table.loc["A", "value"] < table.loc["C", "value"]
    assert (table.loc["A", "rank"], table.loc["A", "rank_worst"]) == (1, 2)
    assert (table.loc["B", "rank"], table.loc["B", "rank_worst"]) == (2, 3)
    assert (table.loc["C", "rank"], table.loc["C", "rank_worst"]) == (1, 3)


def test_a_failed_item_of_a_task_with_a_stated_threshold_counts_at_least_as_the_threshold():
    """A physicality check scored 0 on nine items and failed the tenth: the failure counts as an item at the
    pass threshold (0.5), not at the model's own worst (0), which would make failing free."""
    headline = synthetic_task({"A": np.r_[np.zeros(9), np.nan]})
    headline.scale = ErrorScale(value=0.5, unit="1", source="a stated threshold")
    assert normalised_error(headline, "A", Bootstraps({}, {}, 100, 0)).value == pytest.approx(0.05 / 0.5)


def test_a_normalised_error_is_capped_so_that_no_task_owns_a_domain():
    headline = synthetic_task({"A": np.full(10, 2000.0)})
    headline.scale = ErrorScale(value=1.0, unit="meV/atom", source="a stated threshold")
    normalised = normalised_error(headline, "A", Bootstraps({}, {}, 100, 0))
    assert normalised.value == NORMALISED_CAP and (normalised.replicates == NORMALISED_CAP).all()


def test_leaderboard_of_identical_models_ties_them_and_normalises_by_the_null_predictor(emt_results):
    results = load_results([emt_results])
    metrics, bootstraps = metric_table(results, n_resamples=300)
    board = build(metrics, bootstraps)
    s22 = board.tasks[board.tasks["task"] == "s22"].set_index("label")
    assert s22.loc["emt", "value"] == s22.loc["emt-channels@exact", "value"]
    assert s22.loc["emt", "rank"] == s22.loc["emt-channels@exact", "rank"] and s22.loc["emt", "tied"]
    reference = next(r for r in results if r.task == "s22").predictions["reference"].to_numpy(float)
    assert s22.loc["emt", "norm"] == pytest.approx(s22.loc["emt", "value"] / np.abs(reference).mean())
    assert (s22["ci_low"] <= s22["value"]).all() and (s22["value"] <= s22["ci_high"]).all()
    overall = board.overall.set_index("label")
    assert overall.loc["emt", "score"] == pytest.approx(overall.loc["emt-channels@exact", "score"])
    assert (overall["tasks_missing"] == 0).all() and (overall["coverage"] == "inorganic-crystals, molecules").all()
    assert (overall["score_low"] <= overall["score"]).all() and (overall["score"] <= overall["score_high"]).all()
    domains = board.domains.set_index(["label", "domain"])
    assert overall.loc["emt", "score"] == pytest.approx(domains.loc["emt", "score"].mean())


def test_a_model_scored_against_another_reference_convention_keeps_its_own_errors(emt_results, tmp_path):
    """wbm-formation scores each model against the reference of its energy convention (raw or MP2020-corrected):
    the common-item value and the pairs must use each model's error against its own reference, not its
    predictions against another model's references (chgnet's 0.085 eV/atom once became 0.18)."""
    folder = tmp_path / "results"
    shutil.copytree(emt_results, folder)
    json_path = folder / "emt" / "s22.json"  # the first label: its references fill the shared column
    record = json.loads(json_path.read_text())
    csv_path = json_path.with_name(record["predictions_file"])
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    for column in ("predicted", "reference"):  # another convention: every reference 1 higher, same errors
        frame[column] = [repr(float(v) + 1.0) if v else v for v in frame[column]]
    frame.to_csv(csv_path, index=False)
    record["config"]["reference_energy_convention"] = "shifted"
    record["reference_sha256"] = reference_sha256(frame["id"], frame["quantity"], frame["reference"].astype(float))
    json_path.write_text(json.dumps(record))
    board = build(*metric_table(load_results([folder]), n_resamples=200))
    s22 = board.tasks[board.tasks["task"] == "s22"].set_index("label")
    assert s22.loc["emt-channels@exact", "value"] == pytest.approx(s22.loc["emt", "value"], rel=1e-12)
    assert s22.loc["emt-channels@exact", "rank"] == s22.loc["emt", "rank"]
    # each normalised error is scaled by the null predictor on its own references (predicting 0 for the
    # shifted ones is another error), so the shifted model moves nobody else's score
    without = build(*metric_table([r for r in load_results([folder]) if r.label != "emt"], n_resamples=200))
    alone = without.tasks[without.tasks["task"] == "s22"].set_index("label")
    assert s22.loc["emt-channels@exact", "norm"] == alone.loc["emt-channels@exact", "norm"]
    shifted = pd.read_csv(csv_path)["reference"].to_numpy(float)
    assert s22.loc["emt", "scale"] == pytest.approx(np.abs(shifted).mean())
    assert s22.loc["emt", "scale"] != pytest.approx(s22.loc["emt-channels@exact", "scale"])


def test_adding_a_model_changes_no_other_models_score_or_verdict(emt_results):
    results = load_results([emt_results])
    boards = [build(*metric_table(chosen, n_resamples=200)) for chosen in
              ([r for r in results if r.label != "emt"], results)]
    without, with_emt = ([b.tasks.set_index(["label", "task"]).sort_index() for b in boards])
    others = without.index
    for column in ("norm", "norm_low", "norm_high"):  # a rank counts the better models, so it may move
        pd.testing.assert_series_equal(without[column], with_emt.loc[others, column])
    scores = [b.overall.set_index("label").loc[["emt-channels@exact", "emt-channels@scaled"]] for b in boards]
    pd.testing.assert_frame_equal(scores[0][["score", "score_low", "score_high"]],
                                  scores[1][["score", "score_low", "score_high"]])
    columns = ["task", "first", "second", "difference", "low", "high", "p_value", "better"]
    pairs = [b.pairs[b.pairs["first"].str.startswith("emt-") & b.pairs["second"].str.startswith("emt-")][columns]
             .reset_index(drop=True) for b in boards]
    pd.testing.assert_frame_equal(*pairs)


def test_leaderboard_command_writes_terminal_markdown_csv_and_html(emt_results, tmp_path, capsys):
    stem = tmp_path / "reports" / "leaderboard"
    assert cli.main(["leaderboard", "--results", str(emt_results), "--out", str(stem), "--bootstrap", "200"]) == 0
    shown = capsys.readouterr().out
    assert "s22: mae (kcal/mol), lower is better" in shown and "emt-channels@scaled" in shown
    markdown = Path(f"{stem}.md").read_text()
    assert "omni-bench run --model emt --task dcdft --task s22" in markdown
    assert ("| rank (range) | model | overall score (mean of domain scores) | molecules | inorganic-crystals |"
            in markdown)
    frame = pd.read_csv(f"{stem}.csv")
    assert {"label", "task", "metric", "value", "ci_low", "ci_high", "common_value", "n_common", "rank", "tied",
            "overall_score"} <= set(frame)
    headline = frame[frame["primary"]]
    assert set(headline["metric"]) == {"mae", "v0_mae"} and headline["rank"].notna().all()
    assert headline["warnings"].str.contains("EMT").all()  # EMT against CCSD(T) and PBE references
    html_path = Path(f"{stem}.html")
    # a pairwise matrix per task: each row model against each column model
    assert html_path.read_text().count('<table class="pairwise">') == 2
    assert re.search(r"<td>emt-channels@scaled</td><td>≈ \+0.534 \[\+0.2\d*, \+0.8\d*\]</td>", html_path.read_text())
    # the normalised-error chart and the channel matrix of emt-channels; plotly.js once, under 5 MB in all
    assert plotly_divs(html_path.read_text()) == ["normalised", "channels-0"]
    assert html_path.stat().st_size < 5_000_000


def test_a_cpu_subset_task_says_so_in_the_leaderboard(emt_results, tmp_path):
    """A results file whose task declares ``counts.subset_of`` (as elastic-moduli-small does) gets a note under its
    heading and in the page's reference table."""
    folder = tmp_path / "results"
    shutil.copytree(emt_results, folder)
    for path in folder.glob("*/dcdft.json"):
        record = json.loads(path.read_text())
        record["task"]["config"]["counts"]["subset_of"] = {"task": "dcdft-full", "items": 64}
        path.write_text(json.dumps(record))
    stem = tmp_path / "board"
    assert cli.main(["leaderboard", "--results", str(folder), "--out", str(stem), "--bootstrap", "50"]) == 0
    note = "CPU subset: 16 of the 64 elemental crystals of dcdft-full (run that task for the full set)."
    markdown = Path(f"{stem}.md").read_text()
    assert markdown.split("### dcdft:")[1].split("###")[0].count(note) == 1 and "### s22:" in markdown
    assert markdown.count("CPU subset") == 1
    assert html.escape(note) in Path(f"{stem}.html").read_text()


def test_model_and_suite_selection(emt_results, tmp_path, capsys):
    assert cli.main(["leaderboard", "--results", str(emt_results), "--model", "emt-channels", "--task", "s22",
                     "--bootstrap", "50"]) == 0
    shown = capsys.readouterr().out
    assert "emt-channels@exact" in shown and "dcdft" not in shown and "\nemt " not in shown
    assert cli.main(["leaderboard", "--results", str(emt_results), "--model", "7net-0"]) == 2
    assert "no results in" in capsys.readouterr().err


def copied_results(emt_results: Path, folder: Path) -> Path:
    shutil.copytree(emt_results, folder)
    return folder / "emt" / "s22.json"


def edit_json(path: Path, edit) -> None:
    record = json.loads(path.read_text())
    edit(record["task"], record["config"])
    path.write_text(json.dumps(record))


@pytest.mark.parametrize("edit, what", [
    (lambda task, config: task.update(version=2), "task version 2"),
    (lambda task, config: config.update(inputs_hash="0123456789abcdef"), "task inputs hash '0123456789abcdef'"),
    (lambda task, config: task.update(units={"interaction_energy": "eV"}), "task units {'interaction_energy': 'eV'}"),
    (lambda task, config: task.update(dataset_files=[{"path": "s22.xyz", "sha256": "0" * 64}]), "task data files"),
])
def test_a_result_of_another_task_version_inputs_units_or_data_is_not_ranked(emt_results, tmp_path, capsys, edit,
                                                                             what):
    """The task registry says what the task is now; a result scored on anything else is refused, not ranked."""
    path = copied_results(emt_results, tmp_path / "results")
    edit_json(path, edit)
    for command in ("leaderboard", "report"):
        code = cli.main([command, "--results", str(tmp_path / "results"), "--out", str(tmp_path / command),
                         "--bootstrap", "20"])
        err = capsys.readouterr().err
        assert code == 2 and f"{path}: emt on s22 was scored with {what}" in err, command
        assert f"but the task file {all_tasks()['s22'].path} has" in err and len(err.splitlines()) == 1


def test_names_from_results_files_are_escaped_in_terminal_markdown_and_html(emt_results, tmp_path, capsys):
    """A label with control characters and markup: no escape sequence reaches the terminal, no raw HTML the
    Markdown, nothing unescaped the page."""
    path = copied_results(emt_results, tmp_path / "results")
    label = "emt\x01\x1b[2J<script>alert(1)</script>"
    record = json.loads(path.read_text())
    record["model"]["label"] = label
    path.write_text(json.dumps(record))
    stem = tmp_path / "board"
    assert cli.main(["leaderboard", "--results", str(tmp_path / "results"), "--out", str(stem),
                     "--bootstrap", "20"]) == 0
    shown = capsys.readouterr().out
    assert "\x1b" not in shown and "\x01" not in shown and r"emt\x01\x1b[2J<script>" in shown
    assert cli.main(["report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "report"),
                     "--bootstrap", "20"]) == 0
    for page in (Path(f"{stem}.md"), tmp_path / "report.md", Path(f"{stem}.html"), tmp_path / "report.html"):
        text = re.sub(r"```bash\n.*?```", "", page.read_text(), flags=re.S)  # code blocks show markup as text
        assert "\x1b" not in text and "<script>alert" not in text, page
        assert r"emt\x01\x1b[2J&lt;script&gt;alert(1)&lt;/script&gt;" in text, page


# --- report ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def emt_report(emt_results, tmp_path_factory) -> tuple[Path, Path]:
    report = build_report(load_results([emt_results]), "EMT", n_resamples=200)
    return write_report(report, tmp_path_factory.mktemp("reports") / "emt")


def test_report_is_self_contained_with_every_figure(emt_report):
    html_path, md_path = emt_report
    html = html_path.read_text()
    divs = plotly_divs(html)
    # parity: s22 (1 quantity) + dcdft (3); suites quick, molecules, crystals: distributions + normalised
    # each; one channel matrix (emt-channels)
    assert len(divs) == 4 + 3 * 2 + 1 and len(set(divs)) == len(divs)
    assert "Content-Security-Policy" in html and '<table id="results"' in html
    for name in ("Formic_acid_dimer", "Largest errors", "Channel matrix", "Failures", "No EMT-potential for Si",
                 "LoT EMT vs CCSD(T)", "11 failed"):
        assert name in html
    # every table with numbers says their unit
    assert "<th>predicted (kcal/mol)</th><th>reference (kcal/mol)</th><th>error (kcal/mol)</th>" in html
    assert "<th>MAE (A^3/atom) [95% CI]</th>" in html
    summary = md_path.read_text()
    assert "[emt.html](emt.html)" in summary and "| s22 | mae | emt |" in summary
    assert "| model | item | predicted (kcal/mol) | reference (kcal/mol) | error (kcal/mol) |" in summary
    # every metric carries its interval: "value [low, high]" in the summary; the headline its warnings
    assert re.search(r"\| emt \| mae \| [-\d.e]+ \[[-\d.e]+, [-\d.e]+\] \| kcal/mol \| 22 \| 0 \|", summary)
    assert re.search(r"\| s22 \| mae \| emt \| .* \| kcal/mol \| 1=( \(1-\d\))? \| 0 \| LoT EMT vs CCSD\(T\) \|",
                     summary)


def test_plots_and_tables_read_one_interval_per_metric(emt_results, emt_report):
    """The parity table's MAE of a quantity is the metric table's row, not a second bootstrap: the dcdft v0
    interval of the issue ([0.0868, 0.147] in the plot against [0.0858, 0.15] in the table) cannot recur."""
    results = load_results([emt_results])
    metrics, _ = metric_table(results, n_resamples=200)
    html = emt_report[0].read_text()
    for result in results:
        for quantity, metric in (("volume", "v0_mae"), ("interaction_energy", "mae"), ("interaction_energy", "rmse")):
            row = metrics[(metrics["label"] == result.label) & (metrics["task"] == result.task)
                          & (metrics["metric"] == metric)]
            if row.empty:
                continue
            stats = parity_statistics(result, quantity, metrics, 200, 0)
            expected = tuple(float(row[c].iloc[0]) for c in ("value", "ci_low", "ci_high"))
            assert stats[metric.split("_")[-1]] == expected
            shown = fmt_ci(*expected)
            assert html.count(f"<td>{shown}</td>") >= 2, shown  # the metric table and the parity table


def test_few_points_are_drawn_as_points_and_many_as_violins(emt_report):
    """dcdft: EMT has 5 scored elements (points); 7net-like counts of 22 S22 dimers get a violin."""
    html = emt_report[0].read_text()
    crystals = {t["name"]: t["type"] for t in figure_data(html, "errors-crystals")}
    molecules = {t["name"]: t["type"] for t in figure_data(html, "errors-molecules")}
    assert set(crystals.values()) == {"scatter"}  # 5 points each
    assert set(molecules.values()) == {"violin"}  # 22 points each
    assert all(len(t["y"]) < figures.MIN_VIOLIN for t in figure_data(html, "errors-crystals"))


def test_accuracy_band_is_a_filled_band_of_the_right_width():
    rows = pd.DataFrame({"id": ["a", "b", "c"], "reference": [-1.0, 2.0, 6.0], "predicted": [-0.8, 2.3, 5.5]})
    fig = figures.parity_figure("t", "adsorption_energy", "eV", {"m": rows}, figures.styles(["m"]))
    band = next(t for t in fig.data if t.fill == "toself")
    assert band.name == "±0.1 eV" and np.allclose(np.array(band.y) - np.array(band.x), [-0.1, -0.1, 0.1, 0.1, -0.1])
    assert float(figures.BAND_COLOUR.rsplit(",", 1)[1].strip(" )")) >= 0.25  # a visible fill, not a hairline
    assert figures.accuracy_band("interaction_energy", "kcal/mol")[0] == 1.0
    assert figures.accuracy_band("volume", "A^3/atom") is None


def test_channel_matrix_marks_the_better_channel(emt_results):
    results = load_results([emt_results])
    metrics, replicates = metric_table(results, n_resamples=50)
    board = build(metrics, replicates)
    matrices = figures.channel_matrices(board.tasks)
    assert [family for family, _ in matrices] == ["emt-channels"]
    heatmap = matrices[0][1].data[0]
    channels, tasks = list(heatmap.y), list(heatmap.x)
    assert channels == ["exact", "scaled"] and tasks == ["dcdft", "s22"]
    mine = board.tasks[board.tasks["model"] == "emt-channels"].set_index(["channel", "task"])
    for c, task in enumerate(tasks):
        best = mine.xs(task, level="task")["error"].idxmin()
        starred = [channels[r] for r in range(len(channels)) if str(heatmap.text[r][c]).startswith("★")]
        assert starred == [best]
        for r, channel in enumerate(channels):  # hover: the value with its interval and unit
            assert fmt_ci(*mine.loc[(channel, task), ["value", "ci_low", "ci_high"]]) in heatmap.customdata[r][c]


def test_channel_by_domain_table_marks_the_best_channel_and_whether_it_separates(emt_results):
    board = build(*metric_table(load_results([emt_results]), n_resamples=200))
    channels = board.channels
    assert set(channels["model"]) == {"emt-channels"}  # emt has one channel: no table
    for domain, rows in channels.groupby("domain"):
        best = rows[rows["best"]]
        assert len(best) == 1 and best["score"].iloc[0] == rows["score"].min()
        assert best["next"].iloc[0] == rows.sort_values("score")["label"].iloc[1]
        assert best["separable"].iloc[0] == (best["p_value"].iloc[0] < PAIR_LEVEL)
        expected = board.domains.set_index(["label", "domain"]).loc[list(zip(rows["label"], [domain] * len(rows),
                                                                             strict=True)), "score"]
        assert rows["score"].to_list() == expected.to_list()
    markdown = leaderboard_output.markdown(board, load_results([emt_results]), "omni-bench leaderboard")
    assert "## Channels by domain" in markdown and "★ " in markdown and "best channel" in markdown


def test_the_normalised_chart_shows_every_value():
    frame = pd.DataFrame({"task": ["a", "b"], "label": ["m", "m"], "norm": [0.4, 2.3], "norm_low": [0.3, 1.9],
                          "norm_high": [0.5, 9.0], "value": [1.0, 2.0], "ci_low": [0.9, 1.8], "ci_high": [1.1, 3.0],
                          "unit": ["eV", "eV"], "metric": ["mae", "mae"]})
    fig = figures.normalised_figure("t", frame, figures.styles(["m"]))
    top = fig.layout.yaxis.range[1]
    assert top > 2.3 and "cut" in fig.layout.title.text  # the 9.0 interval is cut, no value is


def test_report_command_exit_codes(emt_results, tmp_path, capsys):
    assert cli.main(["report", "--results", str(emt_results), "--suite", "quick", "--model", "emt",
                     "--out", str(tmp_path / "quick.html"), "--bootstrap", "100"]) == 0
    assert (tmp_path / "quick.html").is_file() and (tmp_path / "quick.md").is_file()
    assert cli.main(["report", "--results", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_the_committed_leaderboard_script_writes_the_interactive_page(tmp_path):
    """scripts/make_leaderboard.sh, which regenerates reports/leaderboard.*, on a small slice: its command
    path ends in the interactive page, the Markdown and the CSV."""
    second = tmp_path / "emt-again.yaml"  # a second model variant, so the page has a chart to draw
    second.write_text(EMT_CARD.read_text().replace("name: emt", "name: emt-again"))
    env = {**os.environ, "MODELS": f"emt {second}", "SUITES": "quick", "LIMIT": "2", "XTB_SUITES": "",
           "STORE": str(tmp_path / "store.sqlite"), "RESULTS": str(tmp_path / "results"), "OUT": str(tmp_path / "lb")}
    done = subprocess.run(["bash", str(REPO / "scripts" / "make_leaderboard.sh")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    html = (tmp_path / "lb.html").read_text()
    assert plotly_divs(html) == ["normalised"]
    assert '<table id="results"' in html and "omni-bench leaderboard --results" in html
    assert (tmp_path / "lb.md").is_file() and "warnings" in pd.read_csv(tmp_path / "lb.csv").columns


@pytest.mark.slow
def test_the_committed_leaderboard_is_what_its_committed_results_give(tmp_path, capsys):
    """reports/leaderboard.md and .csv are regenerated, byte for byte but the generation line, from
    reports/leaderboard-results: nothing in them was typed by hand or left behind by a change of the code."""
    stem = tmp_path / "leaderboard"
    assert cli.main(["leaderboard", "--results", str(REPO / "reports" / "leaderboard-results"),
                     "--out", str(stem)]) == 0
    capsys.readouterr()

    def without_generation_line(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("Generated by omni-bench")]

    committed = REPO / "reports" / "leaderboard"
    assert without_generation_line(stem.with_suffix(".md").read_text()) == \
        without_generation_line(committed.with_suffix(".md").read_text())
    ours, theirs = (pd.read_csv(p.with_suffix(".csv"), keep_default_na=False) for p in (stem, committed))
    pd.testing.assert_frame_equal(ours, theirs, rtol=1e-12)  # sums in another order differ in the last digit
    assert (REPO / "reports" / "leaderboard.html").stat().st_size < 5_000_000  # the page stays under 5 MB


@pytest.mark.parametrize(("error", "kind"), [
    ("ElasticallyUnstable: elastically unstable: smallest eigenvalue -48.7 GPa", "elastically unstable"),
    ("DynamicallyUnstable: dynamically unstable: 4720 of 11232 mesh modes imaginary", "dynamically unstable"),
    ("RuntimeError: Pre-relaxation did not converge: max|F| = 0.05087 eV/A > fmax = 0.05 eV/A", "not converged"),
    ("RuntimeError: DefaultCPUAllocator: can't allocate memory: you tried to allocate 47710208 bytes", "out of memory"),
    ("E(V) minimum at 512.3 A^3 lies outside the sampled volumes", "minimum outside the sampled range"),
    ("ItemTimeout: took longer than 60 s", "timed out"),
    ("InvalidResult: the model returned NaN energy", "model error")])
def test_failures_are_named_by_kind(error, kind):
    assert failure_kind(error) == kind


def test_the_leaderboard_names_the_kinds_of_failures(emt_results):
    results = load_results([emt_results])
    board = annotate(build(*metric_table(results, n_resamples=50)), results)
    dcdft = board.tasks[(board.tasks["task"] == "dcdft") & (board.tasks["label"] == "emt")].iloc[0]
    # EMT has no parameters for 9 of the 16 elements, and for 2 its E(V) minimum lies outside the volumes
    assert dcdft["failure_kinds"] == "model error 9, minimum outside the sampled range 2"
    markdown = leaderboard_output.markdown(board, results, "omni-bench leaderboard")
    assert "| 11 (model error 9, minimum outside the sampled range 2) |" in markdown
    # the committed CHGNet heat capacities: two 1,000-atom supercells did not fit in memory
    [chgnet] = load_results([REPO / "reports" / "leaderboard-results" / "chgnet" / "heat-capacity-small.json"])
    assert failure_kinds(chgnet) == "out of memory 2"
