"""The ports beside the user's state: the review queue, kept windows, receipts, the decision log,
rules versions, the rule switches and the rule changes' log."""
from __future__ import annotations

import datetime as dt
import io
import json

import pytest

from service.adapters import rules_files
from service.usecases.errors import KitConflict
from service.usecases.ports import UserWrite, Windows
from service.usecases.reviews_index import entry
from tests.conftest import NOW, RULES_DIR

DAY = dt.timedelta(days=1)


# -- the review queue ------------------------------------------------------------------------------
def test_the_queue_pages_oldest_first_from_a_cursor(stores):
    queue = stores.queue
    entries = [entry(f"u-{n}", "a", 1_700_000_000 + n) for n in (3, 1, 2)] + [entry("u/é", "a b", 1)]
    for e in entries:
        queue.add(e)
    queue.add(entries[0])                                    # twice is once
    ordered = sorted(entries)
    assert queue.page(None, 10) == ordered
    assert queue.page(ordered[1], 2) == ordered[2:4]
    assert queue.page(ordered[-1], 5) == []
    assert queue.stats() == (4, ordered[0])
    assert queue.contains(entries[1]) and not queue.contains(entry("x", "y", 5))
    queue.remove([entries[1], entry("x", "y", 5)])
    assert queue.page(None, 10) == [e for e in ordered if e != entries[1]]
    queue.remove([])


# -- erasure's stores --------------------------------------------------------------------------
def test_a_kept_window_ends_when_it_ends(stores):
    """(Redis expires the key at the window's end in its own time: a window ahead of now.)"""
    erased, now = stores.erased, dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    erased.keep("s" * 64, now + DAY)
    assert erased.until("s" * 64, now) == now + DAY
    assert erased.until("s" * 64, now + DAY) is None
    assert erased.until("t" * 64, now) is None
    erased.drop("s" * 64)
    assert erased.until("s" * 64, now) is None


def test_a_receipt_and_its_log_record_are_written_once(stores):
    receipt = {"receipt_id": "er_1", "erased_at": "2026-11-23T08:00:00Z", "reason": "asked"}
    record = json.dumps({"v": 2, "kind": "erasure", "at": "2026-11-23T08:00:00Z", "user_id": "",
                         "receipt_id": "er_1"})
    stores.receipts.save(receipt, record)
    stores.receipts.save(dict(receipt, reason="another"), record)
    assert stores.receipts.load("er_1") == receipt
    assert stores.receipts.load("er_2") is None
    out = io.StringIO()
    assert stores.log.export(out) == 1
    assert json.loads(out.getvalue())["receipt_id"] == "er_1"


# -- the decision log ------------------------------------------------------------------------------
def _log(stores, user: str, at: dt.datetime, kind: str = "decision") -> None:
    snapshot = stores.users.begin(user, None, Windows(at, at - 180 * DAY, at - 365 * DAY))
    text = json.dumps({"v": 2, "kind": kind, "at": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "user_id": user},
                      separators=(",", ":"))
    stores.users.commit(snapshot, UserWrite(at=at, log=text))


def test_the_export_is_ordered_by_time_then_user_and_windowed(stores):
    for user, hours in [("u-b", 2), ("u-a", 2), ("u-a", 1), ("u-c", 3), ("u-a", 2)]:
        _log(stores, user, NOW + dt.timedelta(hours=hours))
    out = io.StringIO()
    assert stores.log.export(out) == 5
    seen = [(r["at"][11:13], r["user_id"]) for r in map(json.loads, out.getvalue().splitlines())]
    assert seen == [("09", "u-a"), ("10", "u-a"), ("10", "u-a"), ("10", "u-b"), ("11", "u-c")]
    out = io.StringIO()
    assert stores.log.export(out, since="2026-11-23T10:00:00Z", until="2026-11-23T11:00:00Z") == 3


def test_recent_decisions_are_the_last_few_of_each_user(stores):
    for n in range(4):
        _log(stores, "u-a", NOW + dt.timedelta(minutes=n))
    _log(stores, "u-a", NOW + dt.timedelta(minutes=9), kind="grace")
    _log(stores, "u-b", NOW)
    recent = [json.loads(t) for t in stores.log.recent_decisions(10, per_user=3)]
    assert sorted((r["user_id"], r["at"][14:16]) for r in recent) == [
        ("u-a", "02"), ("u-a", "03"), ("u-b", "00")]
    assert len(list(stores.log.recent_decisions(1))) == 1


# -- rules versions --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def book():
    return rules_files.load(RULES_DIR)


def test_a_version_is_archived_by_its_hash_with_its_kit_for_good(stores, book):
    archive, kit = stores.archive, {"base.yaml": b"a: 1\n"}
    assert archive.load(book.version) is None and archive.load_kit(book.version) == {}
    archive.save(book)
    assert archive.load(book.version).version == book.version
    archive.save(book, kit)                                  # a version may gain its kit once
    archive.save(book, kit)                                  # the same kit again is fine
    assert archive.load_kit(book.version) == kit
    with pytest.raises(KitConflict):
        archive.save(book, {"base.yaml": b"a: 2\n"})
    with pytest.raises(KitConflict):
        archive.save_kit(book.version, {})


def test_an_empty_kit_is_a_kit(stores, book):
    stores.archive.save(book, {})
    with pytest.raises(KitConflict):
        stores.archive.save_kit(book.version, {"base.yaml": b"a: 1\n"})


# -- the switches every worker follows ---------------------------------------------------------------
def test_publishing_and_the_control(stores):
    switches = stores.switches
    assert switches.read() == (None, {})
    assert switches.publish_if("v1", None) is True
    assert switches.publish_if("v2", "v0") is False           # not over what it read
    assert switches.publish_if("v1", "v0") is True            # already done: a retry
    switches.publish("v3")
    assert switches.set_control({"challenger": "c1", "share": "0.5", "shadow": "s1"}) == {
        "challenger": "c1", "share": "0.5", "shadow": "s1"}
    assert switches.set_control({"shadow": None}) == {"challenger": "c1", "share": "0.5"}
    assert switches.read() == ("v3", {"challenger": "c1", "share": "0.5"})


def test_take_ends_a_setting_once_and_only_the_one_checked(stores):
    switches = stores.switches
    switches.set_control({"challenger": "c1", "share": "0.5"})
    assert switches.take(("challenger", "share"), holding="c2") is None
    assert switches.take(("challenger", "share"), holding="c1") == ["c1", "0.5"]
    assert switches.take(("challenger", "share")) is None
    assert switches.put_back({"challenger": "c1", "share": "0.5"}) is True
    switches.set_control({"challenger": "c9"})
    assert switches.put_back({"challenger": "c1", "share": "0.5"}) is False
    assert switches.read()[1] == {"challenger": "c9", "share": "0.5"}


def test_the_history_keeps_the_last_entries_and_the_counts_add_up(stores):
    changes = stores.changes
    for n in range(5):
        changes.append({"n": n, "at": "2026-11-23T08:00:00Z"}, keep=3)
    assert [e["n"] for e in changes.entries()] == [2, 3, 4]
    changes.add_counts({"v1": {"evaluated": 2, "identical": 1}, "v2": {"evaluated": 1}})
    changes.add_counts({"v1": {"evaluated": 1, "f:KeyError": 1}})
    assert changes.counts("v1") == {"evaluated": 3, "identical": 1, "f:KeyError": 1}
    changes.reset_counts("v1")
    assert changes.counts("v1") == {} and changes.counts("v2") == {"evaluated": 1}


# -- four-eyes overrides' pointers ------------------------------------------------------------------
def test_an_override_id_points_to_its_user(stores):
    index = stores.overrides
    assert index.user_of("ov_1") is None
    index.point("ov_1", "u/é 1", dt.timedelta(days=8))
    index.point("ov_2", "u-2", dt.timedelta(days=8))
    assert (index.user_of("ov_1"), index.user_of("ov_2")) == ("u/é 1", "u-2")
