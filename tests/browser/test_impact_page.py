"""The impact page in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`,
installed by .ci/run) driven by Selenium opens the file, finds the rules diff it opens with, the
headline table, the per-rule counts, its charts and its table of changes, and saves a screenshot. Skipped, saying why, only when the browser or its driver is not installed.

Set IMPACT_SCREENSHOT=/some/file.png to keep the screenshot (otherwise it is in tmp_path).
"""
from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest

from service.domain.clock import FixedClock
from service.entrypoints import impact_page
from service.entrypoints.bootstrap import policy_source, simulation_stores
from service.entrypoints.settings import Settings
from service.usecases.impact import version_changes
from service.usecases.simulate import simulate
from tests.conftest import NOW, RULES_DIR, memory_services
from tests.loggen import generate

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="headless Chromium is not installed: `apt-get install -y chromium chromium-driver` "
           f"(found chromium={CHROMIUM}, chromedriver={CHROMEDRIVER})")


@pytest.fixture(scope="module")
def page(policy, tmp_path_factory) -> tuple[Path, dict]:
    """The impact page of a simulation under rules where no rejection opens the 90-day window."""
    services = memory_services(policy, FixedClock(NOW))
    generate(services, 300, users=30, seed=3)
    out = io.StringIO()
    services.stores.log.export(out)
    lines = list(enumerate(out.getvalue().splitlines(keepends=True), 1))
    rules = tmp_path_factory.mktemp("candidate") / "rules"
    shutil.copytree(RULES_DIR, rules)
    for file in rules.glob("*.yaml"):
        file.write_text(file.read_text().replace("starts_cooldown: true", "starts_cooldown: false"))
    source = policy_source(Settings(), rules_dir=rules)
    result = simulate(iter(lines), source, simulation_stores, impact=True)
    path = tmp_path_factory.mktemp("page") / "impact.html"
    impact_page.write(str(path), result.impact, result.to_dict(), simulated=True,
                      changes=version_changes(result.impact, source.book))
    return path, result.to_dict()


@pytest.fixture(scope="module")
def browser(monkeypatch_module):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch_module.setenv("SE_OFFLINE", "true")   # never let Selenium fetch a driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument("--window-size=1200,900")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_the_page_shows_its_charts_and_table(page, browser, tmp_path):
    from selenium.webdriver.common.by import By

    path, summary = page
    assert summary["changed"] > 0 and summary["state_refusals"]["vanished"] > 0
    browser.get(path.as_uri())
    assert browser.title.startswith("Impact")
    charts = browser.find_elements(By.CSS_SELECTOR, "figure.chart")
    assert [c.get_attribute("id") for c in charts] == [
        "by-product", "by-group", "transitions", "reasons", "per-day"]
    for chart in charts:
        svg = chart.find_element(By.TAG_NAME, "svg")
        assert svg.size["width"] > 300 and svg.size["height"] > 200, (chart.get_attribute("id"), svg.size)
        assert chart.find_elements(By.CSS_SELECTOR, "path, image"), chart.get_attribute("id")
    rows = browser.find_elements(By.CSS_SELECTOR, "table#changes tr")
    assert len(rows) == summary["changed"] + 1
    assert "REAPPLY_COOLDOWN" in browser.find_element(By.ID, "changes").text
    # self-contained: the browser loaded nothing besides the page itself
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1200, min(height + 100, 8000))
    shot = Path(os.environ.get("IMPACT_SCREENSHOT") or tmp_path / "impact.png")
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_the_page_opens_with_the_rules_diff(page, browser):
    """The candidate differs from the log's rules in starts_cooldown only: the diff says so for
    every rule whose rejection opened the 90-day window, and before anything else on the page."""
    from selenium.webdriver.common.by import By

    path, _ = page
    browser.get(path.as_uri())
    diff = browser.find_element(By.ID, "rules-diff")
    first = browser.find_element(By.CSS_SELECTOR, "h1 ~ *:not(p)")
    assert first == diff
    assert diff.find_element(By.TAG_NAME, "h2").text.startswith("Rules changed: sha256:")
    ids = [h.get_attribute("data-rule-id") for h in diff.find_elements(By.CSS_SELECTOR, "h3[data-rule-id]")]
    assert {"E2", "E3", "R1", "R5"} <= set(ids) and len(ids) == len(set(ids))
    assert "age: reason.starts_cooldown true → false" in diff.text
    assert "Files changed:" in diff.text


def test_the_headline_table_gives_rates_before_and_after_in_points(page, browser):
    from selenium.webdriver.common.by import By

    path, summary = page
    browser.get(path.as_uri())
    rows = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
            for tr in browser.find_elements(By.CSS_SELECTOR, "table#headline tr")[1:]]
    assert {r[0] for r in rows} == {"product", "group"}
    products = sum(int(r[2].replace(",", "")) for r in rows if r[0] == "product")
    assert products == summary["total"]
    groups = [r[1] for r in rows if r[0] == "group"]
    assert {"student", "overseas", "sme_owner", "blue_collar", "elderly"} & set(groups)
    for _, _, _, before, after, change in rows:
        assert before.endswith("%") and after.endswith("%") and change.endswith(" pp")
        points = float(after[:-1]) - float(before[:-1])
        assert abs(float(change[:-3]) - points) < 0.11, (before, after, change)
    assert any(float(r[5][:-3]) > 0 for r in rows)   # fewer windows: more approvals somewhere


def test_no_python_value_is_written_on_the_page(page, browser):
    from selenium.webdriver.common.by import By

    path, _ = page
    browser.get(path.as_uri())
    text = browser.find_element(By.TAG_NAME, "body").text
    for repr_mark in ("{'", "':", "['", "Counter(", "None", "True", "False", "(('"):
        assert repr_mark not in text, repr_mark


def test_rules_are_not_counted_for_decisions_refused_by_state_on_one_side(page, browser):
    from selenium.webdriver.common.by import By

    path, summary = page
    browser.get(path.as_uri())
    counts = {tr.find_elements(By.TAG_NAME, "td")[0].text: int(tr.find_elements(By.TAG_NAME, "td")[1].text)
              for tr in browser.find_elements(By.CSS_SELECTOR, "table#rules tr")[1:]}
    assert counts == summary["rules"]
    vanished = summary["state_refusals"]["vanished"]
    assert vanished > 0 and all(count < vanished for count in counts.values())
    left_out = int(browser.find_element(By.ID, "left-out").text.split()[0].replace(",", ""))
    assert left_out >= vanished + summary["state_refusals"]["appeared"]
    refused = [tr for tr in browser.find_elements(By.CSS_SELECTOR, "table#changes tr")
               if "REAPPLY_COOLDOWN" in tr.text]
    assert refused and all(tr.text.endswith("none compared: refused by state") for tr in refused)
