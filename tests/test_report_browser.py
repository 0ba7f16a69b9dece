"""The leaderboard and a report opened in headless Chromium (Debian's chromium and chromium-driver), as a
reader would open them: offline, without console errors, with a table that sorts, filters and restores its
state from the URL, parity points that name their item on hover, and axis labels legible at 1400 px.
One browser session serves every test of the module."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest
from helpers import run_task

from omni_bench import cli
from omni_bench.reporting import figures
from omni_bench.reporting.leaderboard import build
from omni_bench.reporting.load import load_results
from omni_bench.reporting.report import build_report, write_report
from omni_bench.reporting.tables import metric_table

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WIDTH = 1400
MIN_FONT_PX = 11

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.fail("the browser tests need Debian's chromium and chromium-driver "
                    "(apt-get install -y chromium chromium-driver) and pip install selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={WIDTH},1000", "--hide-scrollbars"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def pages(emt_results, tmp_path_factory) -> dict[str, Path]:  # noqa: F811
    folder = tmp_path_factory.mktemp("pages")
    assert cli.main(["leaderboard", "--results", str(emt_results), "--out", str(folder / "leaderboard"),
                     "--bootstrap", "100"]) == 0
    report, _ = write_report(build_report(load_results([emt_results]), "EMT", n_resamples=100), folder / "emt")
    return {"leaderboard": folder / "leaderboard.html", "report": report}


def open_page(driver, url: str) -> None:
    """Load a page and wait until plotly has drawn every figure."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(url)
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && Array.from(document.querySelectorAll("
        "'.plotly-graph-div')).every(g => g.querySelector('svg.main-svg'))"))


def visible_rows(driver) -> list[tuple[str, str]]:
    return [tuple(r) for r in driver.execute_script(
        "return Array.from(document.querySelectorAll('#results tbody tr')).filter(r => !r.hidden)"
        ".map(r => [r.cells[0].textContent, r.dataset.task]);")]


def column(driver, key: str) -> list[str]:
    return driver.execute_script(
        "const i = Array.from(document.querySelectorAll('#results thead th')).findIndex(h => h.dataset.key === "
        "arguments[0]); return Array.from(document.querySelectorAll('#results tbody tr')).filter(r => !r.hidden)"
        ".map(r => r.cells[i].textContent);", key)


def test_pages_open_offline_without_console_errors(browser, pages):
    for path in pages.values():
        open_page(browser, path.resolve().as_uri())
        errors = [m for m in browser.get_log("browser") if m["level"] == "SEVERE"]
        assert not errors, errors
        sent = [e["message"] for e in browser.get_log("performance") if '"Network.requestWillBeSent"' in e["message"]]
        urls = re.findall(r'"url":"([^"]+)"', "".join(sent))
        assert urls and all(u.startswith(("file:", "data:", "blob:")) for u in urls), urls
        assert browser.execute_script("return document.querySelectorAll('.js-plotly-plot').length") > 0


def test_leaderboard_table_sorts_filters_and_restores_its_state_from_the_url(browser, pages):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    open_page(browser, pages["leaderboard"].resolve().as_uri())
    everything = visible_rows(browser)
    assert len(everything) == 6  # 3 model variants x 2 tasks
    header = browser.find_element(By.CSS_SELECTOR, '#results th[data-key="norm"]')
    header.click()
    assert "sort=norm&dir=asc" in browser.current_url
    ascending = [float(v) for v in column(browser, "norm")]
    assert ascending == sorted(ascending) and ascending != sorted(ascending, reverse=True)
    header.click()
    assert "dir=desc" in browser.current_url
    assert [float(v) for v in column(browser, "norm")] == sorted(ascending, reverse=True)

    Select(browser.find_element(By.ID, "filter-family")).select_by_value("emt-channels")
    Select(browser.find_element(By.ID, "filter-task")).select_by_value("s22")
    chosen = visible_rows(browser)
    assert sorted(chosen) == [("emt-channels@exact", "s22"), ("emt-channels@scaled", "s22")]
    assert "family=emt-channels" in browser.current_url and "task=s22" in browser.current_url
    assert browser.find_element(By.ID, "results-count").text == "2 of 6 rows"

    url = browser.current_url
    browser.get("about:blank")
    open_page(browser, url)  # a fresh load of the link restores filters, sort and rows
    assert visible_rows(browser) == chosen
    assert Select(browser.find_element(By.ID, "filter-task")).first_selected_option.get_attribute("value") == "s22"
    assert browser.find_element(By.CSS_SELECTOR, '#results th[data-key="norm"]').get_attribute(
        "aria-sort") == "descending"
    Select(browser.find_element(By.ID, "filter-suite")).select_by_value("crystals")  # dcdft only: none left
    assert visible_rows(browser) == [] and "suite=crystals" in browser.current_url


def weighted_rows(driver) -> dict[str, tuple[int, int, float]]:
    """The page's own ranking: label -> (rank, worst rank, weighted score)."""
    return {r[0]: (int(r[1]), int(r[2]), float(r[3])) for r in driver.execute_script(
        "return Array.from(document.querySelectorAll('#weighted tbody tr')).map(r => "
        "[r.dataset.label, r.dataset.rank, r.dataset.rankWorst, r.dataset.score]);")}


def set_weight(driver, kind: str, name: str, value: str) -> None:
    driver.execute_script(
        "const i = document.querySelector(`#weights input[data-weight='${arguments[0]}']"
        "[data-name='${arguments[1]}']`); i.value = arguments[2]; i.dispatchEvent(new Event('input'));",
        kind, name, value)


def test_the_leaderboard_ranks_again_with_the_readers_weights_kept_in_the_url(browser, pages, emt_results):
    """With every weight 1 the page's own ranking is the Overall table (same scores, ranks and ranges from the
    replicates it carries); a domain weight of 0 leaves that domain out; the weights survive a reload of the
    link and a sort of the results table."""
    from selenium.webdriver.common.by import By

    board = build(*metric_table(load_results([emt_results]), n_resamples=100))  # as the page: --bootstrap 100
    overall, domains = board.overall.set_index("label"), board.domains.set_index(["label", "domain"])
    open_page(browser, pages["leaderboard"].resolve().as_uri())
    shown = weighted_rows(browser)
    assert set(shown) == set(overall.index)
    for label, (rank, worst, score) in shown.items():
        assert (rank, worst) == (overall.loc[label, "rank"], overall.loc[label, "rank_worst"])
        assert score == pytest.approx(overall.loc[label, "score"], rel=1e-9)

    set_weight(browser, "domain", "molecules", "0")
    assert "w.molecules=0" in browser.current_url
    for label, (_, _, score) in weighted_rows(browser).items():
        assert score == pytest.approx(domains.loc[(label, "inorganic-crystals"), "score"], rel=1e-9)
    set_weight(browser, "domain", "molecules", "3")  # 3 parts molecules to 1 part crystals
    for label, (_, _, score) in weighted_rows(browser).items():
        expected = (3 * domains.loc[(label, "molecules"), "score"] + domains.loc[(label, "inorganic-crystals"),
                                                                                  "score"]) / 4
        assert score == pytest.approx(expected, rel=1e-9)
    set_weight(browser, "task", "s22", "0")  # the only task of molecules: the domain drops out again
    dropped = weighted_rows(browser)
    browser.find_element(By.CSS_SELECTOR, '#results th[data-key="norm"]').click()
    url = browser.current_url
    assert all(key in url for key in ("w.molecules=3", "t.s22=0", "sort=norm"))
    browser.get("about:blank")
    open_page(browser, url)
    assert weighted_rows(browser) == dropped
    assert browser.execute_script(
        "return document.querySelector(`#weights input[data-name='s22']`).value") == "0"


def hover_first_point(browser, figure_id: str) -> str:
    """Move the mouse onto the first marker of a figure; the text plotly shows on hover."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    point = browser.find_element(By.CSS_SELECTOR, f"#{figure_id} .scatterlayer .points path")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", point)
    ActionChains(browser).move_to_element(point).perform()
    return WebDriverWait(browser, 10).until(lambda d: d.execute_script(
        "const t = document.querySelector(arguments[0] + ' .hoverlayer .hovertext');"
        "return t ? t.textContent : false;", f"#{figure_id}"))


def test_hovering_a_parity_point_names_its_item(browser, pages, emt_results):  # noqa: F811
    ids = set(next(r for r in load_results([emt_results]) if r.task == "s22").predictions["id"])
    open_page(browser, pages["report"].resolve().as_uri())
    shown = hover_first_point(browser, "parity-s22-interaction-energy")
    assert any(item in shown for item in ids), shown
    assert "reference" in shown and "predicted" in shown and "error" in shown and "kcal/mol" in shown


def png_width(path: Path) -> int:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">I", data[16:20])[0]


AXIS_LABELS = """
return Array.from(document.querySelectorAll('.js-plotly-plot')).map(g => {
  const titles = Array.from(g.querySelectorAll('.infolayer text'))
    .filter(t => /^[xy]\\d*title$/.test(t.getAttribute('class')));
  const ticks = Array.from(g.querySelectorAll('.xaxislayer-above text, .yaxislayer-above text'));
  const labels = titles.concat(ticks).filter(t => t.textContent.trim());
  const boxes = labels.map(t => t.getBoundingClientRect());
  return {id: g.id, width: g.getBoundingClientRect().width,
          x_titles: titles.filter(t => t.getAttribute('class').startsWith('x') && t.textContent.trim()).length,
          y_titles: titles.filter(t => t.getAttribute('class').startsWith('y') && t.textContent.trim()).length,
          smallest_font: Math.min(...labels.map(t => parseFloat(getComputedStyle(t).fontSize))),
          left: Math.min(...boxes.map(b => b.left)), right: Math.max(...boxes.map(b => b.right)),
          empty: boxes.filter(b => b.width === 0 || b.height === 0).length};
});
"""


def test_every_chart_has_legible_axis_labels_at_1400_px(browser, pages, tmp_path):
    """The issue's 5430x462 PNG squeezed to 1300x110 px: here every chart fills the page width, and each of
    its axis titles and tick labels is drawn at >= 11 px inside the 1400 px window."""
    for name, path in pages.items():
        open_page(browser, path.resolve().as_uri())
        shot = tmp_path / f"{name}.png"
        browser.save_screenshot(str(shot))
        assert png_width(shot) == WIDTH
        assert browser.execute_script("return document.documentElement.scrollWidth") <= WIDTH  # nothing runs off
        charts = browser.execute_script(AXIS_LABELS)
        assert charts
        for chart in charts:
            assert chart["x_titles"] >= 1 and chart["y_titles"] >= 1, chart
            assert chart["smallest_font"] >= MIN_FONT_PX, chart
            assert 0 <= chart["left"] and chart["right"] <= WIDTH and chart["empty"] == 0, chart
            assert chart["width"] >= 0.9 * (WIDTH - 40), chart


def test_report_of_real_models_on_a_few_items(browser, tmp_path):
    """7net-0 and both 7net-mf-0 channels: errors of a few kcal/mol on S22, a channel matrix for 7net-mf-0,
    and a parity point that names its dimer. (conftest's run_task keeps the models loaded for later tests.)"""
    run_task("s22", "7net-0", tmp_path, limit=2)
    run_task("s22", "7net-mf-0", tmp_path, limit=2, channels=["all"])
    results = load_results([tmp_path / "out"])
    assert {r.label for r in results} == {"7net-0", "7net-mf-0@PBE", "7net-mf-0@R2SCAN"}
    metrics, replicates = metric_table(results, n_resamples=200)
    board = build(metrics, replicates)
    assert ((board.tasks["value"] > 0) & (board.tasks["value"] < 10)).all()  # kcal/mol; ~2-3 published for 7net-0
    assert [family for family, _ in figures.channel_matrices(board.tasks)] == ["7net-mf-0"]
    report = build_report(results, "real models", n_resamples=200)
    html_path, _ = write_report(report, tmp_path / "real")
    open_page(browser, html_path.resolve().as_uri())
    assert not [m for m in browser.get_log("browser") if m["level"] == "SEVERE"]
    shown = hover_first_point(browser, "parity-s22-interaction-energy")
    assert any(r.predictions["id"].iloc[0] in shown for r in results), shown
