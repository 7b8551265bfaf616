"""Issue 17 through HTTP on real Redis, and old logs replayed under their own rules version.

The three policy defects (largest allowed amount, null documents, T4 as a 30-day state) are
decided by the WSGI app over the wired use cases on the real Redis (a server and a cluster).
The fixes changed policy code as well as rules, so the behaviour is chosen by rules settings
that older versions lack: a log made under the rules as they were before the fix
(tests/data/rules_before_issue17, byte for byte) must replay 100% identical.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from schemas.request import DecideRequestSchema
from service.adapters import decision_log, rules_files
from service.domain.clock import FixedClock
from service.entrypoints.bootstrap import Services, build_policy, policy_source
from service.entrypoints.http.app import create_app
from service.entrypoints.settings import Settings
from service.usecases import replay
from tests.conftest import NOW, RULES_DIR, payload, redis_services
from tests.loggen import generate

OLD_RULES = Path(__file__).resolve().parents[1] / "data" / "rules_before_issue17"
STUDENT = {"groups": ["student"], "documents": {"chsi_verified": True, "guardian_confirmed": True}}


@pytest.fixture
def http(service, clock):
    client = create_app(service.settings, services=service).test_client()
    counter = iter(range(1, 10_000))

    def decide(doc: dict, user: str = "u-1") -> dict:
        body = dict(doc, user_id=user, application_id=f"app-{next(counter)}")
        response = client.post("/decide", json=body)
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    decide.client = client
    return decide


def largest(decision: dict) -> set:
    return {r["inputs"]["largest_allowed_amount"] for r in decision["reasons"]
            if r["code"] == "AMOUNT_OUT_OF_RANGE"}


# -- 1. the largest allowed amount --------------------------------------------------------------
@pytest.mark.parametrize("doc, expected", [
    (payload(amount=499), 30000),                                     # normal tier
    (payload(amount=499, **STUDENT), 5000),                           # student cap
    (payload("we2000", amount=499, lingqiantong_balance=10000), 2000),  # WE2000 line
    (payload(amount=40000, **STUDENT), 5000),                         # two reasons agree
])
def test_largest_allowed_amount_over_http(http, doc, expected):
    decision = http(doc)
    assert decision["outcome"] == "rejected" and largest(decision) == {expected}


# -- 2. null documents -------------------------------------------------------------------------
@pytest.mark.parametrize("doc, field", [
    (payload(groups=["student"], documents={"chsi_verified": None, "guardian_confirmed": True}),
     "applicant.documents.chsi_verified"),
    (payload("zhouzhuanjin", documents={"business_license": None, "cash_flow_verified": True}),
     "applicant.documents.business_license"),
])
def test_null_document_is_missing_data_over_http(http, doc, field):
    decision = http(doc)
    assert decision["outcome"] == "review"
    assert [r["inputs"]["field"] for r in decision["reasons"] if r["code"] == "MISSING_DATA"] == [field]


# -- 3. T4 as a 30-day state -------------------------------------------------------------------
def test_t4_grant_is_honoured_without_the_proof_over_http(http, clock):
    first = http(payload(amount=45000, documents={"repayment_proof": True}))
    assert first["outcome"] == "approved" and "temporary_limit" in first["flags"]
    clock.set(NOW + dt.timedelta(minutes=1))
    second = http(payload(amount=45000))
    assert second["outcome"] == "approved" and "temporary_limit" in second["flags"]
    state = http.client.get("/users/u-1/state").get_json()["temporary_limit"]
    assert state == {"active": True, "expires_at": "2026-12-23T08:00:00Z", "grants_used": 1,
                     "grants_left": 1}
    clock.set(NOW + dt.timedelta(days=30))
    assert largest(http(payload(amount=45000))) == {30000}          # expired: proof needed again


# -- replay of a log made before the fix ---------------------------------------------------------
def targeted(service: Services) -> None:
    """Decisions the fix would decide differently, made under the old rules."""
    schema = DecideRequestSchema(term_ranges=service.rules.policy.book.term_ranges())
    docs = [("t-1", payload(amount=499)), ("t-2", payload(amount=499, **STUDENT)),
            ("t-3", payload("we2000", amount=499, lingqiantong_balance=10000)),
            ("t-4", payload(amount=45000, documents={"repayment_proof": True})),
            ("t-4", payload(amount=45000))]                         # grant held, no proof
    for n, (user, doc) in enumerate(docs):
        service.clock.advance(seconds=60)
        doc = dict(doc, user_id=user, application_id=f"targeted-{n}")
        service.decisions.decide(doc, schema.load(doc))


def test_log_made_before_the_fix_replays_identical_under_its_own_version(real_redis_url, tmp_path):
    old_book = rules_files.load(OLD_RULES)
    assert old_book.version != rules_files.load(RULES_DIR).version
    service = redis_services(real_redis_url, build_policy(old_book), FixedClock(NOW), redis_timeout=5.0)
    generate(service, 1000, users=200)
    targeted(service)
    path = tmp_path / "old.jsonl"
    with open(path, "w", encoding="utf-8") as out:
        service.stores.log.export(out)

    def run(source):
        return replay.replay(decision_log.read_lines(open(path, encoding="utf-8")), source)

    own = run(policy_source(Settings(rules_dir=OLD_RULES)))
    assert own.total >= 1005 and own.exact == own.identical == own.total and own.changed == 0
    # the same log under today's rules does change: the test sees the new behaviour
    today = run(policy_source(Settings(), rules_dir=RULES_DIR))
    # (outcomes: the T4 grant honoured; inputs: the largest allowed amounts of t-1 to t-3)
    assert today.transitions["rejected->approved"] >= 1 and today.total - today.exact >= 4
