"""Shared fixtures: the bundled rules, a fixed clock, and applicants that pass every rule."""
from __future__ import annotations

import datetime as dt
import itertools
import os
from pathlib import Path

import pytest

from schemas.request import DecideRequestSchema
from service.adapters import rules_files
from service.adapters.rule_engine import policy_for
from service.domain.clock import FixedClock
from service.domain.policy_kit import merge
from service.domain.userstate import UserState
from service.entrypoints.http.app import create_app
from service.usecases.decide import DecisionService

ROOT = Path(__file__).resolve().parent.parent
_users = itertools.count(1)
RULES_DIR = ROOT / "rules"
NOW = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.timezone.utc)   # 16:00 in Shanghai

# The request of API.md: approved for weilidai.
EXAMPLE = {
    "application_id": "app-20261123-0001",
    "user_id": "u-10086",
    "product": "weilidai",
    "amount": 5000,
    "term_days": 90,
    "applicant": {
        "age": 30, "real_name_verified_at": "2024-01-15", "id_card_expiry": "2031-05-01",
        "pay_score": 680, "sesame_score": None, "credit_score": 720, "monthly_income": 12000,
        "payments_per_month": 40, "bank_card_bound": True, "credit_card_bound": True,
        "bureau_authorized": True, "bureau_major_adverse": False, "face_verified": True,
        "id_card_uploaded": True, "carrier_verified": False, "contacts_authorized": False,
        "whitelisted": True, "health_score": 82, "risk_education_done": True,
        "credit_applications_6m": 1, "night_device_switches_30d": 0,
        "credit_card_utilization": 0.42, "debt_to_income": 0.3, "concurrent_lenders": 1,
        "lingqiantong_balance": 25000, "groups": ["blue_collar"],
        "documents": {"chsi_verified": False, "guardian_confirmed": False,
                      "passport_verified": False, "domestic_guarantor": False,
                      "business_license": False, "cash_flow_verified": False,
                      "work_badge_verified": True, "repayment_proof": False},
    },
}

# For each product, the changes that make the example an approval.
PRODUCT_BASE = {
    "weilidai": {},
    "we2000": {"amount": 2000},
    "partner": {"amount": 5000, "applicant": {"sesame_score": 700, "carrier_verified": True,
                                              "contacts_authorized": True}},
    "xiaoe": {"amount": 5000},
    "zhouzhuanjin": {"amount": 80000, "applicant": {"documents": {
        "business_license": True, "cash_flow_verified": True}}},
    "education": {"amount": 20000},
    "emergency": {"amount": 3000},
}


def payload(product: str = "weilidai", amount=None, drop: tuple[str, ...] = (), **applicant) -> dict:
    """An approved applicant for `product`, with applicant fields changed or dropped.

    The income is set high enough that no amount triggers T2's cooling-off: each rule table
    isolates its own rule, and T2 has its own tests.
    """
    doc = merge(EXAMPLE, {"product": product, **PRODUCT_BASE[product]})
    doc["applicant"]["monthly_income"] = 1_000_000
    documents = applicant.pop("documents", None)
    doc["applicant"].update(applicant)
    if documents:
        doc["applicant"]["documents"].update(documents)
    if amount is not None:
        doc["amount"] = amount
    for name in drop:
        doc["applicant"].pop(name)
    return doc


@pytest.fixture(scope="session")
def book():
    return rules_files.load(RULES_DIR)


@pytest.fixture(scope="session")
def policy(book):
    return policy_for(book)


def embedded_service(policy, clock) -> DecisionService:
    """A decision service on a fresh fakeredis: the unit tests' state store."""
    import fakeredis

    from service.adapters.state_store import RedisStateStore

    store = RedisStateStore(fakeredis.FakeRedis(server=fakeredis.FakeServer()))
    return DecisionService(policy, store, clock=clock)


@pytest.fixture(scope="session")
def client(policy):
    """Stateless use: every request gets a fresh application id through `decide`."""
    app = create_app(service=embedded_service(policy, FixedClock(NOW)))
    return app.test_client()


@pytest.fixture(params=["core", "http"])
def decide(request, policy, client):
    """Decide a payload through the plain-Python core or through HTTP; both return the response JSON."""
    schema = DecideRequestSchema(term_ranges=policy.book.term_ranges())

    def through_core(doc: dict, state: UserState | None = None) -> dict:
        return policy.decide(schema.load(doc), state or UserState(), NOW).to_dict()

    def through_http(doc: dict, state: UserState | None = None) -> dict:
        if state is not None:
            pytest.skip("per-user state is not settable through HTTP")
        # a user of its own per request: the rule tables test rules, not T1-T3
        doc = dict(doc, user_id=f"rules-{next(_users)}")
        response = client.post("/decide", json=doc)
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    return through_core if request.param == "core" else through_http


def codes(decision: dict) -> list[str]:
    return [r["code"] for r in decision["reasons"]]


def trace_of(decision: dict, rule_id: str, check: str) -> dict | None:
    for entry in decision["trace"]:
        if entry["rule_id"] == rule_id and entry["check"] == check:
            return entry
    return None


# a logical db of the shared server, flushed per test; TEST_REDIS_DB lets parallel runs use another
REAL_REDIS = f"redis://127.0.0.1:6379/{os.environ.get('TEST_REDIS_DB', '15')}"


@pytest.fixture
def real_redis_url():
    import redis

    client = redis.Redis.from_url(REAL_REDIS)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail("the shared Redis on 127.0.0.1:6379 is not running (.ci/run starts one)")
    client.flushdb()
    yield REAL_REDIS
    client.flushdb()


def alias_bomb(levels: int, width: int = 9) -> bytes:
    """A few hundred bytes of YAML whose aliases expand to width**levels scalars (9 levels:
    ~440 bytes, 387 million)."""
    lines = [f"a0: &a0 [{', '.join(['x'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return ("\n".join(lines) + "\n").encode()
