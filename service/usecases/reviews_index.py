"""The review cases' pending index: its entries, its cursors, and how it follows the records.

Why the index is written apart from the decision: a user's state sits in one place (on Redis
Cluster, one slot, the user's hash tag), and the index is one sequence for every user, in
another. So the source of truth is the per-user application record (written with the decision
by the unit of work: a case is pending while its record has outcome `review` and no `review`
entry), and the index follows it:

- a decision with outcome `review` adds its entry after its commit, before it releases the
  user's lock (an erasure takes that lock, so it always finds the entry to drop);
- a review removes the entry after its commit;
- a listing checks each entry against its record and drops the stale ones (a review whose
  removal was lost); `loan-decide reviews repair` re-adds entries whose add was lost (a
  process that died, or the store gone, between the commit and the add) by scanning the records.

An entry is "<opened at, epoch, 10 digits>|<user id, %-encoded>|<application id, %-encoded>":
ordered by its characters (ASCII only), oldest first; a cursor is simply the last entry seen. A
case opens with its decision, or with its applicant's request for a person.
"""
from __future__ import annotations

import base64
import binascii
import logging
import re
from typing import Callable, Optional
from urllib.parse import quote, unquote

from service.domain.application import StoredApplication, pending_case
from service.domain.decision import parse_iso_utc
from service.usecases.ports import ReviewQueue, StoreUnavailable, UserStore

log = logging.getLogger("loan_decide.api")

# An entry exactly (fullmatch: `$` lets a trailing newline in): ids are %-encoded, so each part
# is unreserved characters only, and the stamp ASCII digits (\d is any Unicode digit).
_ENTRY = re.compile(r"[0-9]{10}\|[A-Za-z0-9_.~%-]+\|[A-Za-z0-9_.~%-]+")


class BadCursor(ValueError):
    pass


def entry(user_id: str, application_id: str, decided_at: int) -> str:
    return f"{entry_prefix(decided_at)}{quote(user_id, safe='')}|{quote(application_id, safe='')}"


def entry_prefix(stamp: int) -> str:
    """What every entry opened at `stamp` begins with; every earlier entry sorts before it."""
    return f"{stamp:010d}|"


def entry_of(decision: dict, requested_at: Optional[str] = None) -> str:
    """A case's entry: stamped with its opening, the applicant's request (`requested_at`) for a
    case they opened, else the decision's time."""
    return entry(decision["user_id"], decision["application_id"],
                 int(parse_iso_utc(requested_at or decision["decided_at"]).timestamp()))


def case_entry(record: StoredApplication) -> str:
    requested = record.doc.get("human_review")
    return entry_of(record.decision, requested["requested_at"] if requested else None)


def parse_entry(member: str) -> tuple[int, str, str]:
    stamp, user, app = member.split("|")
    return int(stamp), unquote(user), unquote(app)


def encode_cursor(member: str) -> str:
    return base64.urlsafe_b64encode(member.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        member = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor("The cursor is not one this service gave.") from None
    if not _ENTRY.fullmatch(member):
        raise BadCursor("The cursor is not one this service gave.")
    return member


class CaseIndex:
    """The pending index over a ReviewQueue, checked against the records of a UserStore."""

    def __init__(self, queue: ReviewQueue, store: UserStore):
        self.queue, self.store = queue, store

    def open(self, decision: dict, requested_at: Optional[str] = None) -> None:
        """Add a new review case, after its decision's commit. Lost (the store gone meanwhile):
        the decision stands, and `loan-decide reviews repair` adds the entry."""
        try:
            self.queue.add(entry_of(decision, requested_at))
        except StoreUnavailable as exc:
            log.warning("review case not indexed; run `loan-decide reviews repair`",
                        extra={"fields": {"error": str(exc)}})

    def open_then_release(self, decision: dict, release: Callable[[], bool],
                          requested_at: Optional[str] = None) -> None:
        """A new case enters the index before the user's lock is released (`release`): an
        erasure, which takes the same lock, then always finds the entry and drops it. (Added
        after the lock, an erasure could run in between and the entry name an erased user.)"""
        try:
            self.open(decision, requested_at)
        finally:
            held = release()
        if not held:   # the lock expired before the add: an erasure may have run meanwhile
            self.drop_if_gone(decision, requested_at)

    def close(self, decision: dict, requested_at: Optional[str] = None) -> None:
        """A reviewed case leaves the index. Lost: the next listing drops the stale entry."""
        try:
            self.queue.remove([entry_of(decision, requested_at)])
        except StoreUnavailable:
            pass

    def drop_if_gone(self, decision: dict, requested_at: Optional[str] = None) -> None:
        """Drop a case's entry whose record is gone (erased while the entry was being added).
        Lost: the next listing drops it (its record is gone)."""
        try:
            if self.store.application(decision["user_id"], decision["application_id"]) is None:
                self.queue.remove([entry_of(decision, requested_at)])
        except StoreUnavailable:
            pass

    def records(self, entries: list[str]) -> list[Optional[StoredApplication]]:
        return self.store.applications([parse_entry(e)[1:] for e in entries])

    def page(self, after: Optional[str], limit: int,
             select: Callable[[list[StoredApplication]], list] = list) -> tuple[list, Optional[str]]:
        """Up to `limit` open cases after the entry `after` (as `select` makes and keeps them),
        and the cursor of the next page (None: no more). Stale entries met on the way are
        dropped. At most ten batches are read: a filter that keeps few cases ends a page short
        of `limit`, with a cursor to go on from."""
        found: list = []
        last, exhausted = after, False
        for _ in range(10):   # bounded: each round drops what it found stale
            entries = self.queue.page(last, limit - len(found))
            if not entries:
                exhausted = True
                break
            records = self.records(entries)
            self.queue.remove([e for e, r in zip(entries, records) if not pending_case(r)])
            found += select([r for r in records if pending_case(r)])
            last = entries[-1]
            if len(found) >= limit:
                break
        more = not exhausted and last is not None and bool(self.queue.page(last, 1))
        return found, (encode_cursor(last) if more else None)

    def stats(self, overdue_before: Optional[int] = None) -> tuple[int, Optional[int], Optional[int]]:
        """(pending entries, the oldest's opening, entries opened before `overdue_before`) for
        the metrics: read from the index alone, so a stale entry counts until a listing drops it."""
        count, oldest = self.queue.stats()
        overdue = None if overdue_before is None else self.queue.count_before(entry_prefix(overdue_before))
        return count, (parse_entry(oldest)[0] if oldest else None), overdue

    def repair(self) -> dict:
        """Re-add every open case the index lacks (an add lost between commit and index)."""
        added = found = 0
        for record in self.store.all_applications():
            if not pending_case(record):
                continue
            found += 1
            member = case_entry(record)
            if not self.queue.contains(member):
                self.queue.add(member)
                added += 1
        return {"pending": found, "added": added}
