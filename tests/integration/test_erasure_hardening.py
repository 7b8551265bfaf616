"""Erasure as one job that lands whole or is finished by a retry, and leaves nothing naming the
user: under intermittent out-of-memory refusals (on a Redis the test starts itself), after a
failure between its steps, racing a `review` decision, and in the audit text it keeps."""
from __future__ import annotations

import io
import json
import random
import threading
import time
from urllib.parse import quote

import pytest
import redis

from service.adapters.review_store import RedisReceipts
from service.domain.clock import FixedClock
from service.entrypoints.bootstrap import Services
from service.entrypoints.http.app import create_app
from service.entrypoints.settings import Settings
from service.usecases.ports import StoreRefused
from service.usecases.reviews_index import parse_entry
from tests.conftest import NOW, payload, redis_services
from tests.integration.conftest import SECRET
from tests.integration.test_reviews import ADMIN, CLIENT, REVIEWER, body, review_case

pytestmark = pytest.mark.integration

STREAM = "ld:{#erasures}:log"


def app_for(service: Services):
    settings = Settings(api_keys=("client-key",), reviewer_keys=("reviewer-key",),
                        admin_keys=("admin-key",))
    return create_app(settings, services=service).test_client()


def erase(api, user: str, operator: str = "op-1", reason: str = "PIPL art. 47 request"):
    return api.delete(f"/users/{quote(user, safe='')}", json={"operator_id": operator, "reason": reason},
                      headers=ADMIN)


def user_keys(client, user: str) -> list[str]:
    tag = quote(user, safe="").replace("[", "\\[").replace("*", "\\*").replace("?", "\\?")
    return sorted(k.decode() for k in client.scan_iter(match=f"ld:{{{tag}}}:*", count=1000))


def index_entries(client, user: str) -> list[str]:
    return [m.decode() for m in client.zrange("ld:reviews:pending", 0, -1)
            if parse_entry(m.decode())[1] == user]


def erasure_records(client) -> list[dict]:
    return [json.loads(fields[b"r"]) for _, fields in client.xrange(STREAM)]


def receipt_count(client) -> int:
    return sum(1 for k in client.scan_iter(match="ld:*", count=1000) if b"erasure:er_" in k or b"receipt:er_" in k)


def exported(service: Services) -> str:
    out = io.StringIO()
    service.stores.log.export(out)
    return out.getvalue()


# -- intermittent out of memory ---------------------------------------------------------------------
class MemoryToggler:
    """Flips maxmemory between 1mb (every write refused: the data set is larger) and 0 (no
    limit) every 0-4 ms from a thread, as the fault was seen in the field."""

    def __init__(self, port: int):
        self.admin = redis.Redis(port=port)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        full, rng = False, random.Random(7)
        while not self.stop.is_set():
            full = not full
            self.admin.config_set("maxmemory", "1mb" if full else "0")
            self.stop.wait(rng.uniform(0, 0.004))
        self.admin.config_set("maxmemory", "0")

    def __enter__(self) -> "MemoryToggler":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def what_is_there(client, user: str) -> tuple:
    """Everything an erasure of `user` may change: the user's keys, its index entries, the
    receipts and the erasure log."""
    return (user_keys(client, user), index_entries(client, user), receipt_count(client),
            client.xlen(STREAM))


def erase_until_done(api, client, user: str) -> tuple[dict, list[str]]:
    """DELETE until 200, checking each 503's claim against what is in Redis."""
    answers = []
    for _ in range(500):
        before = what_is_there(client, user)
        response = erase(api, user)
        if response.status_code == 200:
            return response.json, answers
        assert response.status_code == 503, response.json
        code = response.json["error"]["code"]
        answers.append(code)
        assert code in ("store_unavailable", "busy", "outcome_unknown"), response.json
        if code != "outcome_unknown":   # "nothing was written": nothing was
            assert what_is_there(client, user) == before, (code, answers)
    raise AssertionError(f"erasure of {user} never finished: {answers}")


def test_erasure_under_intermittent_out_of_memory(own_redis, policy):
    client = redis.Redis(port=own_redis.port)
    service = redis_services(own_redis.url, policy, FixedClock(NOW), erasure_secret=SECRET)
    api = app_for(service)
    users = [f"u-oom-{n}" for n in range(30)]
    for n, user in enumerate(users):
        review_case(api, user, "a1")
        api.post("/decide", json=dict(payload(), user_id=user, application_id="a2"), headers=CLIENT)
        if n % 3 == 0:   # a window to keep
            api.post("/applications/a1/review", json=body(user, "rejected", ["DEVICE_SWITCHING"]),
                     headers=REVIEWER)
    for n in range(2000):   # the data set outgrows 1mb, so that limit refuses every write
        client.set(f"filler:{n}", "x" * 1000)

    with MemoryToggler(own_redis.port):
        done = {user: erase_until_done(api, client, user) for user in users}

    answers = [code for _, codes in done.values() for code in codes]
    assert answers, "no write was ever refused: the fault was not injected"
    records = {r["receipt_id"]: r for r in erasure_records(client)}
    assert len(records) == len(users) == client.xlen(STREAM)   # one log record per erasure
    for user, (receipt, _) in done.items():
        assert user_keys(client, user) == [] and index_entries(client, user) == []
        assert receipt["receipt_id"] in records
        stored = api.get(f"/admin/erasures/{receipt['receipt_id']}", headers=ADMIN).json
        assert stored["erased"] == receipt["erased"] == records[receipt["receipt_id"]]["erased"]
        assert api.get(f"/users/{user}/state", headers=CLIENT).status_code == 404
    assert receipt_count(client) == len(users)
    log = exported(service)
    assert not [u for u in users if u in log]


# -- a failure between the steps ----------------------------------------------------------------------
def test_an_erasure_cut_short_after_deleting_says_so_and_a_retry_finishes_it(policy, store_url, clock,
                                                                           monkeypatch):
    # the lock's 500 ms bound how long the erasure keeps trying to finish
    service = redis_services(store_url, policy, clock, erasure_secret=SECRET, lock_ttl_ms=500)
    api = app_for(service)
    user = "u-cut"
    review_case(api, user, "a1")
    api.post("/decide", json=dict(payload(), user_id=user, application_id="a2"), headers=CLIENT)
    failing = True
    save = RedisReceipts.save

    def refused_save(self, *args, **kwargs):
        if failing:
            raise StoreRefused("Redis refused: OutOfMemoryError: command not allowed")
        return save(self, *args, **kwargs)

    monkeypatch.setattr(RedisReceipts, "save", refused_save)
    first = erase(api, user)
    assert first.status_code == 503 and first.json["error"]["code"] == "outcome_unknown", first.json
    assert api.get(f"/users/{user}/state", headers=CLIENT).status_code == 404   # the data is gone
    assert api.get(f"/applications/a1?user_id={user}", headers=CLIENT).status_code == 404
    client = service.stores.users.client
    assert erasure_records(client) == []
    failing = False
    again = erase(api, user, reason="retry")
    assert again.status_code == 200, again.json
    assert again.json["erased"] == {"applications": 2, "review_cases": 1, "log_records": 2, "state_keys": 1}
    receipt = api.get(f"/admin/erasures/{again.json['receipt_id']}", headers=ADMIN).json
    assert receipt["reason"] == "PIPL art. 47 request"   # the receipt the first request began
    assert [r["receipt_id"] for r in erasure_records(client)] == [again.json["receipt_id"]]
    assert user_keys(client, user) == [] and index_entries(client, user) == []
    assert erase(api, user).status_code == 404
    assert user not in exported(service)


# -- a review decision racing the erasure -------------------------------------------------------------
def test_a_review_decision_racing_an_erasure_leaves_the_index_naming_no_one(service, monkeypatch):
    """The erasure is let in just after the decision's commit, before its index entry is added:
    whether it runs then, or waits for the user's lock, nothing may name the user afterwards."""
    api = app_for(service)
    user = "u-race"
    api.post("/decide", json=dict(payload(), user_id=user, application_id="a0"), headers=CLIENT)
    erasure: dict = {}
    blocked = threading.Event()
    begin, add = service.stores.users.begin, service.cases.open

    def watched_begin(*args, **kwargs):
        snapshot = begin(*args, **kwargs)
        if snapshot is None and threading.current_thread().name == "erasure":
            blocked.set()   # the erasure waits for the user's lock
        return snapshot

    def add_after_an_erasure_began(decision, requested_at=None):
        thread = threading.Thread(target=lambda: erasure.update(response=erase(api, user)), name="erasure")
        erasure["thread"] = thread
        thread.start()
        deadline = time.monotonic() + 30
        while not (blocked.is_set() or "response" in erasure):
            assert time.monotonic() < deadline, "the erasure neither ran nor waited"
            time.sleep(0.001)
        add(decision, requested_at)

    monkeypatch.setattr(service.stores.users, "begin", watched_begin)
    monkeypatch.setattr(service.cases, "open", add_after_an_erasure_began)
    review_case(api, user, "a1")
    erasure["thread"].join()
    assert erasure["response"].status_code == 200, erasure["response"].json
    assert erasure["response"].json["erased"]["review_cases"] == 1
    assert index_entries(service.stores.users.client, user) == []
    assert user_keys(service.stores.users.client, user) == []
    assert service.stores.queue.stats()[0] == 0


def test_review_decisions_racing_erasures_leave_no_stale_entry(service):
    api = app_for(service)
    users = [f"u-races-{n}" for n in range(20)]
    for user in users:
        api.post("/decide", json=dict(payload(), user_id=user, application_id="a0"), headers=CLIENT)

    def race(user: str) -> None:
        start = threading.Barrier(2)

        def decide():
            start.wait()
            api.post("/decide", json=dict(payload(drop=("pay_score",)), user_id=user, application_id="a1"),
                     headers=CLIENT)

        def erasure():
            start.wait()
            erase(api, user)

        threads = [threading.Thread(target=decide), threading.Thread(target=erasure)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    for user in users:
        race(user)
    members = service.stores.queue.page(None, 100)
    # every entry left is a case whose record is there (a decision after the erasure)
    assert all(doc is not None for doc in service.cases.records(members)), members


# -- what the receipt keeps ------------------------------------------------------------------------
def test_erasure_audit_text_keeps_no_personal_data(service):
    api = app_for(service)
    user = "13912345678"
    review_case(api, user, "a1")
    response = erase(api, user, operator="op-110101199003071234",
                     reason="user 13912345678 asked (PIPL), name 王小明")
    assert response.status_code == 200, response.json
    receipt = api.get(f"/admin/erasures/{response.json['receipt_id']}", headers=ADMIN).json
    assert receipt["reason"] == "user 139****5678 asked (PIPL), name 王**"
    assert receipt["operator_id"] == "op-110101********1234"
    [record] = erasure_records(service.stores.users.client)
    assert (record["reason"], record["operator_id"]) == (receipt["reason"], receipt["operator_id"])
    for text in (json.dumps(receipt, ensure_ascii=False), exported(service)):
        for personal in ("13912345678", "王小明", "110101199003071234"):
            assert personal not in text
    assert "name 王**" in exported(service)


@pytest.mark.parametrize("operator", ["op\n1", "op\x00", "op\x85", "op/1", "x" * 129, ""])
def test_operator_id_follows_the_identifier_rules(service, operator):
    api = app_for(service)
    review_case(api, "u-op", "a1")
    api.post("/applications/a1/review", json=body("u-op", "rejected", ["DEVICE_SWITCHING"]), headers=REVIEWER)
    responses = [erase(api, "u-op", operator=operator),
                 api.post("/users/u-op/overrides", json={"action": "lift_cooldown", "operator_id": operator,
                                                         "reason": "wrongly applied"}, headers=ADMIN)]
    for response in responses:
        assert response.status_code == 400, response.json
        assert "operator_id" in response.json["error"]["fields"], response.json
    assert api.get("/users/u-op/state", headers=CLIENT).json["reapply_after"] is not None   # nothing done


def test_a_receipt_written_at_its_old_key_is_still_read(service):
    api = app_for(service)
    old = {"receipt_id": "er_old", "erased_at": "2026-01-01T00:00:00Z", "operator_id": "op-1",
           "reason": "r", "erased": {"applications": 1}, "window_kept": False}
    service.stores.users.client.set(service.stores.receipts.old_key("er_old"), json.dumps(old))
    assert api.get("/admin/erasures/er_old", headers=ADMIN).json == old
    assert api.get("/admin/erasures/er_none", headers=ADMIN).status_code == 404
