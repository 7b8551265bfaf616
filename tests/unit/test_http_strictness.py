"""Query numbers in ASCII digits only, whole-text matches, and the route before the role.

Each of these was a hole a hostile client found: `limit=²` passed `str.isdigit` and crashed
`int` (a 500); patterns anchored with `$` let a trailing newline through; a reviewer key that
used a method or a path no route has got a 403 that hid the 405 or 404.
"""
from __future__ import annotations

import pytest

from service.domain import conditions
from service.entrypoints.http.app import create_app
from service.entrypoints.settings import Settings
from tests.conftest import NOW, memory_services
from service.domain.clock import FixedClock
from tests.unit.test_http_errors import error_of

REVIEWER = {"X-API-Key": "reviewer-key"}
CLIENT = {"X-API-Key": "client-key"}


@pytest.fixture(scope="module")
def api(policy):
    settings = Settings(api_keys=("client-key",), reviewer_keys=("reviewer-key",),
                        admin_keys=("admin-key",))
    return create_app(settings, services=memory_services(policy, FixedClock(NOW))).test_client()


@pytest.mark.parametrize("limit", ["%C2%B2", "%D9%A1%D9%A2", "%EF%BC%95", "5%0A", "+5", "-1",
                                   " 5", "5.0", "0", "101", "9" * 5000])
def test_a_limit_not_in_ascii_digits_or_out_of_range_is_400_naming_it(api, limit):
    error = error_of(api.get(f"/reviews?limit={limit}", headers=REVIEWER), 400)
    assert list(error["fields"]) == ["limit"]


@pytest.mark.parametrize("limit", ["1", "50", "100", "007"])
def test_a_limit_in_ascii_digits_is_read(api, limit):
    response = api.get(f"/reviews?limit={limit}", headers=REVIEWER)
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("headers", [REVIEWER, CLIENT, {}])
def test_a_method_the_route_lacks_is_405_whatever_the_key(api, method, headers):
    response = api.open("/decide", method=method, headers=headers)
    assert error_of(response, 405)["code"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


@pytest.mark.parametrize("headers", [REVIEWER, CLIENT, {}])
def test_a_path_no_route_has_is_404_whatever_the_key(api, headers):
    assert error_of(api.post("/no-such-path", json={}, headers=headers), 404)["code"] == "not_found"


def test_matched_routes_still_check_the_role(api):
    assert error_of(api.post("/decide", json={}, headers=REVIEWER), 403)["code"] == "forbidden"
    assert error_of(api.post("/decide", json={}, headers={}), 401)["code"] == "unauthorized"
    assert error_of(api.get("/reviews", headers=CLIENT), 403)["code"] == "forbidden"


@pytest.mark.parametrize("text", ["age < １８", "age < ١٨", "age < 1８", "amount > limit * ２"])
def test_conditions_are_read_whole_and_in_ascii(text):
    with pytest.raises(conditions.ConditionError):
        conditions.parse(text)


def test_an_ascii_condition_still_parses():
    parsed = conditions.parse("age < 18")
    assert parsed == conditions.Comparison("age", "<", conditions.Literal(18))
