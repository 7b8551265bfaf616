"""Facts as durable_rules reads them."""
import datetime as dt

import pytest

from schemas import request
from service.domain import applicant_fields
from service.domain.facts import add_calendar, durable_number


def test_the_facts_read_the_fields_the_request_schema_validates():
    for name in ("APPLICANT_FIELDS", "DOCUMENTS", "GROUPS", "NULL_MEANS_NO"):
        assert getattr(applicant_fields, name) == getattr(request, name), name


@pytest.mark.parametrize("value", [1e-05, 3e-06, 1e16, 5e-324, 0.42, 7, 1.5e-07, 0.1 + 0.2])
def test_numbers_durable_rules_can_parse_keep_their_order(value, policy):
    safe = durable_number(value)
    text = repr(float(safe))
    assert not ("e" in text and "." not in text.split("e")[0]) or isinstance(safe, int)
    for threshold in (0, 1e-05, 0.5, 1, 1e16):
        if value != threshold:
            assert (safe < threshold) == (value < threshold)


def test_tiny_ratio_is_evaluated(client):
    from tests.conftest import payload

    response = client.post("/decide", json=payload(credit_card_utilization=1e-05, debt_to_income=1e-05))
    assert response.status_code == 200 and response.get_json()["outcome"] == "approved"


@pytest.mark.parametrize("day, offset, expected", [
    (dt.date(2026, 1, 31), {"months": 1}, dt.date(2026, 2, 28)),
    (dt.date(2024, 2, 29), {"years": -1}, dt.date(2023, 2, 28)),
    (dt.date(2026, 11, 23), {"months": 3}, dt.date(2027, 2, 23)),
    (dt.date(2026, 11, 23), {"months": -6}, dt.date(2026, 5, 23)),
    (dt.date(2026, 12, 31), {"days": 1}, dt.date(2027, 1, 1)),
])
def test_calendar_arithmetic(day, offset, expected):
    assert add_calendar(day, **offset) == expected
