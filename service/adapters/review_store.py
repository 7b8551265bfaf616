"""Keys of issue 11 that are not one user's: the pending-review index, erased users' windows,
erasure receipts and the erasure log stream; and the erasure in progress, which is (it stands
in for the user's keys until the receipt is written: see usecases/audit.erase).

Why the pending index is written apart from the decision: a user's keys share the hash tag
`{user}` (one cluster slot), and the index is one key for every user, in another slot. One Lua
script touching both is a cross-slot error on Redis Cluster. So the source of truth is the
per-user application record (written atomically with the decision by COMMIT: a case is pending
while its record has outcome `review` and no `review` entry), and the index
`ld:reviews:pending` is written after it, in a command of its own:

- a decision with outcome `review` adds its entry after its commit, before it releases the
  user's lock (an erasure takes that lock, so it always finds the entry to drop);
- a review removes the entry after its commit;
- a listing checks each entry against its record and drops the stale ones (a review whose
  removal was lost); `loan-decide reviews repair` re-adds entries whose add was lost (a
  process that died, or Redis gone, between the commit and the add) by scanning the records.

Entries are members of one sorted set, all with score 0, ordered by their bytes:
"<decided_at epoch, 10 digits>|<user id, %-encoded>|<application id, %-encoded>". So the order
is oldest first, and a cursor is simply the last member seen (ZRANGE BYLEX from it, exclusive).
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import logging
import re
from typing import Iterator, Optional
from urllib.parse import quote, unquote

from service.adapters.state_store import (
    RedisStateStore,
    StoreUnavailable,
    UserSnapshot,
    _s,
    epoch,
    from_epoch,
)
from service.domain.decision import parse_iso_utc

log = logging.getLogger("loan_decide.api")

# A member exactly (fullmatch: `$` lets a trailing newline in): ids are %-encoded, so each part
# is unreserved characters only, and the stamp ASCII digits (\d is any Unicode digit).
_MEMBER = re.compile(r"[0-9]{10}\|[A-Za-z0-9_.~%-]+\|[A-Za-z0-9_.~%-]+")
# A name no %-encoded user id can take (quote() encodes '#'), so no user's log is this stream.
ERASURE_STREAM_TAG = "#erasures"


class BadCursor(ValueError):
    pass


def entry(user_id: str, application_id: str, decided_at: int) -> str:
    return f"{decided_at:010d}|{quote(user_id, safe='')}|{quote(application_id, safe='')}"


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
    if not _MEMBER.fullmatch(member):
        raise BadCursor("The cursor is not one this service gave.")
    return member


class ReviewIndex:
    """The pending-review index: one sorted set, written after the per-user commits."""

    def __init__(self, store: RedisStateStore):
        self.store = store
        self.key = f"{store.prefix}:reviews:pending"

    def add(self, user_id: str, application_id: str, decided_at: int) -> None:
        member = entry(user_id, application_id, decided_at)
        self.store._do(lambda: self.store.client.zadd(self.key, {member: 0}))

    def remove(self, members: list[str]) -> None:
        if members:
            self.store._do(lambda: self.store.client.zrem(self.key, *members))

    def page(self, after: Optional[str], count: int) -> list[str]:
        low = "(" + after if after else "-"
        raw = self.store._do(lambda: self.store.client.zrangebylex(self.key, low, "+", 0, count))
        return [_s(m) for m in raw]

    def stats(self) -> tuple[int, Optional[int]]:
        """(pending entries, decided_at of the oldest) for the metrics."""
        def read():
            pipe = self.store.client.pipeline(transaction=False)
            pipe.zcard(self.key)
            pipe.zrangebylex(self.key, "-", "+", 0, 1)
            return pipe.execute()

        count, first = self.store._do(read)
        return int(count), parse_entry(_s(first[0]))[0] if first else None

    def records(self, members: list[str]) -> list[Optional[dict]]:
        """The application record behind each entry (None: gone), read in one pipeline."""
        def read():
            pipe = self.store.client.pipeline(transaction=False)
            for member in members:
                _, user, app = parse_entry(member)
                pipe.get(self.store.keys(user, app)[3])
            return pipe.execute()

        return [json.loads(raw) if raw else None for raw in (self.store._do(read) if members else [])]


def pending_case(doc: Optional[dict]) -> bool:
    """Whether an application record is an open review case."""
    return bool(doc) and doc["decision"]["outcome"] == "review" and not doc.get("review")


def scan_records(store: RedisStateStore) -> Iterator[dict]:
    """Every application record (the repair path: a full scan, not a request path)."""
    for key in store.client.scan_iter(match=f"{store.prefix}:{{*}}:app:*", count=1000):
        raw = store.client.get(key)
        if raw:
            yield json.loads(raw)


def user_keys(store: RedisStateStore, user_id: str) -> list[str]:
    """Every key of one user (its hash tag), the lock excepted: found by SCAN, so records of
    applications no index names (refusals by state, old ones) are found too."""
    base = store._base(user_id)
    pattern = base.replace("[", "\\[").replace("*", "\\*").replace("?", "\\?") + ":*"
    keys = {_s(k) for k in store._do(lambda: list(store.client.scan_iter(match=pattern, count=1000)))}
    return sorted(k for k in keys if k != f"{base}:lock")


class ErasedWindows:
    """An erased user's active 90-day window, kept only as its end time under
    HMAC-SHA256(secret, user id): no key or value holds the user id."""

    def __init__(self, store: RedisStateStore, secret: bytes):
        self.store, self.secret = store, secret

    def subject(self, user_id: str) -> str:
        return hmac.new(self.secret, user_id.encode(), hashlib.sha256).hexdigest()

    def key_of(self, subject: str) -> str:
        return f"{self.store.prefix}:erased:{{{subject}}}"

    def until(self, user_id: str, now: dt.datetime) -> Optional[dt.datetime]:
        raw = self.store._do(lambda: self.store.client.get(self.key_of(self.subject(user_id))))
        end = from_epoch(_s(raw)) if raw else None
        return end if end and end > now else None

    def keep(self, subject: str, until: dt.datetime) -> None:
        self.store._do(lambda: self.store.client.set(self.key_of(subject), str(epoch(until)),
                                                     exat=epoch(until)))

    def drop(self, user_id: str) -> None:
        self.store._do(lambda: self.store.client.delete(self.key_of(self.subject(user_id))))


# Both erasure scripts write first the key that needs memory, because of how Redis refuses a
# script under maxmemory: a command that needs memory (SET) is refused only while the script has
# written nothing yet, and then the script stops; after a first write every command goes
# through. So a refused script has written nothing, and one that wrote the first key writes all.

# The user's slot: every key of the user gives way to the pending erasure (the receipt to write
# and the index entries to drop), only while the lock is ours. Safe to run twice: a pending
# erasure already there is returned, not replaced.
_ERASE_USER = """
local pending = redis.call('GET', KEYS[2])
if pending then return pending end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('LOCK_LOST the user lock expired before the erasure')
end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
for i = 3, #KEYS do redis.call('DEL', KEYS[i]) end
return ARGV[2]
"""

# The erasure slot: the receipt and its log record, together and once.
_SAVE_RECEIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('XADD', KEYS[2], '*', 'r', ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
"""


class PendingErasures:
    """An erasure in progress, kept under the user's hash tag (`<prefix>:{user}:erasure`) from
    the moment the user's keys are gone until its receipt, log record and index drops are
    written: a retry of the erasure finds it and finishes the job with the same receipt."""

    def __init__(self, store: RedisStateStore):
        self.store = store
        self._erase = store.client.register_script(_ERASE_USER)

    def key(self, user_id: str) -> str:
        return f"{self.store._base(user_id)}:erasure"

    def find(self, user_id: str) -> Optional[dict]:
        raw = self.store._do(lambda: self.store.client.get(self.key(user_id)))
        return json.loads(raw) if raw else None

    def begin(self, snapshot: UserSnapshot, keys: list[str], pending: dict) -> dict:
        """Replace `keys` (all the user's) by the pending erasure, in one step; returns the
        pending erasure that is stored (this one, or one an earlier try of this call left)."""
        lock = self.store.keys(snapshot.user_id, None)[0]
        raw = self.store.locked_write(self._erase, [lock, self.key(snapshot.user_id), *keys],
                                      [snapshot.token, json.dumps(pending, ensure_ascii=False),
                                       self.store.log_ttl])
        return json.loads(raw)

    def end(self, user_id: str) -> None:
        self.store._do(lambda: self.store.client.delete(self.key(user_id)))


class Receipts:
    """Erasure receipts (who, when, why, counts; no personal data) and the erasure log stream,
    in one slot (their hash tag), so that one script writes a receipt with its record."""

    def __init__(self, store: RedisStateStore):
        self.store = store
        self.stream = f"{store.prefix}:{{{ERASURE_STREAM_TAG}}}:log"
        self._save = store.client.register_script(_SAVE_RECEIPT)

    def key(self, receipt_id: str) -> str:
        return f"{self.store.prefix}:{{{ERASURE_STREAM_TAG}}}:receipt:{receipt_id}"

    def old_key(self, receipt_id: str) -> str:
        """Where receipts were written before they moved next to the stream (still read)."""
        return f"{self.store.prefix}:erasure:{receipt_id}"

    def save(self, receipt: dict, log_record: str) -> None:
        """The receipt and its log record, once: a receipt already written is left as it is."""
        self.store._call(self._save, [self.key(receipt["receipt_id"]), self.stream],
                         [json.dumps(receipt, ensure_ascii=False), log_record, self.store.log_ttl])

    def load(self, receipt_id: str) -> Optional[dict]:
        client = self.store.client
        raw = (self.store._do(lambda: client.get(self.key(receipt_id)))
               or self.store._do(lambda: client.get(self.old_key(receipt_id))))
        return json.loads(raw) if raw else None


def open_case_in_index(store: RedisStateStore, decision: dict) -> None:
    """Add a new review case to the pending index, after its decision's commit. Lost (Redis
    gone meanwhile): the decision stands, and `loan-decide reviews repair` adds the entry."""
    try:
        ReviewIndex(store).add(decision["user_id"], decision["application_id"],
                               epoch(parse_iso_utc(decision["decided_at"])))
    except StoreUnavailable as exc:
        log.warning(
            "review case not indexed; run `loan-decide reviews repair`", extra={"fields": {"error": str(exc)}})


def drop_case_if_gone(store: RedisStateStore, decision: dict) -> None:
    """Drop a case's entry whose record is gone (erased while the entry was being added). Lost:
    the next listing drops it (its record is gone)."""
    try:
        if store.application(decision["user_id"], decision["application_id"]) is None:
            ReviewIndex(store).remove([entry(decision["user_id"], decision["application_id"],
                                             epoch(parse_iso_utc(decision["decided_at"])))])
    except StoreUnavailable:
        pass
