"""The UserStore port: the lock, one write applied whole and once, the windows, erasure."""
from __future__ import annotations

import datetime as dt
import threading

import pytest

from service.domain.application import StoredApplication
from service.domain.userstate import StateChange
from service.usecases.ports import GraceUse, StoreBusy, UserWrite, Windows
from tests.conftest import NOW

DAY = dt.timedelta(days=1)


def windows(now=NOW) -> Windows:
    return Windows(now, now - 180 * DAY, now - 365 * DAY)


def record(user: str, app: str, outcome: str = "approved", **extra) -> StoredApplication:
    decision = {"application_id": app, "user_id": user, "outcome": outcome, "product": "weilidai",
                "decided_at": "2026-11-23T08:00:00Z", "reasons": []}
    return StoredApplication({"application_id": app, "user_id": user, "payload_sha256": "d" * 64,
                              "decision": decision, "cancelled_at": None, **extra})


def take(store, user="u-1", app=None, now=NOW):
    snapshot = store.begin(user, app, windows(now))
    assert snapshot is not None
    return snapshot


# -- the lock -------------------------------------------------------------------------------------
def test_the_lock_has_one_holder_until_released(stores):
    users = stores.users
    first = take(users)
    assert users.begin("u-1", None, windows()) is None
    assert users.begin("u-2", None, windows()) is not None   # another user is not held
    assert users.release(first) is True
    assert users.release(first) is False                      # no longer ours
    take(users)


def test_a_commit_frees_the_lock_unless_it_keeps_it(stores):
    users = stores.users
    users.commit(take(users), UserWrite(at=NOW))
    kept = take(users)
    users.commit(kept, UserWrite(at=NOW, keep_lock=True))
    assert users.begin("u-1", None, windows()) is None
    assert users.release(kept) is True
    take(users)


def test_an_expired_lock_frees_the_user_and_its_holder_cannot_write(stores, harness):
    users = stores.users
    stale = take(users, app="a-1")
    harness.let_lock_expire()
    fresh = take(users, app="a-1")
    with pytest.raises(StoreBusy):
        users.commit(stale, UserWrite(at=NOW, application=record("u-1", "a-1")))
    assert users.application("u-1", "a-1") is None            # nothing was written
    users.release(fresh)


def test_a_retried_commit_applies_once(stores):
    users = stores.users
    snapshot = take(users, app="a-1")
    write = UserWrite(at=NOW, application=record("u-1", "a-1"),
                      change=StateChange(count_application=True), count_from=NOW - 180 * DAY,
                      log='{"kind":"decision","at":"2026-11-23T08:00:00Z","user_id":"u-1"}')
    users.commit(snapshot, write)
    users.commit(snapshot, write)                              # the answer of the first was lost
    assert users.state("u-1", windows()).applications_6m == 1
    assert users.inventory("u-1").log_records == 1


def test_racing_holders_are_serialised(stores):
    """Ten threads add one counted application each under the lock: all ten are counted."""
    users, done = stores.users, []

    def add(n: int):
        for _ in range(2000):
            snapshot = users.begin("u-race", f"a-{n}", windows())
            if snapshot is not None:
                users.commit(snapshot, UserWrite(at=NOW, change=StateChange(count_application=True),
                                                 count_from=NOW - 180 * DAY))
                done.append(n)
                return

    threads = [threading.Thread(target=add, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(done) == list(range(10))
    assert users.state("u-race", windows()).applications_6m == 10


# -- what a write holds ----------------------------------------------------------------------------
def test_a_write_lands_whole_and_is_read_back(stores):
    users = stores.users
    until = NOW + 90 * DAY
    users.commit(take(users, app="a-1"), UserWrite(
        at=NOW, application=record("u-1", "a-1", "rejected"),
        decision_text=None, change=StateChange(count_application=True, cooldown_until=until),
        count_from=NOW - 180 * DAY))
    snapshot = take(users, app="a-1")
    assert snapshot.known and snapshot.application == record("u-1", "a-1", "rejected")
    assert snapshot.state.cooldown_until == until and snapshot.state.applications_6m == 1
    users.release(snapshot)
    assert users.application("u-1", "a-1") == record("u-1", "a-1", "rejected")
    assert users.applications([("u-1", "a-1"), ("u-1", "nope"), ("u-2", "a-1")]) == [
        record("u-1", "a-1", "rejected"), None, None]
    assert [r.application_id for r in users.all_applications()] == ["a-1"]


def test_a_decision_text_given_is_the_records_decision(stores):
    users = stores.users
    stored = record("u-1", "a-1")
    text = '{"application_id":"a-1","user_id":"u-1","outcome":"approved","product":"weilidai",' \
           '"decided_at":"2026-11-23T08:00:00Z","reasons":[]}'
    users.commit(take(users, app="a-1"), UserWrite(at=NOW, application=stored, decision_text=text))
    assert users.application("u-1", "a-1").doc == stored.doc


def test_a_users_log_records_come_back_in_order_and_only_theirs(stores):
    users = stores.users
    texts = [f'{{"kind":"decision","at":"2026-11-23T08:00:0{i}Z","user_id":"u-1","n":{i}}}'
             for i in range(3)]
    for i, text in enumerate(texts):
        users.commit(take(users, app=f"a-{i}"), UserWrite(at=NOW, application=record("u-1", f"a-{i}"),
                                                          log=text))
    users.commit(take(users, user="u-2", app="a-0"), UserWrite(at=NOW, log='{"user_id":"u-2"}'))
    assert users.log_records("u-1") == texts
    assert users.log_records("u-2") == ['{"user_id":"u-2"}']
    assert users.log_records("nobody") == []


def test_a_long_log_is_read_in_batches(stores):
    users = stores.users
    texts = [f'{{"n":{i}}}' for i in range(1203)]
    for text in texts:
        users.commit(take(users), UserWrite(at=NOW, log=text))
    assert users.log_records("u-1") == texts


def test_an_unknown_user_has_no_state(stores):
    assert stores.users.state("nobody", windows()) is None
    snapshot = take(stores.users, user="nobody")
    assert not snapshot.known and snapshot.application is None
    assert stores.users.inventory("nobody") is None


def test_the_hold_the_grant_and_the_lift(stores):
    users = stores.users
    hold, grant = NOW + DAY, NOW + 30 * DAY
    users.commit(take(users, app="a-1"), UserWrite(at=NOW, change=StateChange(
        cooling_off_until=hold, temp_limit_expires_at=grant, cooldown_until=NOW + 90 * DAY)))
    users.commit(take(users, app="a-2"), UserWrite(at=NOW, change=StateChange(temp_limit_expires_at=grant)))
    state = users.state("u-1", windows())
    assert (state.cooling_off_application, state.cooling_off_until) == ("a-1", hold)
    assert (state.temp_limit_expires_at, state.temp_limit_grants) == (grant, 2)
    users.commit(take(users, app="a-1"), UserWrite(at=NOW, ends_hold=True, lifts_cooldown=True))
    state = users.state("u-1", windows())
    assert state.cooling_off_until is None and state.cooling_off_application is None
    assert state.cooldown_until is None and state.temp_limit_grants == 2


# -- the windows -----------------------------------------------------------------------------------
def test_t3_counts_the_window_without_its_start_and_with_now(stores):
    users, start = stores.users, NOW - 180 * DAY
    for n, at in enumerate([start - DAY, start, start + dt.timedelta(seconds=1), NOW]):
        users.commit(take(users, app=f"a-{n}", now=at), UserWrite(
            at=at, change=StateChange(count_application=True), count_from=at - 180 * DAY))
    assert users.state("u-1", windows()).applications_6m == 2


def test_t5_counts_grace_uses_after_the_period_start(stores):
    users = stores.users
    period_start = NOW - 365 * DAY
    for at, use_id in [(period_start, "x1"), (period_start + dt.timedelta(seconds=1), "x2"),
                       (NOW, "x3"), (NOW, "x4")]:
        users.commit(take(users, now=at), UserWrite(at=at, grace_use=GraceUse(at, 2, use_id),
                                                   grace_from=at - 365 * DAY))
    uses = users.state("u-1", windows()).grace_uses
    assert uses == (period_start + dt.timedelta(seconds=1), NOW, NOW)   # two uses in one second


def test_records_are_kept_for_the_retention(stores, harness):
    users = stores.users
    users.commit(take(users, app="a-1"), UserWrite(at=NOW, application=record("u-1", "a-1")))
    assert harness.expires_within("u-1", "a-1", 400 * 86400)


# -- erasure ---------------------------------------------------------------------------------------
def _held_user(users):
    users.commit(take(users, app="a-1"), UserWrite(
        at=NOW, application=record("u-1", "a-1", "review"), change=StateChange(
            count_application=True, cooldown_until=NOW + DAY), count_from=NOW - 180 * DAY,
        log='{"kind":"decision","at":"2026-11-23T08:00:00Z","user_id":"u-1"}'))


def test_an_inventory_counts_what_is_held(stores):
    _held_user(stores.users)
    found = stores.users.inventory("u-1")
    assert [r.application_id for r in found.applications] == ["a-1"]
    assert (found.log_records, found.state_items) == (1, 2)


def test_an_erasure_replaces_everything_at_once_and_a_retry_finds_it(stores):
    users = stores.users
    _held_user(users)
    snapshot = take(users)
    pending = {"receipt": {"receipt_id": "er_1"}, "cases": []}
    assert users.begin_erasure(snapshot, pending) == pending
    assert users.begin_erasure(snapshot, {"receipt": {"receipt_id": "er_2"}}) == pending
    assert users.state("u-1", windows()) is None and users.application("u-1", "a-1") is None
    assert users.inventory("u-1") is None and users.pending_erasure("u-1") == pending
    users.end_erasure("u-1")
    assert users.pending_erasure("u-1") is None
    users.release(snapshot)


def test_an_erasure_needs_the_lock(stores, harness):
    users = stores.users
    _held_user(users)
    stale = take(users)
    harness.let_lock_expire()
    with pytest.raises(StoreBusy):
        users.begin_erasure(stale, {"receipt": {}})
    assert users.application("u-1", "a-1") is not None


def test_forget_drops_the_user(stores):
    _held_user(stores.users)
    stores.users.forget("u-1")
    assert stores.users.inventory("u-1") is None


def test_the_view_shows_state_windows_and_records(stores):
    users = stores.users
    _held_user(users)
    view = users.view("u-1", {"a-1", "a-9"})
    assert view["state"] == {"cooldown_until": "2026-11-24T08:00:00Z"}
    assert view["counted"] == {"a-1": "2026-11-23T08:00:00Z"} and view["grace"] == {}
    assert view["records"] == {"a-1": record("u-1", "a-1", "review").doc, "a-9": None}


# -- four-eyes overrides ----------------------------------------------------------------------------
def _asked():
    from service.domain.overrides import PendingOverride

    return PendingOverride.ask("lift_cooldown", "alice", "wrong", NOW)


def test_an_override_is_written_with_its_commit_and_read_back_as_it_now_stands(stores):
    users, asked = stores.users, _asked()
    users.commit(take(users), UserWrite(at=NOW, override=asked, log='{"kind":"override_request"}'))
    assert users.pending_override("u-1", asked.override_id) == asked
    assert users.pending_override("u-2", asked.override_id) is None     # another user holds none
    assert users.state("u-1", windows()) is None                         # no state was touched
    applied = asked.approved("bob", NOW + DAY)
    users.commit(take(users), UserWrite(at=NOW + DAY, override=applied, lifts_cooldown=True))
    assert users.pending_override("u-1", asked.override_id) == applied


def test_an_override_needs_the_lock_and_goes_with_its_user(stores, harness):
    users, asked = stores.users, _asked()
    stale = take(users)
    harness.let_lock_expire()
    with pytest.raises(StoreBusy):
        users.commit(stale, UserWrite(at=NOW, override=asked))
    assert users.pending_override("u-1", asked.override_id) is None
    users.commit(take(users), UserWrite(at=NOW, override=asked))
    snapshot = take(users)
    users.begin_erasure(snapshot, {"receipt": {"receipt_id": "er_1"}, "cases": []})
    assert users.pending_override("u-1", asked.override_id) is None
    users.end_erasure("u-1")
    users.release(snapshot)
    users.commit(take(users), UserWrite(at=NOW, override=asked))
    users.forget("u-1")
    assert users.pending_override("u-1", asked.override_id) is None
