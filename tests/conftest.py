"""Shared fixtures: the bundled rules, a fixed clock, and applicants that pass every rule."""
from __future__ import annotations

import datetime as dt
import itertools
import os
from pathlib import Path
from typing import Any, Mapping

import pytest
import yaml

from schemas.request import DecideRequestSchema
from service.adapters import rules_files
from service.entrypoints.bootstrap import Services, build_policy
from service.entrypoints.settings import Settings
from service.domain.clock import FixedClock
from service.domain.policy_kit import merge
from service.domain.userstate import UserState
from service.entrypoints.http.app import create_app

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


# Kit edits that move the bundled kit's cases along with a moved threshold (move_threshold):
# E2's minimum age 18 -> 21 (the boundary cases, and the students aged 20 other cases use),
# and E10's minimum health score 60 -> 70.
KIT_E2_MIN_AGE_21 = {"{age: 18}": "{age: 21}", "{age: 17}": "{age: 20}",
                     "{age: 20, groups": "{age: 21, groups"}
KIT_E10_MIN_HEALTH_70 = {"health_score: 60}": "health_score: 70}", "health_score: 59}": "health_score: 69}"}


def move_threshold(rules: Path, rule_id: str, param: str, value: Any, file: str = "eligibility.yaml",
                   kit: Mapping[str, str] = {}) -> Path:
    """Move one threshold of a rules directory in place, and the kit's cases with it (`kit`:
    text in the kit's files -> its replacement): what goes live must pass its own kit."""
    doc = yaml.safe_load((rules / file).read_text())
    next(r for r in doc["rules"] if r["id"] == rule_id)["params"][param] = value
    (rules / file).write_text(yaml.safe_dump(doc, allow_unicode=True))
    for path in (rules / "tests").glob("*.yaml"):
        text = path.read_text()
        for old, new in kit.items():
            text = text.replace(old, new)
        path.write_text(text)
    return rules


@pytest.fixture(scope="session")
def book():
    return rules_files.load(RULES_DIR)


@pytest.fixture(scope="session")
def policy(book):
    return build_policy(book)


def memory_services(policy, clock, **settings) -> Services:
    """The use cases on fresh in-memory stores: the unit tests' service."""
    from service.entrypoints.bootstrap import memory_stores, wire

    config = Settings(**settings)
    return wire(config, clock, memory_stores(config, clock), policy)


def redis_services(url: str, policy, clock, **settings) -> Services:
    """The use cases on the Redis at `url` (a server or a cluster): the integration tests'."""
    from service.entrypoints.bootstrap import redis_stores, wire

    config = Settings(redis_url=url, redis_timeout=settings.pop("redis_timeout", 2.0), **settings)
    return wire(config, clock, redis_stores(config), policy)


@pytest.fixture(scope="session")
def client(policy):
    """Stateless use: every request gets a fresh application id through `decide`."""
    app = create_app(services=memory_services(policy, FixedClock(NOW)))
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


def flushed_real_redis():
    """A client of the shared Redis's test db, emptied; the test fails when no server answers."""
    import redis

    client = redis.Redis.from_url(REAL_REDIS)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail("the shared Redis on 127.0.0.1:6379 is not running (.ci/run starts one)")
    client.flushdb()
    return client


@pytest.fixture
def real_redis_url():
    client = flushed_real_redis()
    yield REAL_REDIS
    client.flushdb()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """A 3-master Redis Cluster on loopback ports, for the session."""
    from tests.servers import RedisCluster3

    nodes = RedisCluster3(tmp_path_factory.mktemp("cluster")).start()
    yield nodes
    nodes.stop()


def alias_bomb(levels: int, width: int = 9) -> bytes:
    """A few hundred bytes of YAML whose aliases expand to width**levels scalars (9 levels:
    ~440 bytes, 387 million)."""
    lines = [f"a0: &a0 [{', '.join(['x'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return ("\n".join(lines) + "\n").encode()


# -- test tiers ------------------------------------------------------------------------------------
TIERS = frozenset({"unit", "contract", "integration", "e2e", "browser", "deploy"})


def pytest_collection_modifyitems(config, items):
    """Every test carries the marker of its directory (tests/<tier>/...), so a tier is
    `-m <tier>` and a test's tier is where it lives (`make unit`: -m "unit and not slow")."""
    root = Path(__file__).resolve().parent
    for item in items:
        parts = Path(str(item.fspath)).resolve().relative_to(root).parts
        if len(parts) > 1 and parts[0] in TIERS:
            item.add_marker(getattr(pytest.mark, parts[0]))


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of the test's own on a free loopback port, for tests that stall, fill or
    kill it (never the shared one); killed at the end, stopped (SIGSTOP) or not."""
    from tests.servers import RedisServer

    server = RedisServer(tmp_path / "redis", None, "--maxmemory-policy", "noeviction").start()
    yield server
    server.stop()

