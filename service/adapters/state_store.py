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
from typing import Any, Optional
from urllib.parse import quote

import redis
from redis.exceptions import RedisClusterException

from service.adapters import jsontext
from service.domain.review import final_status
from service.domain.userstate import UserState

UTC = dt.timezone.utc


class StoreUnavailable(RuntimeError):
    """Redis cannot be reached or did not answer in time: the request gets a 503.

    `outcome_unknown`: a commit was sent and never confirmed nor refused within the retry
    bound, so it may have been applied (a retry of the same application gets its decision).
    """

    def __init__(self, message: str, outcome_unknown: bool = False):
        super().__init__(message)
        self.outcome_unknown = outcome_unknown


class StoreRefused(StoreUnavailable):
    """Redis answered "not now" (memory full, disk failing, a read-only replica, loading):
    the command was refused before it wrote anything."""


class StoreBusy(RuntimeError):
    """The user's lock could not be had in time: the request gets a 503 with Retry-After."""


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


@dataclass(frozen=True)
class StoredApplication:
    """An application's stored record: its decision, the payload that made it, its status."""

    doc: dict

    @property
    def payload_sha256(self) -> str:
        return self.doc["payload_sha256"]

    @property
    def decision(self) -> dict:
        return self.doc["decision"]

    def status_at(self, now: dt.datetime) -> str:
        """approved | rejected | review | cooling_off | released | cancelled."""
        if self.doc.get("cancelled_at"):
            return "cancelled"
        if self.doc.get("review"):
            return final_status(self.doc["review"], now)
        decision = self.decision
        if decision["outcome"] == "cooling_off":
            release = dt.datetime.fromisoformat(decision["funds_available_at"].replace("Z", "+00:00"))
            return "cooling_off" if now < release else "released"
        return decision["outcome"]

    def view(self, now: dt.datetime) -> dict:
        view = {"application_id": self.doc["application_id"], "user_id": self.doc["user_id"],
                "status": self.status_at(now), "cancelled_at": self.doc.get("cancelled_at"),
                "decision": self.decision}
        review = self.doc.get("review")
        if review:   # a reviewed case (issue 11): the reviewer's outcome and its effects
            view["review"] = review
            for name in ("offer", "funds_available_at", "cancel_until", "reapply_after"):
                view[name] = review[name]
        return view


@dataclass
class UserSnapshot:
    """What BEGIN read under the user's lock."""

    user_id: str
    application_id: Optional[str]
    token: str
    fields: dict[str, str]
    applications_in_window: int
    grace_uses: tuple[dt.datetime, ...]
    application: Optional[StoredApplication]

    def state(self) -> UserState:
        f = self.fields
        return UserState(
            applications_6m=self.applications_in_window,
            cooldown_until=from_epoch(f.get(COOLDOWN_UNTIL)),
            cooling_off_application=f.get(COOLING_APP) or None,
            cooling_off_until=from_epoch(f.get(COOLING_UNTIL)),
            temp_limit_expires_at=from_epoch(f.get(T4_EXPIRES)),
            temp_limit_grants=int(f.get(T4_GRANTS) or 0),
            grace_uses=self.grace_uses,
        )


@dataclass
class CommitPlan:
    """The writes of one step, applied by COMMIT in one atomic script."""

    app: Optional[dict] = None                 # {"value": json, "ttl": seconds}
    hset: dict[str, str] = field(default_factory=dict)
    hdel: list[str] = field(default_factory=list)
    hincrby: dict[str, int] = field(default_factory=dict)
    apps_add: Optional[dict] = None            # {"score", "member", "trim_before", "ttl"}
    grace_add: Optional[dict] = None
    log: Optional[str] = None                  # the decision-log record (JSON), appended atomically
    keep_lock: bool = False                    # the lock stays held after the commit (release() ends it)

    def encode(self, user_ttl: int, log_ttl: int) -> list[str]:
        """The COMMIT script's arguments after the token: the small plan, then the raw records."""
        plan = jsontext.dumps({"app_ttl": self.app["ttl"] if self.app else 0, "hset": self.hset,
                               "hdel": self.hdel, "hincrby": self.hincrby, "user_ttl": user_ttl,
                               "apps_add": self.apps_add or False, "grace_add": self.grace_add or False,
                               # stream ids are the server's milliseconds: older entries are trimmed
                               "log_ttl": log_ttl, "log_minid": str(int((time.time() - log_ttl) * 1000)),
                               "marker_ttl_ms": COMMIT_MARKER_TTL_MS, "keep_lock": self.keep_lock})
        return [plan, self.app["value"] if self.app else "", self.log or ""]


class RedisStateStore:
    """The state store on a redis-py client (server, cluster or fakeredis)."""

    def __init__(self, client, *, prefix: str = "ld", lock_ttl_ms: int = 5000,
                 lock_wait_s: float = 5.0, retention_days: int = 400):
        self.client = client
        self.prefix = prefix
        self.lock_ttl_ms = lock_ttl_ms
        self.lock_wait_s = lock_wait_s
        self.user_ttl = retention_days * 86400
        self.app_ttl = retention_days * 86400
        self.log_ttl = retention_days * 86400
        self._begin = client.register_script(_BEGIN)
        self._commit = client.register_script(_COMMIT)
        self._release = client.register_script(_RELEASE)
        self.round_trips = 0   # counted for the benchmarks' "round trips per decision"

    # -- keys -----------------------------------------------------------------------------
    def _base(self, user_id: str) -> str:
        return f"{self.prefix}:{{{quote(user_id, safe='')}}}"

    def keys(self, user_id: str, application_id: Optional[str]) -> list[str]:
        base = self._base(user_id)
        app = f"{base}:app:{quote(application_id, safe='')}" if application_id else f"{base}:app:-"
        return [f"{base}:lock", f"{base}:user", f"{base}:apps", app, f"{base}:grace", f"{base}:log"]

    # -- the locked step ------------------------------------------------------------------
    def begin(self, user_id: str, application_id: Optional[str], count_from: dt.datetime,
              now: dt.datetime, grace_from: dt.datetime) -> Optional[UserSnapshot]:
        """One attempt to take the user's lock and read; None when the lock is held.

        Windows exclude their start (an event exactly one window ago has left it) and include
        `now` (an event in the same second as this one came before it).
        """
        token = secrets.token_hex(16)
        keys = self.keys(user_id, application_id)
        args = [token, self.lock_ttl_ms, epoch(count_from), epoch(now), epoch(grace_from)]
        try:
            reply = self._retrying(lambda: self._call(self._begin, keys, args), attempts=2)
        except StoreUnavailable:
            self._release_token(keys[0], token)   # a BEGIN that ran late took the lock: free it
            raise
        if int(reply[0]) != 1:
            return None
        raw_fields, count, app_raw, grace = reply[1], reply[2], reply[3], reply[4]
        fields = {_s(raw_fields[i]): _s(raw_fields[i + 1]) for i in range(0, len(raw_fields), 2)}
        uses = grace_uses(grace)
        application = StoredApplication(json.loads(app_raw)) if app_raw else None
        return UserSnapshot(user_id, application_id, token, fields, int(count), uses, application)

    def commit(self, snapshot: UserSnapshot, plan: CommitPlan) -> Optional[str]:
        """Apply the plan and release the lock in one step (unless the plan keeps it); returns
        the log entry's id."""
        keys = self.keys(snapshot.user_id, snapshot.application_id) + [
            f"{self._base(snapshot.user_id)}:commit:{snapshot.token}"]
        args = [snapshot.token, *plan.encode(self.user_ttl, self.log_ttl)]
        log_id = self.locked_write(self._commit, keys, args)
        return _s(log_id) if log_id else None

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
                  unknown_after_send: bool = False, refused_too: bool = False):
        """Run an idempotent script again while Redis does not answer (timeouts, dropped
        connections), up to `attempts` tries or `seconds`. An error reply ends the retries: it
        is the outcome of this try, and of the earlier ones if none of them could be unknown.
        `refused_too`: a "not now" is tried again as well (work that must be finished, not
        refused: what is left of an erasure whose deletion applied)."""
        deadline, unknown = time.monotonic() + seconds, False
        while True:
            try:
                return call()
            except StoreUnavailable as exc:
                if isinstance(exc, StoreRefused) and not unknown and not refused_too:
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

    def lock_wait_deadline(self) -> float:
        return time.monotonic() + self.lock_wait_s

    # -- reads without the lock -------------------------------------------------------------
    def application(self, user_id: str, application_id: str) -> Optional[StoredApplication]:
        raw = self._do(lambda: self.client.get(self.keys(user_id, application_id)[3]))
        return StoredApplication(json.loads(raw)) if raw else None

    def snapshot(self, user_id: str, count_from: dt.datetime, now: dt.datetime,
                 grace_from: dt.datetime) -> Optional[UserSnapshot]:
        _, user, apps, _, grace, _ = self.keys(user_id, None)

        def read():
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(user)
            pipe.zcount(apps, f"({epoch(count_from)}", epoch(now))
            pipe.zrangebyscore(grace, f"({epoch(grace_from)}", "+inf")
            pipe.exists(user, apps, grace)
            return pipe.execute()

        fields, count, grace_members, exists = self._do(read)
        if not exists:
            return None
        uses = grace_uses(grace_members)
        return UserSnapshot(user_id, None, "", {_s(k): _s(v) for k, v in fields.items()},
                            int(count), uses, None)

    def ping(self) -> bool:
        """Whether Redis takes a write now: a PING still answers when it is out of memory,
        read-only or unable to persist, so readiness writes a tiny expiring key."""
        try:
            return bool(self._do(lambda: self.client.set(f"{self.prefix}:health", "1", px=10_000)))
        except StoreUnavailable:
            return False

    # -- plumbing -----------------------------------------------------------------------------
    def _call(self, script, keys, args):
        return self._do(lambda: script(keys=keys, args=args))

    def _do(self, operation):
        self.round_trips += 1
        try:
            return operation()
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis unavailable: {type(exc).__name__}: {exc}") from exc
        except redis.ResponseError as exc:
            if not refused(exc):
                raise   # LOCK_LOST, or a bug in a script: not Redis's state
            raise StoreRefused(f"Redis refused: {type(exc).__name__}: {exc}") from exc


def refused(exc: redis.ResponseError) -> bool:
    """Whether an error reply is Redis saying "not now" rather than "this is wrong"."""
    if isinstance(exc, (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError)):
        return True
    return str(exc).lstrip("-").split(" ", 1)[0].upper() in UNAVAILABLE_REPLIES


def _s(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
