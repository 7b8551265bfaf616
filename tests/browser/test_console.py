"""The reviewer console in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`, installed by .ci/run) driven by Selenium, against a live `loan-decide serve`
with 2 gunicorn workers on the real Redis (db TEST_REDIS_DB). Cases are made the way a client app
makes them (POST /decide with a client key), a moment before the reviewer looks.

Skipped, saying why, only when the browser or its driver is not installed; the claim and note
steps skip, saying why, while the server has no claims/notes endpoints (its OpenAPI document
lists the paths it serves).

Screenshots go to tmp_path, or to CONSOLE_ARTIFACTS=/some/dir when set (docs/console.png is one
of them).
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import pytest

from tests.conftest import REAL_REDIS, flushed_real_redis, payload
from tests.e2e.conftest import LiveServer, http

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-default-apps", "--disable-extensions")
CLIENT_KEY, REVIEWER_A, REVIEWER_B = "console-client", "console-reviewer-a", "console-reviewer-b"
CLIENT = {"X-API-Key": CLIENT_KEY}
DESK = "claims/notes endpoints not on this branch"

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="headless Chromium is not installed: `apt-get install -y chromium chromium-driver` "
           f"(found chromium={CHROMIUM}, chromedriver={CHROMEDRIVER})")


@pytest.fixture(scope="module")
def server():
    client = flushed_real_redis()
    live = LiveServer(["--workers", "2"], env={
        "REDIS_URL": REAL_REDIS, "API_KEYS": CLIENT_KEY,
        "REVIEWER_API_KEYS": f"{REVIEWER_A},{REVIEWER_B}"})
    try:
        live.wait_ready()
        yield live
    finally:
        live.stop()
        client.flushdb()


@pytest.fixture(scope="module")
def desk_endpoints(server) -> bool:
    paths = http("GET", server.url + "/openapi.json")[1]["paths"]
    return {"/reviews/{application_id}/claim", "/reviews/{application_id}/notes"} <= set(paths)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def browsers(monkeypatch_module):
    """Open browsers on demand; each is a session of its own (its own sessionStorage)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch_module.setenv("SE_OFFLINE", "true")   # never let Selenium fetch a driver
    opened = []

    def open_one():
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument("--window-size=1280,1000")
        options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        opened.append(driver)
        return driver

    yield open_one
    for driver in opened:
        driver.quit()


@pytest.fixture
def artifacts(tmp_path) -> Path:
    kept = os.environ.get("CONSOLE_ARTIFACTS")
    if kept:
        Path(kept).mkdir(parents=True, exist_ok=True)
    return Path(kept) if kept else tmp_path


@pytest.fixture(scope="module")
def browser(browsers):
    return browsers()


def review_case(server, user=None, app=None) -> tuple[str, str]:
    """A case decided a moment ago: pay_score left out goes to review (MISSING_DATA)."""
    user = user or f"u-{uuid.uuid4().hex[:8]}"
    app = app or f"a-{uuid.uuid4().hex[:8]}"
    doc = dict(payload(drop=("pay_score",)), user_id=user, application_id=app)
    status, decision, _ = http("POST", server.url + "/decide", doc, CLIENT)
    assert status == 200 and decision["outcome"] == "review", decision
    return user, app


def wait(driver, condition, timeout=10):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # a row re-rendered between finding it and reading it: look again
    return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(condition)


def button(driver, name):
    from selenium.webdriver.common.by import By

    found = driver.find_element(By.XPATH, f"//button[@aria-label='{name}']")
    assert found.accessible_name == name
    return found


def sign_in(driver, server, key, reviewer_id="rev-a"):
    from selenium.webdriver.common.by import By

    driver.get(server.url + "/console/")
    driver.execute_script("sessionStorage.clear()")
    driver.get(server.url + "/console/")
    field = driver.find_element(By.ID, "reviewer-key")
    label = driver.find_element(By.CSS_SELECTOR, "label[for='reviewer-key']")
    assert label.text == "Reviewer key" and field.accessible_name == "Reviewer key"
    field.send_keys(key)
    driver.find_element(By.ID, "reviewer-id").send_keys(reviewer_id)
    driver.find_element(By.ID, "sign-in").click()


def row(driver, app):
    from selenium.webdriver.common.by import By

    selector = f"#queue-rows tr[data-application-id='{app}']"
    return wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, selector) or None)[0]


def open_case(driver, app):
    """Open by keyboard: focus the row, press Enter."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    found = row(driver, app)
    assert found.get_attribute("tabindex") == "0"   # in the Tab order
    driver.execute_script("arguments[0].focus()", found)
    assert driver.switch_to.active_element == found
    found.send_keys(Keys.ENTER)
    wait(driver, lambda d: d.find_element(By.ID, "case").is_displayed()
         and app in d.find_element(By.ID, "case-title").text)


def status_text(driver):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, "status").text


def error_text(driver):
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.ID, "error")
    return box.text if box.is_displayed() else ""


def screenshot(driver, path: Path, full: bool = True) -> Path:
    """The whole page (the window made as tall as it), or the window as it is."""
    if not full:
        driver.execute_script("window.scrollTo(0, 0)")
        assert driver.save_screenshot(str(path)) and path.stat().st_size > 10_000
        return path
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(max(height + 200, 700), 5000))
    assert driver.save_screenshot(str(path)) and path.stat().st_size > 10_000
    driver.set_window_size(1280, 1000)
    return path


def reject(driver, code, note):
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f"#code-list input[value='{code}']").click()
    driver.find_element(By.ID, "decision-note").send_keys(note)
    button(driver, "Reject").click()


def test_a_client_key_is_refused_with_the_api_message(server, browser):
    from selenium.webdriver.common.by import By

    sign_in(browser, server, CLIENT_KEY)
    wait(browser, lambda d: error_text(d))
    assert error_text(browser) == "A client key cannot use reviewer endpoints."
    assert not browser.find_element(By.ID, "desk").is_displayed()


def test_the_key_stays_in_the_tab_never_a_cookie_or_the_url(server, browser):
    user, app = review_case(server)
    sign_in(browser, server, REVIEWER_A)
    row(browser, app)
    assert browser.get_cookies() == []
    assert REVIEWER_A not in browser.current_url
    assert browser.execute_script("return sessionStorage.getItem('console.key')") == REVIEWER_A
    assert browser.execute_script("return localStorage.length") == 0
    browser.refresh()   # the same tab: still signed in
    row(browser, app)


def test_a_reviewer_rejects_a_case_with_a_code_and_it_leaves_the_queue(server, browser, artifacts):
    """Without the desk's claims: the queue, the case (data, reasons, trace, recourse), a
    rejection with a code and a note."""
    from selenium.webdriver.common.by import By

    user, app = review_case(server)
    sign_in(browser, server, REVIEWER_A)
    found = row(browser, app)
    assert "MISSING_DATA" in found.text and "weilidai" in found.text
    open_case(browser, app)
    applicant = browser.find_element(By.ID, "applicant").text
    assert "applicant.age" in applicant and "applicant.pay_score" not in applicant
    assert "MISSING_DATA" in browser.find_element(By.ID, "reasons").text
    trace = browser.find_elements(By.CSS_SELECTOR, "#trace-rows tr")
    assert len(trace) > 5 and any("✓" in r.text for r in trace)
    assert browser.find_element(By.ID, "recourse").text
    for name in ("Claim", "Add note", "Approve", "Reject"):
        button(browser, name)
    screenshot(browser, artifacts / "case-zh.png")
    button(browser, "Reject").click()   # no code picked: the page says so, nothing is sent
    assert error_text(browser)
    reject(browser, "DEBT_TOO_HIGH", "收入证明不足")
    wait(browser, lambda d: app in status_text(d) and not d.find_element(By.ID, "case").is_displayed())
    assert not browser.find_elements(By.CSS_SELECTOR, f"#queue-rows tr[data-application-id='{app}']")
    assert browser.switch_to.active_element.get_attribute("id") == "queue-title"   # focus not lost
    view = http("GET", f"{server.url}/applications/{app}?user_id={user}", headers=CLIENT)[1]
    assert view["status"] == "rejected" and view["review"]["reason_codes"] == ["DEBT_TOO_HIGH"]
    assert view["review"]["reviewer_id"] == "rev-a" and view["review"]["note"] == "收入证明不足"


def test_an_api_error_on_a_closed_case_shows_the_api_message(server, browsers):
    """Two reviewers open one case; the second's rejection comes after the first's approval: the
    API's 409 message is shown as the API wrote it."""
    from selenium.webdriver.common.by import By

    user, app = review_case(server)
    first, second = browsers(), browsers()
    for driver, key, who in ((first, REVIEWER_A, "rev-a"), (second, REVIEWER_B, "rev-b")):
        sign_in(driver, server, key, who)
        open_case(driver, app)
    button(first, "Approve").click()
    wait(first, lambda d: app in status_text(d))
    reject(second, "DEBT_TOO_HIGH", "late")
    wait(second, lambda d: error_text(d))
    body = http("POST", f"{server.url}/applications/{app}/review", {
        "user_id": user, "reviewer_id": "rev-b", "outcome": "rejected",
        "reason_codes": ["DEBT_TOO_HIGH"], "note": "late"}, {"X-API-Key": REVIEWER_B})[1]
    assert error_text(second).startswith(body["error"]["message"])
    assert second.find_element(By.ID, "case").is_displayed()


def test_ids_and_phone_numbers_are_masked(server, browser):
    """An applicant's statement with a phone and an ID number, and a user id shaped like a
    phone number: the page shows them as the service's log masks them."""
    from selenium.webdriver.common.by import By

    user, app = "13812345678", f"a-{uuid.uuid4().hex[:8]}"
    doc = dict(payload(age=17), user_id=user, application_id=app)
    assert http("POST", server.url + "/decide", doc, CLIENT)[1]["outcome"] == "rejected"
    statement = "请打 +86 139-1234-5678，身份证 110101199003071234，旧证 110101900307123"
    status, view, _ = http("POST", f"{server.url}/applications/{app}/human-review",
                           {"user_id": user, "statement": statement}, CLIENT)
    assert status == 200, view
    sign_in(browser, server, REVIEWER_A)
    assert "138****5678" in row(browser, app).text
    open_case(browser, app)
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "+86 139****5678" in text and "110101********1234" in text and "110101******123" in text
    for raw in ("13812345678", "1234-5678", "199003071234", "110101900307123"):
        assert raw not in text, raw


def test_the_language_switch_and_stable_names(server, browser, artifacts):
    from selenium.webdriver.common.by import By

    user, app = review_case(server)
    sign_in(browser, server, REVIEWER_A)
    open_case(browser, app)
    assert browser.find_element(By.TAG_NAME, "h1").text == "审核台"
    assert button(browser, "Reject").text == "拒绝"
    assert "审核员密钥" in browser.find_element(By.ID, "login").text
    browser.find_element(By.ID, "lang-en").click()
    assert browser.find_element(By.TAG_NAME, "h1").text == "Reviewer console"
    assert button(browser, "Reject").text == "Reject"
    assert browser.find_element(By.CSS_SELECTOR, "label[for='reviewer-key']").text == "Reviewer key"
    assert "Applicant's data" in browser.find_element(By.ID, "case").text
    screenshot(browser, artifacts / "case-en.png")
    screenshot(browser, artifacts / "case-en-top.png", full=False)
    browser.refresh()   # remembered in the tab
    row(browser, app)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Reviewer console"
    assert browser.execute_script("return document.documentElement.lang") == "en"
    browser.find_element(By.ID, "lang-zh").click()


def test_escape_closes_the_case_and_focus_returns_to_its_row(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    user, app = review_case(server)
    sign_in(browser, server, REVIEWER_A)
    open_case(browser, app)
    browser.switch_to.active_element.send_keys(Keys.ESCAPE)
    wait(browser, lambda d: not d.find_element(By.ID, "case").is_displayed())
    assert browser.switch_to.active_element.get_attribute("data-application-id") == app


def test_the_page_loads_nothing_from_another_origin(server, browser):
    status, _, headers = http("GET", server.url + "/console/")
    assert status == 200 and headers["Content-Security-Policy"] == "default-src 'self'"
    user, app = review_case(server)
    browser.get_log("performance")   # drop what came before
    sign_in(browser, server, REVIEWER_A)
    open_case(browser, app)
    urls = [event["params"]["request"]["url"]
            for event in (json.loads(entry["message"])["message"] for entry in browser.get_log("performance"))
            if event["method"] == "Network.requestWillBeSent"]
    assert any(u.endswith("/console/console.js") for u in urls) and any("/reviews" in u for u in urls)
    assert [u for u in urls if not u.startswith(server.url + "/")] == []
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(name.startswith(server.url + "/") for name in resources)
    problems = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"
                and "Content Security Policy" in e["message"]]
    assert problems == []


def test_claim_note_reject_and_a_second_reviewer_sees_the_claim(server, browsers, desk_endpoints, artifacts):
    """The desk: one reviewer claims, adds a note, the other sees it claimed and cannot close it;
    the first rejects with a code and the case leaves both queues."""
    from selenium.webdriver.common.by import By

    if not desk_endpoints:
        pytest.skip(DESK)
    user, app = review_case(server)
    first, second = browsers(), browsers()
    sign_in(first, server, REVIEWER_A, "rev-a")
    open_case(first, app)
    button(first, "Claim").click()
    wait(first, lambda d: "rev-a" in row(d, app).text)
    first.find_element(By.ID, "note-text").send_keys("电话核实收入")
    button(first, "Add note").click()
    wait(first, lambda d: "电话核实收入" in d.find_element(By.ID, "notes").text)
    assert "rev-a" in first.find_element(By.ID, "notes").text
    first.find_element(By.ID, "lang-en").click()
    screenshot(first, artifacts / "case-claimed-en.png")
    screenshot(first, artifacts / "case-claimed-en-top.png", full=False)   # docs/console.png
    first.find_element(By.ID, "lang-zh").click()

    sign_in(second, server, REVIEWER_B, "rev-b")
    assert "rev-a" in row(second, app).text
    open_case(second, app)
    reject(second, "DEBT_TOO_HIGH", "not mine")
    wait(second, lambda d: error_text(d))   # the claim holds: the API's 409, its message
    assert "rev-a" in error_text(second)

    reject(first, "DEBT_TOO_HIGH", "income not proven")
    wait(first, lambda d: app in status_text(d) and not d.find_element(By.ID, "case").is_displayed())
    assert not first.find_elements(By.CSS_SELECTOR, f"#queue-rows tr[data-application-id='{app}']")
    button(second, "Close").click()
    second.find_element(By.ID, "refresh").click()
    wait(second, lambda d: not d.find_elements(By.CSS_SELECTOR, f"#queue-rows tr[data-application-id='{app}']"))
    view = http("GET", f"{server.url}/applications/{app}?user_id={user}", headers=CLIENT)[1]
    assert view["status"] == "rejected" and view["review"]["reviewer_id"] == "rev-a"
    assert [n["text"] for n in view["review"]["notes"]] == ["电话核实收入"]


def test_the_queue_screenshot(server, browser, artifacts):
    """The queue as a reviewer first sees it (Chinese, the default), kept for docs/reviews-and-rights.md."""
    from selenium.webdriver.common.by import By

    review_case(server)
    sign_in(browser, server, REVIEWER_A)
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#queue-rows tr"))
    screenshot(browser, artifacts / "queue-zh.png")


def test_release_gives_the_case_back(server, browser, desk_endpoints):
    if not desk_endpoints:
        pytest.skip(DESK)
    user, app = review_case(server)
    sign_in(browser, server, REVIEWER_A, "rev-a")
    open_case(browser, app)
    button(browser, "Claim").click()
    wait(browser, lambda d: "rev-a" in row(d, app).text)
    button(browser, "Release").click()
    wait(browser, lambda d: "rev-a" not in row(d, app).text and "未认领" in row(d, app).text)
    view = http("GET", f"{server.url}/applications/{app}?user_id={user}", headers=CLIENT)[1]
    assert view["review"]["claimed_by"] is None
