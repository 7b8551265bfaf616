"""Four eyes on overrides, the use case on the in-memory adapters: asked by one operator, applied
by another, never by its requester, not once expired or applied, gone with its user; and its log
records through replay, replay --simulate (one and two jobs) and rebuild."""
from __future__ import annotations

import datetime as dt
import io
import json

import pytest

from service.domain.clock import FixedClock
from service.domain.overrides import KEPT_DAYS, PENDING_HOURS
from service.entrypoints.bootstrap import policy_source, simulation_stores
from service.entrypoints.http.app import create_app
from service.entrypoints.settings import Settings
from service.usecases import replay as replaying
from service.usecases import simulate as simulating
from service.usecases.errors import Conflict, Forbidden, NotFound
from service.usecases.rebuild import Rebuilder
from tests.conftest import NOW, RULES_DIR, memory_services, payload

SECRET = b"unit-erasure-secret"


@pytest.fixture
def clock():
    return FixedClock(NOW)


@pytest.fixture
def service(policy, clock):
    return memory_services(policy, clock, erasure_secret=SECRET)


def decide(service, user: str, app: str, **applicant) -> dict:
    api = create_app(Settings(), services=service).test_client()
    return api.post("/decide", json=dict(payload(**applicant), user_id=user, application_id=app)).json


def refuse(service, user: str) -> None:
    assert decide(service, user, "a1", age=17)["reapply_after"]


def window(service, user: str):
    return service.decisions.user_state(user)["reapply_after"]


def lines_of(service) -> list[str]:
    out = io.StringIO()
    service.stores.log.export(out)
    return out.getvalue().splitlines()


def test_asked_then_applied_by_another_once(service, clock):
    refuse(service, "u-1")
    before = window(service, "u-1")
    asked = service.audit.request_override("u-1", "alice", "misread")
    assert asked["status"] == "pending" and asked["requested_by"] == "alice"
    assert window(service, "u-1") == before
    with pytest.raises(Forbidden):
        service.audit.approve_override(asked["override_id"], "alice")
    assert service.audit.approve_override(asked["override_id"], "bob")["reapply_after"] is None
    with pytest.raises(Conflict, match="already applied"):
        service.audit.approve_override(asked["override_id"], "bob")
    with pytest.raises(NotFound):
        service.audit.approve_override("ov_nope", "bob")


def test_expiry_and_forgetting(service, clock):
    refuse(service, "u-2")
    asked = service.audit.request_override("u-2", "alice", "misread")["override_id"]
    clock.advance(hours=PENDING_HOURS)
    with pytest.raises(Conflict, match="expired"):
        service.audit.approve_override(asked, "bob")
    clock.advance(days=KEPT_DAYS)
    with pytest.raises(NotFound):                                  # kept no longer
        service.audit.approve_override(asked, "bob")


def test_no_window_no_request_and_erasure_takes_it(service):
    with pytest.raises(Conflict):
        service.audit.request_override("u-none", "alice", "why")
    refuse(service, "u-3")
    asked = service.audit.request_override("u-3", "alice", "misread")["override_id"]
    service.audit.erase("u-3", "dpo", "PIPL art. 47")
    with pytest.raises(NotFound):
        service.audit.approve_override(asked, "bob")


def test_the_log_replays_simulates_and_rebuilds(service, policy, clock):
    refuse(service, "u-4")
    refuse(service, "u-5")
    first = service.audit.request_override("u-4", "alice", "misread")["override_id"]
    service.audit.request_override("u-5", "alice", "misread")
    clock.advance(hours=1)
    service.audit.approve_override(first, "bob")
    assert decide(service, "u-4", "a2")["outcome"] == "approved"
    lines = lines_of(service)
    source = policy_source(Settings(rules_dir=RULES_DIR))
    summary = replaying.replay(enumerate(lines, 1), source).to_dict()
    assert summary["override_requests"] == {"total": 2, "identical": 2}
    assert summary["overrides"] == {"total": 1, "identical": 1}
    assert summary["identical"] == summary["total"] == 3
    for jobs in (1, 2):
        simulated = simulating.simulate(enumerate(lines, 1), source, simulation_stores, jobs=jobs).to_dict()
        assert simulated["identical"] == simulated["total"] == 3             # a2 approved: window lifted
        assert simulated["applied"] == {"override_request": 2, "override": 1}
        assert simulated["no_longer_apply"] == {}
    fresh = memory_services(policy, FixedClock(clock.now()))
    Rebuilder(fresh.work, fresh.rules, fresh.stores.erased, overrides=fresh.stores.overrides).rebuild(
        json.loads(line) for line in lines)
    assert window(fresh, "u-4") is None and window(fresh, "u-5") is not None
    assert fresh.stores.overrides.user_of(first) == "u-4"


def test_an_old_summary_has_no_override_requests():
    assert "override_requests" not in replaying.Summary().to_dict()
