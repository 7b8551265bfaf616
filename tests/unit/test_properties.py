import pytest
"""Property: any schema-valid payload gets a 200 with a valid response document."""
import datetime as dt
import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.request import APPLICANT_FIELDS, DOCUMENTS, GROUPS, PRODUCTS
from schemas.response import DecisionSchema

FRESH = itertools.count()
BOUNDS = {"health_score": (0, 100), "credit_card_utilization": (0, 1), "debt_to_income": (0, 1)}
INTEGER = {"credit_applications_6m", "night_device_switches_30d", "concurrent_lenders", "age"}


def value_for(name, kind):
    if kind == "bool":
        return st.booleans()
    if kind == "date":
        return st.dates(dt.date(1990, 1, 1), dt.date(2040, 12, 31)).map(dt.date.isoformat)
    low, high = BOUNDS.get(name, (0, 1000))
    if name in INTEGER:
        return st.integers(0, 150 if name == "age" else 1000)
    return st.one_of(st.integers(low, high), st.floats(low, high, allow_nan=False))


# valid id characters: no '/', no control characters, no lone surrogates (schemas.request)
ID_CHARS = st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/")


@st.composite
def applicants(draw):
    doc = {"age": draw(st.integers(0, 150))}
    for name, kind in APPLICANT_FIELDS.items():
        if name == "age":
            continue
        choice = draw(st.sampled_from(["value", "value", "value", "null", "absent"]))
        if choice == "value":
            doc[name] = draw(value_for(name, kind))
        elif choice == "null":
            doc[name] = None
    if draw(st.booleans()):
        doc["groups"] = draw(st.lists(st.sampled_from(GROUPS), unique=True))
    if draw(st.booleans()):
        doc["documents"] = draw(st.fixed_dictionaries({}, optional={d: st.booleans() for d in DOCUMENTS}))
    return doc


@st.composite
def requests(draw):
    doc = {
        "application_id": draw(st.text(ID_CHARS, min_size=1, max_size=20)),
        "user_id": draw(st.text(ID_CHARS, min_size=1, max_size=20)),
        "product": draw(st.sampled_from(PRODUCTS)),
        "amount": draw(st.one_of(st.integers(1, 1_000_000), st.floats(0.01, 1_000_000))),
        "applicant": draw(applicants()),
    }
    if draw(st.booleans()):
        doc["term_days"] = draw(st.integers(7, 1095))
    return doc


@pytest.mark.slow   # a property or soak run: in `make test`, not `make unit`
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=True)
@given(requests())
def test_any_valid_payload_gets_a_valid_decision(client, doc):
    doc["user_id"] = f"{doc['user_id']}-{next(FRESH)}"   # a fresh user: no state carried over
    response = client.post("/decide", json=doc)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert DecisionSchema().validate(body) == {}
    assert (body["offer"] is not None) == (body["outcome"] in ("approved", "cooling_off"))
    assert (body["outcome"] == "approved") == (body["reasons"] == [])
    if body["offer"]:
        assert body["offer"]["apr"] <= 0.24 and body["offer"]["limit"] == doc["amount"]
    if body["reapply_after"]:
        assert body["outcome"] == "rejected"
