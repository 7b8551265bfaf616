"""Per-user state in Redis: read, decide and write one user atomically, on one server or a cluster.

Every key of a user carries the hash tag `{user}`, so all of them live in one cluster slot and
one Lua script can touch them together. A decision is two round trips:

1. BEGIN (Lua): take the user's lock (SET NX PX with a random token) and, in the same step,
   read the user's state and the application's stored record.
2. COMMIT (Lua): if the lock is still ours, write the application record, the state change
   and release the lock, all at once; if it is not (it expired), write nothing.

Both are safe to run twice, so a call whose reply was lost (a timeout, while Redis may still
run it) is retried rather than reported as unwritten: BEGIN finds its own token in the lock,
COMMIT finds the marker its first run left and returns that run's log id.

The lock serialises one user's requests across processes and machines, so two requests never
both see the old state, and 50 copies of one application are evaluated once. A worker that dies
holding it stops blocking others when the lock's TTL runs out, and cannot write afterwards.
Keys carry TTLs: nothing grows without bound.
"""
from __future__ import annotations

import datetime as dt
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional
from urllib.parse import quote

import redis
from redis.exceptions import RedisClusterException

from service.adapters.span_hook import SpanHook
from service.domain.application import StoredApplication
from service.domain.decision import iso_utc
from service.domain.overrides import PendingOverride
from service.domain.userstate import UserState
from service.usecases import jsontext, ports
from service.usecases.ports import (
    StoreBusy,
    StoreRefused,
    StoreUnavailable,
    UserInventory,
    UserSnapshot,
    UserWrite,
    Windows,
)

UTC = dt.timezone.utc


REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError,
                RedisClusterException, ConnectionError, OSError)

# Both scripts are safe to run twice (a retry after a timeout, while Redis may still run the
# first call): a lock already holding our token is ours; a commit already applied left a
# marker holding its log id, returned again instead of writing twice.
_BEGIN = """
local held = redis.call('GET', KEYS[1])
if held ~= ARGV[1] then
  if held or not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return {0, redis.call('PTTL', KEYS[1])}
  end
end
return {1,
        redis.call('HGETALL', KEYS[2]),
        redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[3], ARGV[4]),
        redis.call('GET', KEYS[4]) or false,
        redis.call('ZRANGEBYSCORE', KEYS[5], '(' .. ARGV[5], '+inf')}
"""

_COMMIT = """
local done = redis.call('GET', KEYS[7])
if done then return done end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('LOCK_LOST the user lock expired before the commit')
end
local plan = cjson.decode(ARGV[2])
-- a four-eyes override first: a write that needs memory, so under maxmemory the script is
-- refused before it lifts a window (an override is never applied without its log record)
if ARGV[5] ~= '' then redis.call('SET', KEYS[8], ARGV[5], 'EX', plan.override_ttl) end
-- the application record and the log record come as raw arguments, not inside the plan's
-- JSON: no second escaping in Python, no decoding of kilobytes in Lua
if ARGV[3] ~= '' then redis.call('SET', KEYS[4], ARGV[3], 'EX', plan.app_ttl) end
for k, v in pairs(plan.hset) do redis.call('HSET', KEYS[2], k, v) end
for _, k in ipairs(plan.hdel) do redis.call('HDEL', KEYS[2], k) end
for k, v in pairs(plan.hincrby) do redis.call('HINCRBY', KEYS[2], k, v) end
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('EXPIRE', KEYS[2], plan.user_ttl) end
local log_id = false
if ARGV[4] ~= '' then
  log_id = redis.call('XADD', KEYS[6], 'MINID', '~', plan.log_minid, '*', 'r', ARGV[4])
  redis.call('EXPIRE', KEYS[6], plan.log_ttl)
end
-- each sorted set with its own entry (an and/or pick would fall through to grace_add when
-- apps_add is false and count a grace use as an application)
local function zadd(zkey, add)
  if not add then return end
  redis.call('ZADD', zkey, add.score, add.member)
  redis.call('ZREMRANGEBYSCORE', zkey, '-inf', add.trim_before)
  redis.call('EXPIRE', zkey, add.ttl)
end
zadd(KEYS[3], plan.apps_add)
zadd(KEYS[5], plan.grace_add)
redis.call('SET', KEYS[7], log_id or '', 'PX', plan.marker_ttl_ms)
-- a plan that keeps the lock has work to finish before the user's next request (RELEASE ends it)
if not plan.keep_lock then redis.call('DEL', KEYS[1]) end
return log_id
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# How long an applied commit stays recognisable: far longer than any retry of it can run.
COMMIT_MARKER_TTL_MS = 60_000
# A Redis error reply that means "not now" (memory full, disk failing, a replica, loading,
# failover), not a bug: nothing was written, the request gets a 503 and /readyz fails.
UNAVAILABLE_REPLIES = ("OOM", "MISCONF", "READONLY", "LOADING", "MASTERDOWN", "CLUSTERDOWN")

# user hash fields
COOLDOWN_UNTIL = "cooldown_until"
COOLING_APP = "cooling_off_application"
COOLING_UNTIL = "cooling_off_until"
T4_EXPIRES = "temp_limit_expires_at"
T4_GRANTS = "temp_limit_grants"


def epoch(moment: dt.datetime) -> int:
    return int(moment.timestamp())


def from_epoch(value: Any) -> Optional[dt.datetime]:
    return None if value in (None, b"", "") else dt.datetime.fromtimestamp(int(value), UTC)


def grace_uses(members) -> tuple[dt.datetime, ...]:
    """The times of grace-use members: "<epoch second>:<days>:<use id>", or the older
    "<epoch second>:<days>" (still read: stored uses keep counting)."""
    return tuple(sorted(dt.datetime.fromtimestamp(int(_s(m).split(":", 1)[0]), UTC) for m in members))


# The user's slot: every key of the user gives way to the pending erasure (the receipt to write
# and the index entries to drop), only while the lock is ours. Safe to run twice: a pending
# erasure already there is returned, not replaced. It writes first the key that needs memory:
# under maxmemory Redis refuses a script's first write that needs memory and stops the script,
# while after a first write every command goes through; so it is refused whole or applied whole.
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


@dataclass
class CommitPlan:
    """A UserWrite in Redis commands, applied by COMMIT in one atomic script."""

    app: Optional[str] = None                  # the application record's JSON
    hset: dict[str, str] = field(default_factory=dict)
    hdel: list[str] = field(default_factory=list)
    hincrby: dict[str, int] = field(default_factory=dict)
    apps_add: Optional[dict] = None            # {"score", "member", "trim_before", "ttl"}
    grace_add: Optional[dict] = None
    log: Optional[str] = None                  # the decision-log record (JSON), appended atomically
    keep_lock: bool = False                    # the lock stays held after the commit (release() ends it)
    override: Optional[str] = None             # a four-eyes override's JSON, kept `override_ttl` seconds
    override_ttl: int = 1

    def encode(self, app_ttl: int, user_ttl: int, log_ttl: int) -> list[str]:
        """The COMMIT script's arguments after the token: the small plan, then the raw records."""
        plan = jsontext.dumps({"app_ttl": app_ttl, "hset": self.hset,
                               "hdel": self.hdel, "hincrby": self.hincrby, "user_ttl": user_ttl,
                               "apps_add": self.apps_add or False, "grace_add": self.grace_add or False,
                               # stream ids are the server's milliseconds: older entries are trimmed
                               "log_ttl": log_ttl, "log_minid": str(int((time.time() - log_ttl) * 1000)),
                               "marker_ttl_ms": COMMIT_MARKER_TTL_MS, "keep_lock": self.keep_lock,
                               "override_ttl": self.override_ttl})
        return [plan, self.app or "", self.log or "", self.override or ""]


def record_text(record: StoredApplication, decision_text: Optional[str]) -> str:
    """The record's JSON; a decision already encoded is spliced in as it is (not encoded again)."""
    if decision_text is None:
        return jsontext.dumps(record.doc)
    rest = {k: v for k, v in record.doc.items() if k != "decision"}
    return jsontext.dumps(rest)[:-1] + ',"decision":' + decision_text + "}"


def plan_of(snapshot: UserSnapshot, write: UserWrite) -> CommitPlan:
    """The Redis commands of one UserWrite: the user hash's fields, the sorted sets' members."""
    plan = CommitPlan(log=write.log, keep_lock=write.keep_lock)
    if write.application is not None:
        plan.app = record_text(write.application, write.decision_text)
    if write.override is not None:
        plan.override = jsontext.dumps(write.override.to_dict())
        # a lifetime, not a moment: Redis's clock need not be the service's injected one
        plan.override_ttl = max(1, epoch(write.override.kept_until) - epoch(write.at))
    change = write.change
    if change.cooldown_until:
        plan.hset[COOLDOWN_UNTIL] = str(epoch(change.cooldown_until))
    if change.cooling_off_until:
        plan.hset[COOLING_APP] = snapshot.application_id
        plan.hset[COOLING_UNTIL] = str(epoch(change.cooling_off_until))
    if change.temp_limit_expires_at:
        plan.hset[T4_EXPIRES] = str(epoch(change.temp_limit_expires_at))
        plan.hincrby[T4_GRANTS] = 1
    if write.ends_hold:
        plan.hdel += [COOLING_APP, COOLING_UNTIL]
    if write.lifts_cooldown:
        plan.hdel.append(COOLDOWN_UNTIL)
    if change.count_application:
        plan.apps_add = _timed_add(write.at, snapshot.application_id, write.count_from)
    if write.grace_use is not None:
        use = write.grace_use
        member = f"{epoch(use.at)}:{use.days}" + (f":{use.use_id}" if use.use_id else "")
        plan.grace_add = _timed_add(use.at, member, write.grace_from)
    return plan


def _timed_add(at: dt.datetime, member: str, keep_after: dt.datetime) -> dict:
    """A member scored by its second; the set keeps what is after `keep_after`. An idle set
    expires after twice that span (a calendar window varies by a few days; older members
    are trimmed and never counted, so a longer life costs nothing)."""
    return {"score": epoch(at), "member": member, "trim_before": epoch(keep_after),
            "ttl": 2 * (epoch(at) - epoch(keep_after)) + 86400}


class RedisStateStore(ports.UserStore):
    """The per-user store on a redis-py client (a server or a cluster).

    Every round trip of the stores on it (this one's, and the review, rules and receipt
    stores' that share it) goes through `_do`; given a tracing hook (`spans`), each is a span.
    """

    def __init__(self, client, *, prefix: str = "ld", lock_ttl_ms: int = 5000,
                 lock_wait_s: float = 5.0, retention_days: int = 400,
                 spans: Optional[SpanHook] = None):
        self.client = client
        self._spans = spans
        self.prefix = prefix
        self.lock_ttl_ms = lock_ttl_ms
        self.lock_wait_s = lock_wait_s
        self.user_ttl = retention_days * 86400
        self.app_ttl = retention_days * 86400
        self.log_ttl = retention_days * 86400
        self._begin = client.register_script(_BEGIN)
        self._commit = client.register_script(_COMMIT)
        self._release = client.register_script(_RELEASE)
        self._erase = client.register_script(_ERASE_USER)
        # what a round trip's span is called, by script: the scripts are most of the round trips
        self._script_names = {self._begin: "BEGIN", self._commit: "COMMIT",
                              self._release: "RELEASE", self._erase: "ERASE_USER"}
        self.round_trips = 0   # counted for the benchmarks' "round trips per decision"

    # -- keys -----------------------------------------------------------------------------
    def _base(self, user_id: str) -> str:
        return f"{self.prefix}:{{{quote(user_id, safe='')}}}"

    def keys(self, user_id: str, application_id: Optional[str]) -> list[str]:
        base = self._base(user_id)
        app = f"{base}:app:{quote(application_id, safe='')}" if application_id else f"{base}:app:-"
        return [f"{base}:lock", f"{base}:user", f"{base}:apps", app, f"{base}:grace", f"{base}:log"]

    def override_key(self, user_id: str, override_id: Optional[str]) -> str:
        """A four-eyes override, under its user's hash tag (`-`: a commit that writes none)."""
        return f"{self._base(user_id)}:override:{quote(override_id, safe='') if override_id else '-'}"

    def erasure_key(self, user_id: str) -> str:
        return f"{self._base(user_id)}:erasure"

    # -- the locked step ------------------------------------------------------------------
    def begin(self, user_id: str, application_id: Optional[str],
              windows: Windows) -> Optional[UserSnapshot]:
        """One attempt to take the user's lock and read; None when the lock is held.

        Windows exclude their start (an event exactly one window ago has left it) and include
        `now` (an event in the same second as this one came before it).
        """
        token = secrets.token_hex(16)
        keys = self.keys(user_id, application_id)
        args = [token, self.lock_ttl_ms, epoch(windows.count_from), epoch(windows.now),
                epoch(windows.grace_from)]
        try:
            reply = self._retrying(lambda: self._call(self._begin, keys, args), attempts=2)
        except StoreUnavailable:
            self._release_token(keys[0], token)   # a BEGIN that ran late took the lock: free it
            raise
        if int(reply[0]) != 1:
            return None
        raw_fields, count, app_raw, grace = reply[1], reply[2], reply[3], reply[4]
        fields = {_s(raw_fields[i]): _s(raw_fields[i + 1]) for i in range(0, len(raw_fields), 2)}
        application = StoredApplication(json.loads(app_raw)) if app_raw else None
        state = state_of(fields, int(count), grace_uses(grace))
        return UserSnapshot(user_id, application_id, token, state, bool(fields) or int(count) > 0,
                            application)

    def commit(self, snapshot: UserSnapshot, write: UserWrite) -> None:
        """Apply the write and release the lock in one step (unless it keeps the lock)."""
        override_id = write.override.override_id if write.override is not None else None
        keys = self.keys(snapshot.user_id, snapshot.application_id) + [
            f"{self._base(snapshot.user_id)}:commit:{snapshot.token}",
            self.override_key(snapshot.user_id, override_id)]
        args = [snapshot.token, *plan_of(snapshot, write).encode(self.app_ttl, self.user_ttl, self.log_ttl)]
        self.locked_write(self._commit, keys, args)

    def locked_write(self, script, keys: list[str], args: list) -> Any:
        """Run an idempotent script that writes only while the user's lock (KEYS[1]) holds the
        snapshot's token (ARGV[1]), and answers LOCK_LOST otherwise.

        A call that timed out may still run in Redis: it is retried until its outcome is known,
        for as long as the lock could still let it apply; after that a still-unknown outcome is
        said to be unknown, never "nothing was written".
        """
        try:
            return self._retrying(lambda: self._call(script, keys, args),
                                  seconds=self.lock_ttl_ms / 1000 + 0.5, unknown_after_send=True)
        except redis.ResponseError as exc:
            if "LOCK_LOST" in str(exc):
                raise StoreBusy("the user's lock expired before the commit; nothing was written") from exc
            raise

    def _retrying(self, call, attempts: int = 1_000_000, seconds: float = 60.0,
                  unknown_after_send: bool = False):
        """Run an idempotent script again while Redis does not answer (timeouts, dropped
        connections), up to `attempts` tries or `seconds`. An error reply ends the retries: it
        is the outcome of this try, and of the earlier ones if none of them could be unknown."""
        deadline, unknown = time.monotonic() + seconds, False
        while True:
            try:
                return call()
            except StoreUnavailable as exc:
                if isinstance(exc, StoreRefused) and not unknown:
                    raise
                unknown = unknown or (unknown_after_send and not isinstance(exc, StoreRefused))
                attempts -= 1
                if attempts <= 0 or time.monotonic() >= deadline:
                    if unknown:
                        raise StoreUnavailable(f"the commit's outcome is unknown: {exc}",
                                               outcome_unknown=True) from exc
                    raise
                time.sleep(0.05)

    def release(self, snapshot: UserSnapshot) -> bool:
        """Free the lock if it is still ours. False only when Redis said it was not (it expired
        meanwhile, and another request may have held it since)."""
        return self._release_token(self.keys(snapshot.user_id, None)[0], snapshot.token)

    def _release_token(self, lock_key: str, token: str) -> bool:
        try:
            return bool(self._call(self._release, [lock_key], [token]))
        except StoreUnavailable:
            return True   # not known: the lock's TTL frees it

    # -- reads without the lock -------------------------------------------------------------
    def application(self, user_id: str, application_id: str) -> Optional[StoredApplication]:
        raw = self._do(lambda: self.client.get(self.keys(user_id, application_id)[3]))
        return StoredApplication(json.loads(raw)) if raw else None

    def applications(self, refs: list[tuple[str, str]]) -> list[Optional[StoredApplication]]:
        """The records in one pipeline (their keys may sit on several cluster nodes)."""
        if not refs:
            return []

        def read():
            pipe = self.client.pipeline(transaction=False)
            for user_id, app_id in refs:
                pipe.get(self.keys(user_id, app_id)[3])
            return pipe.execute()

        return [StoredApplication(json.loads(raw)) if raw else None for raw in self._do(read)]

    def state(self, user_id: str, windows: Windows) -> Optional[UserState]:
        _, user, apps, _, grace, _ = self.keys(user_id, None)

        def read():
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(user)
            pipe.zcount(apps, f"({epoch(windows.count_from)}", epoch(windows.now))
            pipe.zrangebyscore(grace, f"({epoch(windows.grace_from)}", "+inf")
            pipe.exists(user, apps, grace)
            return pipe.execute()

        fields, count, grace_members, exists = self._do(read)
        if not exists:
            return None
        return state_of({_s(k): _s(v) for k, v in fields.items()}, int(count), grace_uses(grace_members))

    def pending_override(self, user_id: str, override_id: str) -> Optional[PendingOverride]:
        raw = self._do(lambda: self.client.get(self.override_key(user_id, override_id)))
        return PendingOverride.from_dict(json.loads(raw)) if raw else None

    def all_applications(self) -> Iterator[StoredApplication]:
        """Every application record (the repair path: a full scan, not a request path)."""
        for key in self.client.scan_iter(match=f"{self.prefix}:{{*}}:app:*", count=1000):
            raw = self.client.get(key)
            if raw:
                yield StoredApplication(json.loads(raw))

    def user_keys(self, user_id: str) -> list[str]:
        """Every key of one user (its hash tag), the lock and a pending erasure excepted: found
        by SCAN, so records of applications no index names (refusals by state) are found too."""
        base = self._base(user_id)
        pattern = base.replace("[", "\\[").replace("*", "\\*").replace("?", "\\?") + ":*"
        keys = {_s(k) for k in self._do(lambda: list(self.client.scan_iter(match=pattern, count=1000)))}
        return sorted(k for k in keys if k not in (f"{base}:lock", self.erasure_key(user_id)))

    def inventory(self, user_id: str) -> Optional[UserInventory]:
        keys = self.user_keys(user_id)
        if not keys:
            return None
        base = self._base(user_id)
        apps = [k for k in keys if k.startswith(f"{base}:app:")]
        raws = self._do(lambda: self.client.mget(apps)) if apps else []
        log_key = f"{base}:log"
        records = int(self._do(lambda: self.client.xlen(log_key))) if log_key in keys else 0
        state_items = sum(1 for k in keys if k.rsplit(":", 1)[-1] in ("user", "apps", "grace"))
        return UserInventory(tuple(StoredApplication(json.loads(r)) for r in raws if r), records, state_items)

    # -- erasure ------------------------------------------------------------------------------
    def begin_erasure(self, snapshot: UserSnapshot, pending: dict) -> dict:
        keys = self.user_keys(snapshot.user_id)
        raw = self.locked_write(self._erase, [self.keys(snapshot.user_id, None)[0],
                                              self.erasure_key(snapshot.user_id), *keys],
                                [snapshot.token, json.dumps(pending, ensure_ascii=False), self.log_ttl])
        return json.loads(raw)

    def pending_erasure(self, user_id: str) -> Optional[dict]:
        raw = self._do(lambda: self.client.get(self.erasure_key(user_id)))
        return json.loads(raw) if raw else None

    def end_erasure(self, user_id: str) -> None:
        self._do(lambda: self.client.delete(self.erasure_key(user_id)))

    def forget(self, user_id: str) -> None:
        keys = self.user_keys(user_id)
        if keys:
            self._do(lambda: self.client.delete(*keys))   # one slot: one command

    def view(self, user_id: str, application_ids: set[str]) -> dict:
        _, user, apps, _, grace, _ = self.keys(user_id, None)
        fields = {_s(k): _s(v) for k, v in self.client.hgetall(user).items()}
        records = dict(zip(sorted(application_ids),
                           self.applications([(user_id, a) for a in sorted(application_ids)])))

        def timed(key: str) -> dict:
            return {_s(m): iso_utc(from_epoch(int(s))) for m, s in self.client.zrange(key, 0, -1, withscores=True)}

        return {"state": {k: _field_value(k, v) for k, v in fields.items()}, "counted": timed(apps),
                "grace": timed(grace), "records": {a: r.doc if r else None for a, r in records.items()}}

    def ping(self) -> bool:
        """Whether Redis takes a write now: a PING still answers when it is out of memory,
        read-only or unable to persist, so readiness writes a tiny expiring key."""
        try:
            return bool(self._do(lambda: self.client.set(f"{self.prefix}:health", "1", px=10_000)))
        except StoreUnavailable:
            return False

    # -- plumbing -----------------------------------------------------------------------------
    def _call(self, script, keys, args):
        return self._do(lambda: script(keys=keys, args=args),
                        self._script_names.get(script, "script") if self._spans else "")

    def log_records(self, user_id: str, batch: int = 500) -> list[str]:
        key, start, texts = f"{self._base(user_id)}:log", "-", []
        while True:
            entries = self._do(lambda: self.client.xrange(key, min=start, max="+", count=batch))
            for entry_id, fields in entries:
                raw = fields.get(b"r", fields.get("r"))
                texts.append(raw.decode() if isinstance(raw, bytes) else raw)
            if len(entries) < batch:
                return texts
            last = entries[-1][0]
            start = "(" + (last.decode() if isinstance(last, bytes) else last)

    def _do(self, operation, script: str = ""):
        """One round trip (a command, a pipeline or a script); Redis's failures as the ports'."""
        self.round_trips += 1
        if self._spans is None:
            return self._run(operation)
        attributes = {"db.system.name": "redis"}
        if script:
            attributes.update({"db.operation.name": "EVALSHA", "db.stored_procedure.name": script})
        with self._spans.span(f"redis {script}" if script else "redis", attributes, kind="client"):
            return self._run(operation)

    def _run(self, operation):
        try:
            return operation()
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis unavailable: {type(exc).__name__}: {exc}") from exc
        except redis.ResponseError as exc:
            if not refused(exc):
                raise   # LOCK_LOST, or a bug in a script: not Redis's state
            raise StoreRefused(f"Redis refused: {type(exc).__name__}: {exc}") from exc


def state_of(fields: dict[str, str], applications_in_window: int,
             uses: tuple[dt.datetime, ...]) -> UserState:
    """The user hash's fields (epoch seconds as text) as the state the rules read."""
    return UserState(
        applications_6m=applications_in_window,
        cooldown_until=from_epoch(fields.get(COOLDOWN_UNTIL)),
        cooling_off_application=fields.get(COOLING_APP) or None,
        cooling_off_until=from_epoch(fields.get(COOLING_UNTIL)),
        temp_limit_expires_at=from_epoch(fields.get(T4_EXPIRES)),
        temp_limit_grants=int(fields.get(T4_GRANTS) or 0),
        grace_uses=uses,
    )


_TIME_FIELDS = (COOLDOWN_UNTIL, COOLING_UNTIL, T4_EXPIRES)


def _field_value(name: str, value: str) -> Any:
    """A hash field as the ports' view shows it: times in ISO, counts as numbers."""
    if name in _TIME_FIELDS:
        return iso_utc(from_epoch(value))
    return int(value) if name == T4_GRANTS else value


def refused(exc: redis.ResponseError) -> bool:
    """Whether an error reply is Redis saying "not now" rather than "this is wrong"."""
    if isinstance(exc, (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError)):
        return True
    return str(exc).lstrip("-").split(" ", 1)[0].upper() in UNAVAILABLE_REPLIES


def _s(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
