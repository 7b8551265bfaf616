"""The reviewer console's static route: open without a key, under `default-src 'self'`, only the
files that ship, and nothing else of the API keyless because of it."""
from __future__ import annotations

from html.parser import HTMLParser

import pytest

from service.domain.clock import FixedClock
from service.domain.review import reason_codes
from service.entrypoints.http import console, operations
from service.entrypoints.http.app import create_app
from service.entrypoints.settings import Settings
from tests.conftest import NOW, memory_services, payload

CLIENT, REVIEWER, ADMIN = "console-client", "console-reviewer", "console-admin"


@pytest.fixture
def app(policy):
    keyed = Settings(**{**Settings().__dict__, "api_keys": (CLIENT,), "reviewer_keys": (REVIEWER,),
                        "admin_keys": (ADMIN,)})
    return create_app(keyed, services=memory_services(policy, FixedClock(NOW)))


@pytest.fixture
def c(app):
    return app.test_client()


def test_the_page_and_its_files_need_no_key_and_carry_the_csp(c):
    assert {"index.html", "console.js", "console.css"} <= console.SHIPPED
    page = c.get("/console/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert page.headers["Content-Security-Policy"] == "default-src 'self'"
    for name in sorted(console.SHIPPED):
        answer = c.get(f"/console/{name}")
        assert answer.status_code == 200, name
        assert answer.headers["Content-Security-Policy"] == "default-src 'self'", name
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert c.get("/console/console.js").mimetype in ("text/javascript", "application/javascript")
    assert c.get("/console/console.css").mimetype == "text/css"


def test_console_without_the_slash_redirects(c):
    answer = c.get("/console")
    assert answer.status_code in (301, 308) and answer.headers["Location"].endswith("/console/")


@pytest.mark.parametrize("path", ["/console/nope.js", "/console/..%2Fpyproject.toml",
                                  "/console/../pyproject.toml", "/console/sub/index.html",
                                  "/console/.hidden"])
def test_an_unknown_file_is_the_api_json_404(c, path):
    answer = c.get(path)
    assert answer.status_code == 404 and answer.mimetype == "application/json"
    assert answer.get_json()["error"]["code"] == "not_found"


class _Markup(HTMLParser):
    """Everything in the page that CSP `default-src 'self'` would block or that reaches out."""

    def __init__(self):
        super().__init__()
        self.inline, self.urls = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "style" or "style" in attrs or any(name.startswith("on") for name in attrs):
            self.inline.append((tag, attrs))
        if tag == "script" and not attrs.get("src"):
            self.inline.append((tag, attrs))
        self.urls += [attrs[name] for name in ("src", "href", "action") if attrs.get(name)]


def test_the_page_has_no_inline_script_or_style_and_no_other_origin(c):
    markup = _Markup()
    markup.feed(c.get("/console/").get_data(as_text=True))
    assert markup.inline == []
    assert markup.urls and all(":" not in url and not url.startswith("//") for url in markup.urls)
    for name in (n for n in console.SHIPPED if n.endswith((".js", ".css", ".html"))):
        text = c.get(f"/console/{name}").get_data(as_text=True)
        for outside in ("http://", "https://", "innerHTML", "outerHTML", "insertAdjacentHTML",
                        "document.write", "localStorage", "document.cookie", "eval("):
            assert outside not in text, (name, outside)


def _sample_url(rule) -> str:
    return rule.build({name: "x-1" for name in rule.arguments}, append_unknown=False)[1]


def test_nothing_but_the_console_and_the_open_paths_is_keyless(app, c):
    """Every other route of the app, without a key, is refused (401 or 403)."""
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.startswith("console."):
            continue
        url = _sample_url(rule)
        if url in operations.OPEN_PATHS:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            answer = c.open(url, method=method, json={})
            assert answer.status_code in (401, 403), (method, url, answer.status_code)
            checked += 1
    assert checked > 20
    assert {r.rule for r in app.url_map.iter_rules() if r.endpoint.startswith("console.")} == {
        "/console", "/console/", "/console/<name>"}


def test_a_key_changes_nothing_on_the_console(c):
    for headers in ({"X-API-Key": CLIENT}, {"X-API-Key": REVIEWER}, {"X-API-Key": "wrong"}):
        assert c.get("/console/", headers=headers).status_code == 200


def test_reason_codes_for_reviewers_only(c, policy):
    answer = c.get("/reviews/reason-codes", headers={"X-API-Key": REVIEWER})
    assert answer.status_code == 200
    listed = answer.get_json()["reason_codes"]
    assert {item["code"]: item["starts_cooldown"] for item in listed} == reason_codes(policy.book)
    assert c.get("/reviews/reason-codes", headers={"X-API-Key": CLIENT}).status_code == 403
    assert c.get("/reviews/reason-codes").status_code == 401
    spec = c.get("/openapi.json").get_json()
    assert "get" in spec["paths"]["/reviews/reason-codes"]


def test_a_reviewer_sees_the_case_request_and_the_client_does_not(c):
    doc = dict(payload(drop=("pay_score",)), user_id="u-con", application_id="a-con")
    assert c.post("/decide", json=doc, headers={"X-API-Key": CLIENT}).get_json()["outcome"] == "review"
    url = "/applications/a-con?user_id=u-con"
    seen = c.get(url, headers={"X-API-Key": REVIEWER}).get_json()
    assert seen["request"]["applicant"]["age"] == doc["applicant"]["age"]
    assert "pay_score" not in seen["request"]["applicant"]
    assert "request" not in c.get(url, headers={"X-API-Key": CLIENT}).get_json()


def test_the_files_are_package_data():
    """An installed service (a wheel, the image) ships the page: pyproject's package-data."""
    import tomllib

    from tests.conftest import RULES_DIR

    project = tomllib.loads((RULES_DIR.parent / "pyproject.toml").read_text())
    assert "console/*" in project["tool"]["setuptools"]["package-data"]["service.entrypoints"]
    assert console.FILES.parent.name == "entrypoints" and console.FILES.name == "console"
