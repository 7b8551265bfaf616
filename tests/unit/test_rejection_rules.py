"""rules/rejections.yaml, R1-R5: pass and fail for each, through the core and HTTP."""
import datetime as dt

import pytest

from schemas.request import DecideRequestSchema
from service.domain.userstate import UserState
from tests.conftest import NOW, codes, payload, trace_of
from tests.unit.rule_table import Case, check

CASES = [
    Case("R1 bureau 2 applications", "R1.applications_6m", payload(credit_applications_6m=2), None),
    Case("R1 bureau 3 applications", "R1.applications_6m", payload(credit_applications_6m=3),
         "TOO_MANY_APPLICATIONS"),
    Case("R2 expires exactly 3 months ahead", "R2.id_card_expiry",
         payload(id_card_expiry="2027-02-23"), None),
    Case("R2 expires a day inside 3 months", "R2.id_card_expiry",
         payload(id_card_expiry="2027-02-22"), "ID_CARD_EXPIRING"),
    Case("R2 already expired", "R2.id_card_expiry", payload(id_card_expiry="2026-01-01"),
         "ID_CARD_EXPIRING"),
    Case("R3 3 night switches", "R3.device_switching", payload(night_device_switches_30d=3), None),
    Case("R3 4 night switches", "R3.device_switching", payload(night_device_switches_30d=4),
         "DEVICE_SWITCHING"),
    Case("R4 utilisation 85%", "R4.credit_utilization", payload(credit_card_utilization=0.85), None),
    Case("R4 utilisation 86%", "R4.credit_utilization", payload(credit_card_utilization=0.86),
         "CREDIT_UTILIZATION_HIGH"),
    Case("R5 DTI 50%", "R5.debt_load", payload(debt_to_income=0.5), None),
    Case("R5 DTI 51%", "R5.debt_load", payload(debt_to_income=0.51), "DEBT_TOO_HIGH"),
    Case("R5 3 lenders", "R5.debt_load", payload(concurrent_lenders=3), None),
    Case("R5 4 lenders", "R5.debt_load", payload(concurrent_lenders=4), "DEBT_TOO_HIGH"),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_rejection_rule(case, decide):
    check(case, decide)


@pytest.mark.parametrize("recorded, refused", [(2, False), (3, True)])
def test_r1_counts_this_services_own_applications(policy, recorded, refused):
    """T3 seam: the larger of the bureau figure and the state's own count decides R1."""
    doc = DecideRequestSchema(term_ranges=policy.book.term_ranges()).load(
        payload(credit_applications_6m=0))
    decision = policy.decide(doc, UserState(applications_6m=recorded), NOW).to_dict()
    assert ("TOO_MANY_APPLICATIONS" in codes(decision)) is refused
    entry = trace_of(decision, "R1", "applications_6m")
    assert entry["inputs"]["recorded_applications_6m"] == recorded


def test_dates_follow_the_shanghai_calendar(policy):
    """At 2026-11-22T16:30Z it is already 23 Nov in Shanghai: the horizon is 2027-02-23."""
    doc = DecideRequestSchema(term_ranges=policy.book.term_ranges()).load(
        payload(id_card_expiry="2027-02-22"))
    late_utc = dt.datetime(2026, 11, 22, 16, 30, tzinfo=dt.timezone.utc)
    early_utc = dt.datetime(2026, 11, 22, 15, 30, tzinfo=dt.timezone.utc)
    assert "ID_CARD_EXPIRING" in codes(policy.decide(doc, UserState(), late_utc).to_dict())
    assert "ID_CARD_EXPIRING" not in codes(policy.decide(doc, UserState(), early_utc).to_dict())
