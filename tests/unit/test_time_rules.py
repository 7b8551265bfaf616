"""T1-T5 on the in-memory store, moving the injected clock across every boundary."""
import datetime as dt

import pytest

from service.domain.clock import FixedClock
from service.entrypoints.http.app import create_app
from tests.conftest import NOW, memory_services, payload

TOO_EARLY = dict(days=89, hours=23, minutes=59, seconds=59)


@pytest.fixture
def env(policy):
    """A fresh store and a clock of the test's own, through HTTP."""
    clock = FixedClock(NOW)
    services = memory_services(policy, clock)
    client = create_app(services=services).test_client()

    class Env:
        pass

    e = Env()
    e.clock, e.services, e.client = clock, services, client
    e.n = 0

    def decide(doc, user="u-1", app=None):
        e.n += 1
        doc = dict(doc, user_id=user, application_id=app or f"app-{e.n}")
        response = client.post("/decide", json=doc)
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def at(**delta):
        clock.set(NOW + dt.timedelta(**delta))

    e.decide, e.at = decide, at
    return e


def codes(decision):
    return [r["code"] for r in decision["reasons"]]


# -- T1 -------------------------------------------------------------------------------------
def test_t1_window_refuses_without_evaluating_until_day_90(env):
    first = env.decide(payload(bureau_major_adverse=True))
    assert first["reapply_after"] == "2027-02-21T08:00:00Z"
    evaluations = env.services.decisions.evaluations

    env.at(**TOO_EARLY)
    inside = env.decide(payload())
    assert inside["outcome"] == "rejected" and codes(inside) == ["REAPPLY_COOLDOWN"]
    assert inside["reapply_after"] == first["reapply_after"]          # not extended
    assert [e["rule_id"] for e in inside["trace"]] == ["T1"]          # no rule evaluated
    assert env.services.decisions.evaluations == evaluations

    env.at(days=90)
    assert env.decide(payload())["outcome"] == "approved"


def test_t1_refusal_inside_the_window_does_not_extend_it(env):
    env.decide(payload(age=17))
    env.at(days=45)
    env.decide(payload(age=17))
    env.at(days=90)
    assert env.decide(payload())["outcome"] == "approved"


def test_t1_is_per_user_across_products(env):
    env.decide(payload(health_score=10))
    assert codes(env.decide(payload("xiaoe"))) == ["REAPPLY_COOLDOWN"]
    assert env.decide(payload("xiaoe"), user="someone-else")["outcome"] == "approved"


@pytest.mark.parametrize("changes", [{"bank_card_bound": False}, {"risk_education_done": False},
                                     {"id_card_expiry": "2026-12-01"}])
def test_fixable_refusals_start_no_window(env, changes):
    assert env.decide(payload(**changes))["outcome"] == "rejected"
    assert env.decide(payload())["outcome"] == "approved"


def test_amount_out_of_range_may_ask_again_at_once(env):
    assert set(codes(env.decide(payload(amount=300000)))) == {"AMOUNT_OUT_OF_RANGE"}
    assert env.decide(payload(amount=5000))["outcome"] == "approved"


# -- T2 -------------------------------------------------------------------------------------
def cooling(env, user="u-1", app="loan-1"):
    decision = env.decide(payload(amount=6001, monthly_income=10000), user=user, app=app)
    assert decision["outcome"] == "cooling_off"
    return decision


def test_t2_cooling_off_boundary(env):
    assert env.decide(payload(amount=6000, monthly_income=10000))["outcome"] == "approved"
    decision = cooling(env, user="u-2")
    assert decision["funds_available_at"] == decision["cancel_until"] == "2026-11-24T08:00:00Z"
    assert decision["offer"]["limit"] == 6001


def test_t2_low_income(env):
    decision = env.decide(payload(amount=3500, monthly_income=4000))
    assert decision["outcome"] == "cooling_off"


def test_t2_new_application_while_cooling_off_is_pending(env):
    cooling(env)
    env.at(hours=23, minutes=59, seconds=59)
    pending = env.decide(payload())
    assert codes(pending) == ["COOLING_OFF_PENDING"]
    assert pending["reapply_after"] == "2026-11-24T08:00:00Z"
    env.at(hours=24)
    assert env.decide(payload())["outcome"] == "approved"


def test_t2_cancel_inside_the_window(env):
    cooling(env)
    env.at(hours=23, minutes=59, seconds=59)
    response = env.client.post("/applications/loan-1/cancel", json={"user_id": "u-1"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "cancelled" and body["cancelled_at"] == "2026-11-24T07:59:59Z"
    again = env.client.post("/applications/loan-1/cancel", json={"user_id": "u-1"})
    assert again.status_code == 200 and again.get_json() == body
    # cancelled: no pending loan, no cooldown
    assert env.decide(payload())["outcome"] == "approved"
    assert env.client.get("/applications/loan-1?user_id=u-1").get_json()["status"] == "cancelled"


def test_t2_cancel_after_the_window_is_409(env):
    cooling(env)
    env.at(hours=24)
    response = env.client.post("/applications/loan-1/cancel", json={"user_id": "u-1"})
    assert response.status_code == 409
    assert env.client.get("/applications/loan-1?user_id=u-1").get_json()["status"] == "released"


def test_cancel_not_cooling_off_or_unknown(env):
    env.decide(payload(), app="plain")
    assert env.client.post("/applications/plain/cancel", json={"user_id": "u-1"}).status_code == 409
    assert env.client.post("/applications/nope/cancel", json={"user_id": "u-1"}).status_code == 404
    assert env.client.post("/applications/plain/cancel", json={"user_id": "u-2"}).status_code == 404
    assert env.client.post("/applications/plain/cancel", json={}).status_code == 400


def test_get_application(env):
    decision = env.decide(payload(), app="a-1")
    body = env.client.get("/applications/a-1?user_id=u-1").get_json()
    assert body["status"] == "approved" and body["decision"] == decision
    assert env.client.get("/applications/a-1?user_id=u-9").status_code == 404
    assert env.client.get("/applications/a-1").status_code == 400


# -- T3 -------------------------------------------------------------------------------------
def test_t3_fourth_application_in_six_months_is_refused(env):
    for day in range(3):
        env.at(days=day)
        assert env.decide(payload(credit_applications_6m=0))["outcome"] == "approved"
    env.at(days=3)
    fourth = env.decide(payload(credit_applications_6m=0))
    assert codes(fourth) == ["TOO_MANY_APPLICATIONS"]
    entry = next(e for e in fourth["trace"] if e["rule_id"] == "R1")
    assert entry["inputs"]["recorded_applications_6m"] == 3


def test_t3_window_is_six_calendar_months(env):
    for day in range(3):
        env.at(days=day)
        env.decide(payload(credit_applications_6m=0))
    # the first was at 2026-11-23T08:00Z: it leaves the window at 2027-05-23T08:00Z
    env.clock.set(dt.datetime(2027, 5, 23, 7, 59, 59, tzinfo=dt.timezone.utc))
    assert codes(env.decide(payload(credit_applications_6m=0))) == ["TOO_MANY_APPLICATIONS"]


def test_t3_window_end(env):
    for day in range(3):
        env.at(days=day)
        env.decide(payload(credit_applications_6m=0))
    env.clock.set(dt.datetime(2027, 5, 23, 8, 0, 0, tzinfo=dt.timezone.utc))
    assert env.decide(payload(credit_applications_6m=0))["outcome"] == "approved"


def test_t3_refusals_by_state_and_repeats_do_not_count(env):
    env.decide(payload(), app="same")
    env.decide(payload(), app="same")                      # a repeat
    cooling(env, app="hold")                               # 2nd evaluated
    env.decide(payload())                                  # COOLING_OFF_PENDING: not counted
    state = env.client.get("/users/u-1/state").get_json()
    assert state["applications_6m"] == 2


# -- idempotency ------------------------------------------------------------------------------
def test_same_application_same_payload_returns_the_stored_decision(env):
    first = env.decide(payload(), app="x")
    evaluations = env.services.decisions.evaluations
    env.at(hours=5)
    assert env.decide(payload(), app="x") == first
    assert env.services.decisions.evaluations == evaluations


def test_same_application_other_payload_is_409(env):
    env.decide(payload(), app="x")
    response = env.client.post("/decide", json=dict(payload(amount=7000), user_id="u-1", application_id="x"))
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "conflict"


# -- T4 -------------------------------------------------------------------------------------
def over_tier(**changes):
    # weilidai normal tier: 30,000; +50% -> 45,000
    return payload(amount=40000, documents={"repayment_proof": True}, **changes)


def test_t4_temporary_limit_needs_repayment_proof(env):
    refused = env.decide(payload(amount=40000))
    assert codes(refused) == ["AMOUNT_OUT_OF_RANGE"]
    granted = env.decide(over_tier(), user="u-2")
    assert granted["outcome"] == "approved" and "temporary_limit" in granted["flags"]
    state = env.client.get("/users/u-2/state").get_json()["temporary_limit"]
    assert state == {"active": True, "expires_at": "2026-12-23T08:00:00Z", "grants_used": 1,
                     "grants_left": 1}


def test_t4_raised_limit_ends_at_plus_50_percent(env):
    decision = env.decide(payload(amount=45001, documents={"repayment_proof": True}))
    assert codes(decision) == ["AMOUNT_OUT_OF_RANGE"]
    assert decision["reasons"][0]["inputs"]["largest_allowed_amount"] == 45000


def test_t4_renewable_once(env):
    assert "temporary_limit" in env.decide(over_tier())["flags"]
    env.at(days=10)
    assert env.client.get("/users/u-1/state").get_json()["temporary_limit"]["active"]
    env.at(days=30)
    assert "temporary_limit" in env.decide(over_tier())["flags"]      # the renewal
    env.at(days=61)
    assert codes(env.decide(over_tier())) == ["AMOUNT_OUT_OF_RANGE"]   # no third grant
    state = env.client.get("/users/u-1/state").get_json()["temporary_limit"]
    assert state["grants_used"] == 2 and state["grants_left"] == 0


# -- T5 -------------------------------------------------------------------------------------
def test_t5_two_grace_uses_a_rolling_year(env):
    post = lambda days: env.client.post("/users/u-1/grace-uses", json={"days": days})
    assert post(4).status_code == 400
    assert post(3).get_json()["grace"]["uses_left"] == 1
    env.at(days=100)
    assert post(1).get_json()["grace"]["uses_left"] == 0
    env.at(days=364, hours=23)
    assert post(1).status_code == 409
    env.at(days=365)
    assert post(2).status_code == 200


def test_user_state_view(env):
    assert env.client.get("/users/nobody/state").status_code == 404
    env.decide(payload(bureau_major_adverse=True))
    state = env.client.get("/users/u-1/state").get_json()
    assert state["reapply_after"] == "2027-02-21T08:00:00Z"
    assert state["applications_6m"] == 1 and state["cooling_off"] is None


def test_t4_inside_a_grant_no_new_grant(env):
    env.decide(over_tier())
    env.at(days=10)
    assert "temporary_limit" in env.decide(over_tier())["flags"]
    state = env.client.get("/users/u-1/state").get_json()["temporary_limit"]
    assert state["grants_used"] == 1 and state["expires_at"] == "2026-12-23T08:00:00Z"


# -- issue 17.3: T4 is a 30-day state ----------------------------------------------------------
def no_proof(amount=45000):
    return payload(amount=amount)


def test_t4_active_grant_applies_without_the_proof(env):
    assert "temporary_limit" in env.decide(over_tier())["flags"]
    env.at(minutes=1)
    again = env.decide(no_proof())
    assert again["outcome"] == "approved" and "temporary_limit" in again["flags"]
    state = env.client.get("/users/u-1/state").get_json()["temporary_limit"]
    assert state == {"active": True, "expires_at": "2026-12-23T08:00:00Z", "grants_used": 1,
                     "grants_left": 1}


@pytest.mark.parametrize("delta, amount, outcome", [
    (dict(days=29, hours=23, minutes=59, seconds=59), 45000, "approved"),   # last second of the grant
    (dict(days=29, hours=23, minutes=59, seconds=59), 45001, "rejected"),   # still +50% at most
    (dict(days=30), 45000, "rejected"),                                      # expired: proof needed
    (dict(days=30), 30000, "approved"),                                      # the base tier stays
])
def test_t4_grant_boundaries_without_proof(env, delta, amount, outcome):
    env.decide(over_tier())
    env.at(**delta)
    decision = env.decide(no_proof(amount))
    assert decision["outcome"] == outcome, codes(decision)
    if outcome == "rejected":
        assert codes(decision) == ["AMOUNT_OUT_OF_RANGE"]
        expected = 45000 if delta.get("days") == 29 else 30000
        assert decision["reasons"][0]["inputs"]["largest_allowed_amount"] == expected


def test_t4_no_grant_without_proof_ever(env):
    decision = env.decide(no_proof())
    assert codes(decision) == ["AMOUNT_OUT_OF_RANGE"]
    assert decision["reasons"][0]["inputs"]["largest_allowed_amount"] == 30000
    state = env.client.get("/users/u-1/state").get_json()["temporary_limit"]
    assert state["active"] is False and state["grants_used"] == 0


def test_t4_renewal_after_expiry_needs_the_proof_and_then_applies(env):
    """(Three applications: a fourth in six months would be T3's TOO_MANY_APPLICATIONS.)"""
    env.decide(over_tier())
    env.at(days=30)
    assert "temporary_limit" in env.decide(over_tier())["flags"]             # the renewal
    env.at(days=45)
    assert env.decide(no_proof())["outcome"] == "approved"                    # renewal honoured
    state = env.client.get("/users/u-1/state").get_json()["temporary_limit"]
    assert state["grants_used"] == 2 and state["expires_at"] == "2027-01-22T08:00:00Z"
