"""The in-memory adapters: every port of service.usecases.ports on dicts in this process.

For the embedded default (`make run` with no REDIS_URL), the simulation (`replay --simulate`:
one store per partition) and the fast tests. They keep the promises the Redis adapters keep
(tests/contract/ runs one suite against both): the user's lock with an expiry, records and
state that expire after the retention, the T3/T5 windows, idempotent receipts. Time is the
injected clock's, for lock expiry and TTLs alike, so a test moves the clock instead of sleeping.

One process's memory: state is lost when it stops, and nothing is shared with another process
(`loan-decide serve` refuses the embedded default with several workers). Values handed in are
kept as they are, not copied: the use cases never change a record they stored, they store a new
one. One lock serialises the adapters' operations, so threads see each operation whole.
"""
from __future__ import annotations

import bisect
import datetime as dt
import json
import secrets
import threading
from pathlib import Path
from dataclasses import dataclass, field
from typing import IO, Iterator, Optional

from service.domain.application import StoredApplication
from service.domain.clock import Clock, SystemClock
from service.domain.decision import iso_utc
from service.domain.userstate import UserState
from service.usecases import ports
from service.usecases.errors import KitConflict
from service.usecases.log_records import encode
from service.usecases.ports import StoreBusy, UserSnapshot, UserWrite, Windows


@dataclass
class _Expiring:
    value: object
    expires_at: Optional[dt.datetime]


@dataclass
class _User:
    """One user's keys, as the Redis adapter keeps them under the user's hash tag."""

    fields: dict[str, object] = field(default_factory=dict)      # the state hash
    fields_expire: Optional[dt.datetime] = None
    counted: dict[str, dt.datetime] = field(default_factory=dict)   # T3: application -> time
    counted_expire: Optional[dt.datetime] = None
    grace: dict[str, dt.datetime] = field(default_factory=dict)     # T5: member -> time
    grace_expire: Optional[dt.datetime] = None
    records: dict[str, _Expiring] = field(default_factory=dict)     # application id -> record
    overrides: dict[str, _Expiring] = field(default_factory=dict)   # override id -> PendingOverride
    log: list[tuple[int, dt.datetime, str]] = field(default_factory=list)   # (seq, written, text)
    log_expire: Optional[dt.datetime] = None
    lock: Optional[tuple[str, dt.datetime]] = None                  # (token, expires at)
    committed: Optional[str] = None                                 # the token of the last commit
    erasure: Optional[dict] = None


class MemoryData:
    """What the in-memory adapters share: one process's store, its clock and its retention."""

    def __init__(self, clock: Optional[Clock] = None, *, lock_ttl_ms: int = 5000,
                 retention_days: int = 400):
        self.clock = clock or SystemClock()
        self.lock_ttl = dt.timedelta(milliseconds=lock_ttl_ms)
        self.retention = dt.timedelta(days=retention_days)
        self.users: dict[str, _User] = {}
        self.erasure_log: list[tuple[int, dt.datetime, str]] = []
        self.seq = 0
        self.mutex = threading.RLock()

    def now(self) -> dt.datetime:
        return self.clock.now()

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def user(self, user_id: str) -> _User:
        """The user's keys, with what has expired by now gone (as Redis would have it)."""
        user = self.users.get(user_id)
        if user is None:
            user = self.users[user_id] = _User()
        now = self.now()
        if user.fields_expire and user.fields_expire <= now:
            user.fields, user.fields_expire = {}, None
        if user.counted_expire and user.counted_expire <= now:
            user.counted, user.counted_expire = {}, None
        if user.grace_expire and user.grace_expire <= now:
            user.grace, user.grace_expire = {}, None
        if user.log_expire and user.log_expire <= now:
            user.log, user.log_expire = [], None
        for held in (user.records, user.overrides):
            for name in [a for a, r in held.items() if r.expires_at and r.expires_at <= now]:
                del held[name]
        if user.lock and user.lock[1] <= now:
            user.lock = None
        return user


def _state(user: _User, windows: Windows) -> UserState:
    f = user.fields
    return UserState(
        applications_6m=sum(1 for at in user.counted.values() if windows.count_from < at <= windows.now),
        cooldown_until=f.get("cooldown_until"),
        cooling_off_application=f.get("cooling_off_application"),
        cooling_off_until=f.get("cooling_off_until"),
        temp_limit_expires_at=f.get("temp_limit_expires_at"),
        temp_limit_grants=int(f.get("temp_limit_grants") or 0),
        grace_uses=tuple(sorted(at for at in user.grace.values() if at > windows.grace_from)))


def _held(user: _User) -> bool:
    return bool(user.fields or user.counted or user.grace or user.records or user.log or user.overrides)


class MemoryUserStore(ports.UserStore):
    def __init__(self, data: MemoryData, lock_wait_s: float = 5.0):
        self.data = data
        self.lock_wait_s = lock_wait_s
        self.lock_ttl_ms = int(data.lock_ttl.total_seconds() * 1000)

    def begin(self, user_id: str, application_id: Optional[str],
              windows: Windows) -> Optional[UserSnapshot]:
        with self.data.mutex:
            user = self.data.user(user_id)
            if user.lock is not None:
                return None
            token = secrets.token_hex(16)
            user.lock = (token, self.data.now() + self.data.lock_ttl)
            record = user.records.get(application_id) if application_id else None
            state = _state(user, windows)
            return UserSnapshot(user_id, application_id, token, state,
                                bool(user.fields) or state.applications_6m > 0,
                                record.value if record else None)

    def commit(self, snapshot: UserSnapshot, write: UserWrite) -> None:
        with self.data.mutex:
            if self.data.user(snapshot.user_id).committed == snapshot.token:
                return   # this commit applied already (a retry): it applies once
            user = self._locked(snapshot, "the user's lock expired before the commit; nothing was written")
            user.committed = snapshot.token
            now, keep = self.data.now(), self.data.retention
            if write.application is not None:
                user.records[snapshot.application_id] = _Expiring(write.application, now + keep)
            if write.override is not None:
                user.overrides[write.override.override_id] = _Expiring(write.override,
                                                                       write.override.kept_until)
            _apply_change(user, snapshot, write)
            if user.fields:
                user.fields_expire = now + keep
            if write.log is not None:
                user.log = [e for e in user.log if e[1] > now - keep]
                user.log.append((self.data.next_seq(), now, write.log))
                user.log_expire = now + keep
            if write.change.count_application:
                _add_timed(user.counted, snapshot.application_id, write.at, write.count_from)
                user.counted_expire = now + _idle_life(write.at, write.count_from)
            if write.grace_use is not None:
                use = write.grace_use
                member = f"{int(use.at.timestamp())}:{use.days}" + (f":{use.use_id}" if use.use_id else "")
                _add_timed(user.grace, member, use.at, write.grace_from)
                user.grace_expire = now + _idle_life(use.at, write.grace_from)
            if not write.keep_lock:
                user.lock = None

    def _locked(self, snapshot: UserSnapshot, message: str) -> _User:
        user = self.data.user(snapshot.user_id)
        if user.lock is None or user.lock[0] != snapshot.token:
            raise StoreBusy(message)
        return user

    def release(self, snapshot: UserSnapshot) -> bool:
        with self.data.mutex:
            user = self.data.user(snapshot.user_id)
            if user.lock is None or user.lock[0] != snapshot.token:
                return False
            user.lock = None
            return True

    def application(self, user_id: str, application_id: str) -> Optional[StoredApplication]:
        with self.data.mutex:
            record = self.data.user(user_id).records.get(application_id)
            return record.value if record else None

    def applications(self, refs: list[tuple[str, str]]) -> list[Optional[StoredApplication]]:
        return [self.application(user_id, app_id) for user_id, app_id in refs]

    def state(self, user_id: str, windows: Windows) -> Optional[UserState]:
        with self.data.mutex:
            user = self.data.user(user_id)
            if not (user.fields or user.counted or user.grace):
                return None
            return _state(user, windows)

    def all_applications(self) -> Iterator[StoredApplication]:
        with self.data.mutex:
            records = [r for user_id in list(self.data.users)
                       for r in self.data.user(user_id).records.values()]
        for record in records:
            yield record.value

    def log_records(self, user_id: str) -> list[str]:
        with self.data.mutex:
            return [text for _, _, text in self.data.user(user_id).log] if user_id in self.data.users else []

    def pending_override(self, user_id: str, override_id: str):
        with self.data.mutex:
            held = self.data.user(user_id).overrides.get(override_id)
            return held.value if held else None

    def inventory(self, user_id: str) -> Optional[ports.UserInventory]:
        with self.data.mutex:
            user = self.data.user(user_id)
            if not _held(user):
                return None
            return ports.UserInventory(tuple(r.value for r in user.records.values()), len(user.log),
                                       sum(1 for part in (user.fields, user.counted, user.grace) if part))

    def begin_erasure(self, snapshot: UserSnapshot, pending: dict) -> dict:
        with self.data.mutex:
            user = self.data.user(snapshot.user_id)
            if user.erasure is not None:
                return user.erasure
            self._locked(snapshot, "the user's lock expired before the erasure; nothing was written")
            fresh = _User(lock=user.lock, erasure=pending)
            self.data.users[snapshot.user_id] = fresh
            return pending

    def pending_erasure(self, user_id: str) -> Optional[dict]:
        with self.data.mutex:
            return self.data.user(user_id).erasure

    def end_erasure(self, user_id: str) -> None:
        with self.data.mutex:
            self.data.user(user_id).erasure = None

    def forget(self, user_id: str) -> None:
        with self.data.mutex:
            lock = self.data.user(user_id).lock
            self.data.users[user_id] = _User(lock=lock)

    def view(self, user_id: str, application_ids: set[str]) -> dict:
        with self.data.mutex:
            user = self.data.user(user_id)
            fields = {k: (iso_utc(v) if isinstance(v, dt.datetime) else v) for k, v in user.fields.items()}
            records = {a: (user.records[a].value.doc if a in user.records else None)
                       for a in sorted(application_ids)}
            return {"state": fields, "counted": {a: iso_utc(t) for a, t in sorted(user.counted.items())},
                    "grace": {m: iso_utc(t) for m, t in sorted(user.grace.items())}, "records": records}

    def ping(self) -> bool:
        return True


def _apply_change(user: _User, snapshot: UserSnapshot, write: UserWrite) -> None:
    change, fields = write.change, user.fields
    if change.cooldown_until:
        fields["cooldown_until"] = change.cooldown_until
    if change.cooling_off_until:
        fields["cooling_off_application"] = snapshot.application_id
        fields["cooling_off_until"] = change.cooling_off_until
    if change.temp_limit_expires_at:
        fields["temp_limit_expires_at"] = change.temp_limit_expires_at
        fields["temp_limit_grants"] = int(fields.get("temp_limit_grants") or 0) + 1
    if write.ends_hold:
        fields.pop("cooling_off_application", None)
        fields.pop("cooling_off_until", None)
    if write.lifts_cooldown:
        fields.pop("cooldown_until", None)


def _idle_life(at: dt.datetime, keep_after: dt.datetime) -> dt.timedelta:
    """How long an idle window's members are kept: as the Redis adapter keeps its sets."""
    return 2 * (at - keep_after) + dt.timedelta(days=1)


def _add_timed(members: dict[str, dt.datetime], member: str, at: dt.datetime,
               keep_after: Optional[dt.datetime]) -> None:
    """Add a member at `at`; members at or before `keep_after` go (they left the window)."""
    members[member] = at.replace(microsecond=0)
    if keep_after is not None:
        for name in [m for m, t in members.items() if t <= keep_after.replace(microsecond=0)]:
            del members[name]


class MemoryReviewQueue(ports.ReviewQueue):
    def __init__(self, data: MemoryData):
        self.data = data
        self.entries: list[str] = []

    def add(self, entry: str) -> None:
        with self.data.mutex:
            at = bisect.bisect_left(self.entries, entry)
            if at == len(self.entries) or self.entries[at] != entry:
                self.entries.insert(at, entry)

    def remove(self, entries: list[str]) -> None:
        with self.data.mutex:
            gone = set(entries)
            self.entries = [e for e in self.entries if e not in gone]

    def page(self, after: Optional[str], count: int) -> list[str]:
        with self.data.mutex:
            start = bisect.bisect_right(self.entries, after) if after is not None else 0
            return self.entries[start:start + count]

    def contains(self, entry: str) -> bool:
        with self.data.mutex:
            at = bisect.bisect_left(self.entries, entry)
            return at < len(self.entries) and self.entries[at] == entry

    def stats(self) -> tuple[int, Optional[str]]:
        with self.data.mutex:
            return len(self.entries), (self.entries[0] if self.entries else None)

    def count_before(self, prefix: str) -> int:
        with self.data.mutex:
            return bisect.bisect_left(self.entries, prefix)


class MemoryErasedWindows(ports.ErasedWindows):
    def __init__(self, data: MemoryData):
        self.data = data
        self.windows: dict[str, dt.datetime] = {}

    def until(self, subject: str, now: dt.datetime) -> Optional[dt.datetime]:
        with self.data.mutex:
            end = self.windows.get(subject)
            return end if end and end > now else None

    def keep(self, subject: str, until: dt.datetime) -> None:
        with self.data.mutex:
            self.windows[subject] = until

    def drop(self, subject: str) -> None:
        with self.data.mutex:
            self.windows.pop(subject, None)


class MemoryReceipts(ports.Receipts):
    def __init__(self, data: MemoryData):
        self.data = data
        self.receipts: dict[str, dict] = {}

    def save(self, receipt: dict, log_record: str) -> None:
        with self.data.mutex:
            if receipt["receipt_id"] in self.receipts:
                return
            self.receipts[receipt["receipt_id"]] = json.loads(json.dumps(receipt))
            self.data.erasure_log.append((self.data.next_seq(), self.data.now(), log_record))

    def load(self, receipt_id: str) -> Optional[dict]:
        with self.data.mutex:
            return self.receipts.get(receipt_id)


class MemoryOverrideIndex(ports.OverrideIndex):
    def __init__(self, data: MemoryData):
        self.data = data
        self.pointers: dict[str, _Expiring] = {}

    def point(self, override_id: str, user_id: str, keep: dt.timedelta) -> None:
        with self.data.mutex:
            self.pointers[override_id] = _Expiring(user_id, self.data.now() + keep)

    def user_of(self, override_id: str) -> Optional[str]:
        with self.data.mutex:
            held = self.pointers.get(override_id)
            if held is None or held.expires_at <= self.data.now():
                self.pointers.pop(override_id, None)
                return None
            return held.value


class MemoryDecisionLog(ports.DecisionLog):
    def __init__(self, data: MemoryData):
        self.data = data

    def _streams(self) -> list[list[tuple[int, dt.datetime, str]]]:
        with self.data.mutex:
            return [list(self.data.user(u).log) for u in list(self.data.users)] + [list(self.data.erasure_log)]

    def export(self, out: IO[str], since: Optional[str] = None, until: Optional[str] = None) -> int:
        rows = []
        for stream in self._streams():
            for seq, _, text in stream:
                record = json.loads(text)
                at = record["at"]
                if (since and at < since) or (until and at >= until):
                    continue
                rows.append((at, record["user_id"], seq, encode(record)))
        for row in sorted(rows):
            out.write(row[3] + "\n")
        return len(rows)

    def recent_decisions(self, limit: int, per_user: int = 5) -> Iterator[str]:
        found = 0
        for stream in self._streams():
            for _, _, text in reversed(stream[-per_user:]):
                if '"kind":"decision"' in text:
                    yield text
                    found += 1
                    if found >= limit:
                        return


class MemoryRulesArchive(ports.RulesArchive):
    """Rules versions by hash, each with the kit it was first archived with."""

    def __init__(self, data: MemoryData, load_files):
        self.data, self.load_files = data, load_files
        self.files: dict[str, dict[str, bytes]] = {}
        self.kits: dict[str, dict[str, bytes]] = {}

    def save(self, book, kit=None) -> None:
        if kit is not None:
            self.save_kit(book.version, kit)
        with self.data.mutex:
            self.files.setdefault(book.version, dict(book.files))

    def save_kit(self, version: str, files) -> None:
        with self.data.mutex:
            stored = self.kits.setdefault(version, dict(files))
        if stored != dict(files):
            raise KitConflict.between(version, stored, files)

    def load(self, version: str):
        with self.data.mutex:
            files = self.files.get(version)
        return self.load_files(files, Path(f"<archive {version[:15]}>")) if files else None

    def load_kit(self, version: str) -> dict[str, bytes]:
        with self.data.mutex:
            return dict(self.kits.get(version, {}))


class MemoryRuleSwitches(ports.RuleSwitches):
    def __init__(self, data: MemoryData):
        self.data = data
        self.active: Optional[str] = None
        self.control: dict[str, str] = {}

    def read(self) -> tuple[Optional[str], dict[str, str]]:
        with self.data.mutex:
            return self.active, dict(self.control)

    def publish(self, version: str) -> None:
        with self.data.mutex:
            self.active = version

    def publish_if(self, version: str, replacing: Optional[str]) -> bool:
        with self.data.mutex:
            if self.active == version:
                return True
            if self.active != replacing:
                return False
            self.active = version
            return True

    def set_control(self, changes) -> dict[str, str]:
        with self.data.mutex:
            for name, value in changes.items():
                if value is None:
                    self.control.pop(name, None)
                else:
                    self.control[name] = value
            return dict(self.control)

    def take(self, fields: tuple[str, ...], holding: str = ""):
        with self.data.mutex:
            first = self.control.get(fields[0])
            if first is None or (holding and first != holding):
                return None
            return [self.control.pop(name, None) for name in fields]

    def put_back(self, values) -> bool:
        with self.data.mutex:
            names = [n for n, v in values.items() if v is not None]
            if not names or names[0] in self.control:
                return False
            self.control.update({n: values[n] for n in names})
            return True


class MemoryRuleChangeLog(ports.RuleChangeLog):
    def __init__(self, data: MemoryData):
        self.data = data
        self.history: list[dict] = []
        self.shadow: dict[str, dict[str, int]] = {}

    def append(self, entry: dict, keep: int) -> None:
        with self.data.mutex:
            self.history = (self.history + [json.loads(json.dumps(entry, default=str))])[-keep:]

    def entries(self) -> list[dict]:
        with self.data.mutex:
            return list(self.history)

    def add_counts(self, batch) -> None:
        with self.data.mutex:
            for version, counts in batch.items():
                mine = self.shadow.setdefault(version, {})
                for name, n in counts.items():
                    mine[name] = mine.get(name, 0) + n

    def counts(self, version: str) -> dict[str, int]:
        with self.data.mutex:
            return dict(self.shadow.get(version, {}))

    def reset_counts(self, version: str) -> None:
        with self.data.mutex:
            self.shadow.pop(version, None)


def memory_stores(clock: Optional[Clock] = None, *, load_files=None, lock_ttl_ms: int = 5000,
                  lock_wait_s: float = 5.0, retention_days: int = 400) -> ports.Stores:
    """Every port on one process's memory, with `clock` for lock expiry and TTLs."""
    data = MemoryData(clock, lock_ttl_ms=lock_ttl_ms, retention_days=retention_days)
    return ports.Stores(users=MemoryUserStore(data, lock_wait_s), queue=MemoryReviewQueue(data),
                        erased=MemoryErasedWindows(data), receipts=MemoryReceipts(data),
                        log=MemoryDecisionLog(data), archive=MemoryRulesArchive(data, load_files),
                        switches=MemoryRuleSwitches(data), changes=MemoryRuleChangeLog(data),
                        overrides=MemoryOverrideIndex(data))
