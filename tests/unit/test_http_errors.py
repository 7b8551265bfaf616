"""Bad input: a clear 4xx naming every bad field; never a 500, never a traceback."""
import json

import pytest

from schemas.response import ErrorSchema
from tests.conftest import payload


def error_of(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert ErrorSchema().validate(body) == {}
    assert "Traceback" not in response.get_data(as_text=True)
    return body["error"]


def test_every_bad_field_is_named(client):
    doc = payload()
    doc["amount"] = "5000"                       # a string is not a number
    doc["applicant"]["age"] = True               # a boolean is not a number
    doc["applicant"]["whitelisted"] = 1          # 1 is not a boolean
    doc["applicant"]["id_card_expiry"] = "01/05/2031"
    doc["applicant"]["credit_card_utilization"] = 1.5
    doc["applicant"]["groups"] = ["astronaut"]
    doc["applicant"]["agee"] = 30                # unknown (misspelt) field
    doc["term_days"] = 5000
    error = error_of(client.post("/decide", json=doc), 400)
    assert set(error["fields"]) == {
        "amount", "applicant.age", "applicant.whitelisted", "applicant.id_card_expiry",
        "applicant.credit_card_utilization", "applicant.groups.0", "applicant.agee", "term_days"}
    assert "between 7 and 1095" in error["fields"]["term_days"][0]


@pytest.mark.parametrize("field", ["application_id", "user_id", "product", "amount", "applicant"])
def test_required_fields(client, field):
    doc = payload()
    doc.pop(field)
    assert field in error_of(client.post("/decide", json=doc), 400)["fields"]


def test_required_age(client):
    error = error_of(client.post("/decide", json=payload(drop=("age",))), 400)
    assert "applicant.age" in error["fields"]


@pytest.mark.parametrize("body, status", [
    ("{not json", 400), ("[1, 2]", 400), ('"text"', 400), ("", 400), ("\xff\xfe", 400),
])
def test_malformed_json(client, body, status):
    error_of(client.post("/decide", data=body, content_type="application/json"), status)


def test_non_json_is_415(client):
    error_of(client.post("/decide", data=json.dumps(payload()), content_type="text/plain"), 415)
    error_of(client.post("/decide", data="a=b"), 415)


def test_oversize_is_413(client):
    doc = payload()
    doc["application_id"] = "x" * 100_000
    error_of(client.post("/decide", json=doc), 413)


def test_unknown_route_and_method(client):
    error_of(client.get("/nothing-here"), 404)
    response = client.get("/decide")
    error_of(response, 405)
    assert "POST" in response.headers["Allow"]


def test_non_finite_number_is_400(client):
    body = json.dumps(payload()).replace('"amount": 5000', '"amount": NaN')
    error = error_of(client.post("/decide", data=body, content_type="application/json"), 400)
    assert "amount" in error["fields"]


def test_health_endpoints(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json()["rules_version"].startswith("sha256:")
