"""The leaderboard site in a real headless browser (the system's Chromium, driven by selenium).

Skipped, with the reason, only where no Chromium and chromedriver are installed; `.ci/run`
installs them with apt-get. Pages are opened from file:// exactly as a user opens them from disk.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest

from dgbench.config import data_dir
from dgbench.results.site import build_site, leaderboard_csvs

from site_browser import NoBrowser, browser
from test_results_site import SHA, provenance_records, publish_html

LEADERBOARD = data_dir("leaderboards") / "digits-appearance.csv"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    build_site(leaderboard_csvs([data_dir("leaderboards")]), out)
    return out


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    try:
        drv = browser(1200, 900, profile=str(tmp_path_factory.mktemp("chromium-profile")))
    except NoBrowser as exc:
        pytest.skip(f"no browser to test the site in: {exc}")
    yield drv
    drv.quit()


def open_page(driver, path: Path) -> None:
    driver.get_log("browser")  # drain the previous page's log: each page starts with its own
    driver.get(path.as_uri())


def console_errors(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def column(driver, table: int, col: int) -> list[str]:
    """The visible text of column ``col`` of the ``table``-th board, top to bottom."""
    return driver.execute_script(
        "var t = document.querySelectorAll('table.board')[arguments[0]], col = arguments[1];"
        "return Array.prototype.filter.call(t.tBodies[0].rows, function (r) { return !r.hidden; })"
        ".map(function (r) { var v = r.cells[col].querySelector('.v, .model');"
        " return v ? v.textContent : r.cells[col].textContent; });", table, col)


def header(driver, table: int, label: str):
    from selenium.webdriver.common.by import By

    tab = driver.find_elements(By.CSS_SELECTOR, "table.board")[table]
    return next(th for th in tab.find_elements(By.CSS_SELECTOR, "thead th") if th.text.strip() == label)


def test_page_loads_from_file_without_console_errors(driver, site: Path) -> None:
    for page in ("index.html", "digits-appearance.html", "digits-typeset-digits-cross-domain.html"):
        open_page(driver, site / page)
        assert driver.execute_script("return document.readyState") == "complete"
        assert console_errors(driver) == [], page
    assert driver.title.startswith("digits-typeset-digits · cross-domain")


def test_dom_numbers_equal_the_csv(driver, site: Path) -> None:
    open_page(driver, site / "digits-appearance.html")
    cells = driver.execute_script(  # {metric: {model: {shift: [value, drop]}}} as rendered
        "var out = {};"
        "document.querySelectorAll('table.board').forEach(function (t) {"
        "  var heads = Array.prototype.map.call(t.tHead.rows[0].cells, function (h) { return h.textContent; });"
        "  var m = out[t.getAttribute('data-metric')] = {};"
        "  Array.prototype.forEach.call(t.tBodies[0].rows, function (r) {"
        "    var row = m[r.getAttribute('data-model')] = {};"
        "    Array.prototype.forEach.call(r.cells, function (c, i) {"
        "      var v = c.querySelector('.v'), d = c.querySelector('.d');"
        "      if (v) row[heads[i]] = [v.textContent, d ? d.textContent : ''];"
        "    });"
        "  });"
        "});"
        "return out;")
    rows = list(csv.DictReader(LEADERBOARD.open()))
    assert set(cells) == {"top1_err", "top5_err", "kappa"}  # kappa: the error-consistency heat map
    for metric, table in ((m, t) for m, t in cells.items() if m != "kappa"):
        expected = {}
        for r in rows:
            drop = r[f"{metric}_drop_pct"]
            expected.setdefault(r["model"], {})[r["shift"]] = [r[f"{metric}_pct"], f"({drop})" if drop else ""]
        assert table == expected, metric


def n_models() -> int:
    """Models in the built-in appearance leaderboard (one row each in a page's table)."""
    import csv

    from dgbench.config import data_dir

    return len({r["model"] for r in csv.DictReader((data_dir("leaderboards") / "digits-appearance.csv").open())})


def test_clicking_a_header_sorts_the_rows(driver, site: Path) -> None:
    from selenium.webdriver.common.keys import Keys

    open_page(driver, site / "digits-appearance.html")
    th = header(driver, 0, "cv-stylize")
    col = driver.execute_script("return arguments[0].cellIndex", th)
    before = [float(v) for v in column(driver, 0, col)]
    assert th.get_attribute("aria-sort") is None
    th.find_element("css selector", "button").click()
    assert th.get_attribute("aria-sort") == "ascending"
    ascending = [float(v) for v in column(driver, 0, col)]
    assert ascending == sorted(before) and ascending != before
    th.find_element("css selector", "button").click()
    assert th.get_attribute("aria-sort") == "descending"
    assert [float(v) for v in column(driver, 0, col)] == sorted(before, reverse=True)
    # Keyboard: the header is a button, so Enter on it sorts too (and the other header resets).
    model = header(driver, 0, "model")
    model.find_element("css selector", "button").send_keys(Keys.ENTER)
    assert model.get_attribute("aria-sort") == "ascending" and th.get_attribute("aria-sort") is None
    names = column(driver, 0, 0)
    assert names == sorted(names) and len(names) == n_models()
    # The other metric's table keeps its own order.
    assert header(driver, 1, "cv-stylize").get_attribute("aria-sort") is None


def test_the_filter_hides_rows(driver, site: Path) -> None:
    from selenium.webdriver.common.by import By

    open_page(driver, site / "digits-appearance.html")
    box = driver.find_element(By.ID, "filter")
    box.send_keys("ibn_a")
    for table in (0, 1):  # every table of the page follows the one box
        assert column(driver, table, 0) == ["small_resnet_ibn_a", "small_resnet_ibn_ad"]
    assert f"Showing 2 of {n_models()} rows" in driver.find_element(By.ID, "filter-status").text
    hidden = driver.execute_script("return document.querySelectorAll('table.board:not([data-metric=kappa]) tbody tr[hidden]').length")
    assert hidden == 2 * (n_models() - 2)
    # The heat map follows too: the pairs with a model matching the box stay.
    pairs = column(driver, 2, 0)
    assert pairs and all("ibn_a" in p for p in pairs) and len(pairs) < n_models() * (n_models() - 1) // 2
    box.clear()
    box.send_keys(" ")  # blank: everything again
    assert len(column(driver, 0, 0)) == n_models()


def test_screenshot_is_not_blank(driver, site: Path) -> None:
    from PIL import Image

    open_page(driver, site / "digits-appearance.html")
    img = np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB"), dtype=float)
    assert img.shape[0] > 500 and img.shape[1] > 800
    assert img.std() > 20  # text, rules and shaded cells, not one flat colour
    colours = {tuple(p) for p in img[::7, ::7].reshape(-1, 3).astype(int)}
    assert len(colours) > 20


def test_readable_at_200_percent_zoom(driver, site: Path) -> None:
    # 200 % zoom of a 1280 px window lays the page out in 640 CSS px: nothing may force the page
    # itself to scroll sideways (wide tables scroll inside their own region).
    driver.set_window_size(640, 900)
    try:
        open_page(driver, site / "digits-appearance.html")
        width = driver.execute_script("return document.documentElement.clientWidth")
        assert driver.execute_script("return document.documentElement.scrollWidth") <= width
        box = driver.execute_script("return document.getElementById('filter').getBoundingClientRect().right")
        assert box <= width
    finally:
        driver.set_window_size(1200, 900)


def test_paper_rows_and_provenance(driver, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    site = publish_html(tmp_path, provenance_records())
    open_page(driver, site / "imagenet-appearance.html")
    assert console_errors(driver) == []
    paper = driver.find_elements(By.CSS_SELECTOR, "table.board")[0].find_elements(By.CSS_SELECTOR, "tr.paper")
    assert paper and all(r.find_element(By.CSS_SELECTOR, ".badge").is_displayed() for r in paper)
    # the measured models' paper rows, variants of Tables 4-5 (e.g. "resnet50_ibn_a (ibn_ratio=0.25)") included
    assert {r.get_attribute("data-model").split(" (")[0] for r in paper} == {"resnet50", "resnet50_ibn_a", "resnet50_ibn_b"}
    row = driver.find_element(By.CSS_SELECTOR, 'tr[data-source="dgbench"][data-model="resnet50"]')
    details = row.find_element(By.CSS_SELECTOR, "details.prov")
    assert not details.find_element(By.TAG_NAME, "dl").is_displayed()
    details.find_element(By.TAG_NAME, "summary").click()
    assert SHA in details.find_element(By.TAG_NAME, "dl").text


def test_new_pages_load_and_read_in_the_protocol_order(driver, site: Path) -> None:
    from selenium.webdriver.common.by import By

    def heads(table: int) -> list[str]:
        tab = driver.find_elements(By.CSS_SELECTOR, "table.board")[table]
        return [th.text.strip() for th in tab.find_elements(By.CSS_SELECTOR, "thead th")]

    open_page(driver, site / "digits-appearance.html")
    assert heads(0) == ["model", "origin", "rgb+50", "r+50", "std-x1.5", "cv-stylize"]  # not alphabetical
    for page in ("digit-scenes-finetune.html", "digits-divergence.html", "digits-corruptions-lite.html"):
        open_page(driver, site / page)
        assert console_errors(driver) == [], page
        imgs = driver.find_elements(By.CSS_SELECTOR, "figure img")
        assert imgs and all(driver.execute_script("return arguments[0].naturalWidth", i) > 100 for i in imgs), page
    open_page(driver, site / "digits-corruptions-lite.html")
    assert heads(0) == ["model", "clean", "mean", "noise", "blur", "weather", "digital", "mCE"]
    # The summary fits the window without scrolling sideways; the full grid scrolls below it.
    fits = driver.execute_script("var t = document.querySelectorAll('table.board')[0];"
                                 "return t.parentElement.scrollWidth <= t.parentElement.clientWidth;")
    assert fits
    open_page(driver, site / "digits-divergence.html")
    th = header(driver, 0, "layer2.0")
    th.find_element("css selector", "button").click()  # sorting works on nats as on percentages
    values = [float(v) for v in column(driver, 0, driver.execute_script("return arguments[0].cellIndex", th))]
    assert values == sorted(values) and len(values) == n_models()
    assert driver.find_element(By.CSS_SELECTOR, "a[href='index.html']").is_displayed()
    open_page(driver, site / "index.html")
    links = {a.get_attribute("href").rsplit("/", 1)[-1] for a in driver.find_elements(By.CSS_SELECTOR, "table.index a")}
    assert {"digit-scenes-finetune.html", "digits-divergence.html"} <= links


def test_intervals_on_hover_and_the_error_consistency_heat_map(driver, site: Path) -> None:
    """Each measured error's hover text is its 95 % Wilson interval (scipy) and its drop's paired
    bootstrap interval; the heat map's kappas are those of the shipped per-image outcomes."""
    from scipy import stats as sps

    from dgbench.metrics.stats import error_consistency, paired_bootstrap_diff
    from dgbench.results.leaderboard_outcomes import load_sidecar

    side = load_sidecar(LEADERBOARD)
    open_page(driver, site / "digits-appearance.html")
    got = driver.execute_script(
        "var t = document.querySelector('table.board[data-metric=top1_err]'), out = {};"
        "var heads = Array.prototype.map.call(t.tHead.rows[0].cells, function (h) { return h.textContent; });"
        "Array.prototype.forEach.call(t.tBodies[0].rows, function (r) {"
        "  Array.prototype.forEach.call(r.cells, function (c, i) {"
        "    if (c.title) out[r.getAttribute('data-model') + '|' + heads[i]] = c.title; }); });"
        "return out;")
    assert len(got) == len(side.rows)  # every measured top-1 cell
    evaluated, correct = side.correct(("small_resnet", "", "rgb+50"), 1)
    ci = sps.binomtest(int((~correct).sum()), correct.size).proportion_ci(method="wilson")
    d = paired_bootstrap_diff(side.correct(("small_resnet", "", "origin"), 1)[1], correct, n_boot=10_000)
    assert got["small_resnet|rgb+50"] == (f"95 % interval {100 * ci.low:.1f}–{100 * ci.high:.1f} (Wilson, 599 images); "
                                          f"drop {100 * d.lo:.1f}–{100 * d.hi:.1f} (paired bootstrap over the images)")
    assert "drop" not in got["small_resnet|origin"]
    kappa = driver.execute_script(
        "var t = document.querySelector('table.board[data-metric=kappa]'), out = {};"
        "var heads = Array.prototype.map.call(t.tHead.rows[0].cells, function (h) { return h.textContent; });"
        "Array.prototype.forEach.call(t.tBodies[0].rows, function (r) {"
        "  Array.prototype.forEach.call(r.cells, function (c, i) {"
        "    var v = c.querySelector('.v');"
        "    if (v) out[r.getAttribute('data-model') + '|' + heads[i]] = [v.textContent, c.style.backgroundColor]; }); });"
        "return out;")
    models = sorted({m for m, _, _ in side.rows})
    assert len(kappa) == len(models) * (len(models) - 1) // 2 * 5
    a, b = side.correct(("small_resnet", "", "cv-stylize"), 1)[1], side.correct(("small_resnet_ibn_b", "", "cv-stylize"), 1)[1]
    value, colour = kappa["small_resnet · small_resnet_ibn_b|cv-stylize"]
    assert value == f"{error_consistency(a, b):.2f}" and colour  # shaded
    assert "Error consistency" in driver.page_source and console_errors(driver) == []
