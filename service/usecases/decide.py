"""The use cases: decide, cancel, read an application or a user's state, record a grace use.

Each one that writes runs as one unit of work under the user's lock: read the state, decide
with the policy, commit the record and the state change together, or write nothing.
Entry points (HTTP, CLI) call these and only translate; nothing here knows Flask.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Optional, TypeVar

from schemas.request import canonical_request
from service.adapters import decision_log, jsontext
from service.adapters.review_store import ErasedWindows, drop_case_if_gone, open_case_in_index
from service.adapters.rule_engine import policy_for
from service.adapters.rules_control import active_key
from service.adapters.state_store import (
    COOLDOWN_UNTIL,
    COOLING_APP,
    COOLING_UNTIL,
    T4_EXPIRES,
    T4_GRANTS,
    CommitPlan,
    RedisStateStore,
    StoreBusy,
    StoreUnavailable,
    UserSnapshot,
    epoch,
)
from service.domain.clock import Clock, SystemClock
from service.domain.decision import iso_utc
from service.domain.policy import Policy
from service.domain.userstate import StateChange, UserState

T = TypeVar("T")


class NotFound(LookupError):
    pass


class Conflict(RuntimeError):
    pass


def raw_payload_digest(payload: Mapping[str, Any]) -> str:
    """The digest records written before canonical_request held: the JSON exactly as sent."""
    canonical = jsontext.dumps(payload, sort_keys=True)   # json.dumps' text, faster
    return hashlib.sha256(canonical.encode()).hexdigest()


def payload_digest(payload: Mapping[str, Any]) -> str:
    """The same application sent again is recognised by this digest of the valid request in
    canonical form: a retry that writes `4000.0` for `4000`, or a default out, is the same."""
    return raw_payload_digest(canonical_request(payload))


def same_request(stored_digest: str, payload: Mapping[str, Any]) -> bool:
    """Whether a stored record was made by this request: by the canonical digest, or by the
    raw one (records written before it)."""
    return stored_digest in (payload_digest(payload), raw_payload_digest(payload))


@dataclass(frozen=True)
class DecideResult:
    decision: dict
    replayed: bool   # True: the stored decision of an earlier identical request
    body: str = ""   # the decision as JSON, encoded once for the record, the log and the response
    # (request, state, now) a shadow evaluates after the response is sent (rule_changes)
    shadow_input: Optional[tuple] = None

    def json(self) -> str:
        return self.body or _dumps(self.decision)


def _dumps(value: Any) -> str:
    return jsontext.dumps(value)


class DecisionService:
    def __init__(self, policy: Policy, store: RedisStateStore, clock: Clock | None = None):
        self.policy = policy
        self.store = store
        self.clock = clock or SystemClock()
        self.evaluations = 0   # decisions made by this process (not replays): for tests and metrics
        self._archived = False
        self.rules_sync_interval = 1.0
        self._next_sync = 0.0
        self.erasure_secret: Optional[bytes] = None   # HMAC key of erased users' windows (issue 11)
        self.arms = None   # rule_changes.Arms: challenger and shadow, synced with the active version

    @property
    def rules_version(self) -> str:
        return self.policy.version

    # -- the unit of work ---------------------------------------------------------------------
    def run_locked(self, user_id: str, application_id: Optional[str],
                   step: Callable[[UserSnapshot, dt.datetime], tuple[T, Optional[CommitPlan]]],
                   now: Optional[dt.datetime] = None,
                   then: Optional[Callable[[T, UserSnapshot], None]] = None) -> T:
        """Take the user's lock (waiting for it), run `step`, commit its plan or write nothing.

        `now` fixes the time (a rebuild applies records at their own times); by default the
        clock is read at each attempt, so the holder's time is after the previous holder's.
        `then` runs after the commit of a plan that keeps the lock, and releases it: work outside
        the user's keys that the user's next request must find done.
        """
        fixed = now
        deadline = self.store.lock_wait_deadline()
        pause = 0.001
        while True:
            now = (fixed or self.clock.now()).replace(microsecond=0)
            snapshot = self.store.begin(user_id, application_id, self.policy.count_window_start(now),
                                        now, now - dt.timedelta(days=self.policy.book.time.grace.period_days))
            if snapshot is not None:
                break
            if time.monotonic() > deadline:
                raise StoreBusy("another request for this user is in progress; try again")  # no id: it may be personal data
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
        released = False
        try:
            result, plan = step(snapshot, now)
            if plan is not None:
                self.store.commit(snapshot, plan)
                released = not plan.keep_lock
                if then is not None and not released:
                    released = True
                    then(result, snapshot)
            return result
        finally:
            if not released:
                self.store.release(snapshot)

    # -- decide ---------------------------------------------------------------------------------
    def decide(self, payload: Mapping[str, Any], request: Mapping[str, Any]) -> DecideResult:
        digest = payload_digest(payload)

        def step(snapshot: UserSnapshot, now: dt.datetime):
            stored = snapshot.application
            if stored is not None:
                if not same_request(stored.payload_sha256, payload):
                    raise Conflict(f"application {request['application_id']!r} was already decided "
                                   "with a different payload")
                return DecideResult(stored.decision, replayed=True), None
            state, restored = self._with_erased_window(snapshot, now)
            policy, arm = self.arms.policy_for(self.policy, request["user_id"]) if self.arms \
                else (self.policy, None)
            outcome = policy.evaluate(request, state, now)
            self.evaluations += outcome.evaluated
            change = replace(outcome.change, cooldown_until=restored) if restored else outcome.change
            decision = outcome.decision.to_dict()
            if arm is not None:
                decision["arm"] = arm
            body = _dumps(decision)
            plan = self.plan_decision(payload, decision, change, now, body, digest)
            plan.log = decision_log.encode_decision_record(payload, state, now, decision, body,
                                                          change, outcome.evaluated)
            plan.keep_lock = decision["outcome"] == "review"   # its index entry is added under it
            shadow = (request, state, now) if self.arms and self.arms.shadow else None
            return DecideResult(decision, replayed=False, body=body, shadow_input=shadow), plan

        return self.run_locked(request["user_id"], request["application_id"], step,
                               then=self._index_case)

    def _index_case(self, result: DecideResult, snapshot: UserSnapshot) -> None:
        """A new review case enters the pending index before the user's lock is released: an
        erasure, which takes the same lock, then always finds the entry and drops it. (Added
        after the lock, an erasure could run in between and the entry name an erased user.)"""
        try:
            open_case_in_index(self.store, result.decision)
        finally:
            held = self.store.release(snapshot)
        if not held:   # the lock expired before the add: an erasure may have run meanwhile
            drop_case_if_gone(self.store, result.decision)

    def _with_erased_window(self, snapshot: UserSnapshot,
                            now: dt.datetime) -> tuple[UserState, Optional[dt.datetime]]:
        """The state, with an erased user's kept 90-day window (issue 11) when the user looks new
        (no state hash, no application in the T3 window: what an erased user looks like). Read
        under the lock (an erasure holds it while it keeps the window) and written back into the
        hash by this decision, so an erased user's window is read once, and a known user's never."""
        state = snapshot.state()
        if snapshot.fields or snapshot.applications_in_window or not self.erasure_secret:
            return state, None
        until = ErasedWindows(self.store, self.erasure_secret).until(snapshot.user_id, now)
        if until is None or state.in_cooldown(now):
            return state, None
        return replace(state, cooldown_until=until), until

    def plan_decision(self, payload: Mapping[str, Any], decision: dict, change: StateChange,
                      now: dt.datetime, decision_json: Optional[str] = None,
                      digest: Optional[str] = None) -> CommitPlan:
        """The writes of one decision: its application record and its state change."""
        record = {"application_id": decision["application_id"], "user_id": decision["user_id"],
                  "payload_sha256": digest or payload_digest(payload)}
        if decision["outcome"] == "review":   # a review case keeps what a reviewer decides on
            record["case"] = {"request": dict(payload)}
        value = (_dumps(record)[:-1] + ',"decision":' + (decision_json or _dumps(decision))
                 + ',"cancelled_at":null}')
        time_rules = self.policy.book.time
        plan = CommitPlan(app={"value": value, "ttl": self.store.app_ttl})
        if change.count_application:
            plan.apps_add = {"score": epoch(now), "member": decision["application_id"],
                             "trim_before": epoch(self.policy.count_window_start(now)),
                             "ttl": (time_rules.application_count_months * 31 + 1) * 86400}
        if change.cooldown_until:
            plan.hset[COOLDOWN_UNTIL] = str(epoch(change.cooldown_until))
        if change.cooling_off_until:
            plan.hset[COOLING_APP] = decision["application_id"]
            plan.hset[COOLING_UNTIL] = str(epoch(change.cooling_off_until))
        if change.temp_limit_expires_at:
            plan.hset[T4_EXPIRES] = str(epoch(change.temp_limit_expires_at))
            plan.hincrby[T4_GRANTS] = 1
        return plan

    # -- cancel (T2) ------------------------------------------------------------------------------
    def cancel(self, user_id: str, application_id: str) -> dict:
        def step(snapshot: UserSnapshot, now: dt.datetime):
            stored = snapshot.application
            if stored is None or stored.doc["user_id"] != user_id:
                raise NotFound(f"no application {application_id!r} for user {user_id!r}")
            status = stored.status_at(now)
            if status == "cancelled":
                return stored.view(now), None
            if status != "cooling_off":
                raise Conflict(f"application {application_id!r} is {status}: only a loan in its "
                               "cooling-off window can be cancelled")
            record, plan = self.plan_cancel(snapshot, now)
            plan.log = decision_log.encode(decision_log.cancel_record(
                user_id, application_id, now, self.rules_version))
            return type(stored)(record).view(now), plan

        return self.run_locked(user_id, application_id, step)

    def plan_cancel(self, snapshot: UserSnapshot, now: dt.datetime) -> tuple[dict, CommitPlan]:
        record = dict(snapshot.application.doc, cancelled_at=iso_utc(now))
        plan = CommitPlan(app={"value": _dumps(record),
                               "ttl": self.store.app_ttl})
        if snapshot.fields.get(COOLING_APP) == snapshot.application_id:
            plan.hdel = [COOLING_APP, COOLING_UNTIL]
        return record, plan

    # -- T5 grace -----------------------------------------------------------------------------------
    def use_grace(self, user_id: str, days: int) -> dict:
        grace = self.policy.book.time.grace
        if not 1 <= days <= grace.max_days:
            raise ValueError(f"days must be between 1 and {grace.max_days}")

        def step(snapshot: UserSnapshot, now: dt.datetime):
            if len(snapshot.grace_uses) >= grace.max_uses:
                raise Conflict(f"{grace.max_uses} grace uses in the last {grace.period_days} days "
                               "already; no more are allowed yet")
            use_id = secrets.token_hex(8)
            plan = self.plan_grace(days, now, use_id)
            plan.log = decision_log.encode(decision_log.grace_record(user_id, days, now,
                                                                   self.rules_version, use_id))
            return None, plan

        self.run_locked(user_id, None, step)
        return self.user_state(user_id)

    def plan_grace(self, days: int, now: dt.datetime, use_id: Optional[str]) -> CommitPlan:
        """One use, as the member "<epoch second>:<days>:<use id>" scored by its second.

        Without the use id, uses in one second were one member: the limit counted them once.
        Records written before it existed (no use_id) rebuild to the old "<second>:<days>".
        """
        grace = self.policy.book.time.grace
        member = f"{epoch(now)}:{days}" + (f":{use_id}" if use_id else "")
        return CommitPlan(grace_add={
            "score": epoch(now), "member": member,
            "trim_before": epoch(now - dt.timedelta(days=grace.period_days)),
            "ttl": (grace.period_days + 1) * 86400})

    # -- reads ------------------------------------------------------------------------------------
    def application(self, user_id: str, application_id: str) -> dict:
        stored = self.store.application(user_id, application_id)
        if stored is None or stored.doc["user_id"] != user_id:
            raise NotFound(f"no application {application_id!r} for user {user_id!r}")
        return stored.view(self.clock.now())

    def user_state(self, user_id: str) -> dict:
        now = self.clock.now().replace(microsecond=0)
        time_rules = self.policy.book.time
        snapshot = self.store.snapshot(user_id, self.policy.count_window_start(now), now,
                                       now - dt.timedelta(days=time_rules.grace.period_days))
        if snapshot is None:
            raise NotFound(f"no state for user {user_id!r}")
        state = snapshot.state()
        t4 = time_rules.temporary_limit
        return {
            "user_id": user_id,
            "as_of": iso_utc(now),
            "applications_6m": state.applications_6m,
            "reapply_after": iso_utc(state.cooldown_until) if state.in_cooldown(now) else None,
            "cooling_off": {"application_id": state.cooling_off_application,
                            "funds_available_at": iso_utc(state.cooling_off_until)}
            if state.cooling_off_pending(now) else None,
            "temporary_limit": {
                "active": state.temp_limit_active(now),
                "expires_at": iso_utc(state.temp_limit_expires_at) if state.temp_limit_expires_at else None,
                "grants_used": state.temp_limit_grants,
                "grants_left": max(t4.max_grants - state.temp_limit_grants, 0)},
            "grace": {"uses_in_period": len(state.grace_uses),
                      "uses_left": max(time_rules.grace.max_uses - len(state.grace_uses), 0),
                      "uses": [iso_utc(u) for u in state.grace_uses]},
        }

    def archive_rules(self) -> bool:
        """Store this rules version by its hash, so replays can find it; retried until it works."""
        if self._archived:
            return True
        from service.adapters.rules_archive import RulesArchive

        try:
            self.store._do(lambda: RulesArchive(self.store.client, self.store.prefix).save(self.policy.book))
        except StoreUnavailable:
            return False
        self._archived = True
        return True

    # -- rules versions ---------------------------------------------------------------------------
    def _active_key(self) -> str:
        return active_key(self.store.prefix)

    def publish_active(self, version: str) -> None:
        """Make `version` the one every worker runs (it must be archived first)."""
        self.store._do(lambda: self.store.client.set(self._active_key(), version))

    def use_policy(self, policy: Policy) -> None:
        self.policy = policy

    def sync_rules(self, force: bool = False) -> bool:
        """Switch to the active version if another worker published a new one. At most one
        Redis read a second; if Redis cannot say, the current rules stay."""
        from service.adapters.rules_archive import RulesArchive

        now = time.monotonic()
        if not force and now < self._next_sync:
            return False
        self._next_sync = now + self.rules_sync_interval
        try:
            active = self.store._do(self._read_active)
            active = active.decode() if isinstance(active, bytes) else active
            if not active or active == self.rules_version:
                return False
            book = self.store._do(lambda: RulesArchive(self.store.client, self.store.prefix).load(active))
        except StoreUnavailable:
            return False
        if book is None:
            return False
        self.use_policy(policy_for(book))
        return True

    def _read_active(self):
        """The active version; with rule changes on, their settings in the same round trip."""
        if self.arms is None:
            return self.store.client.get(self._active_key())
        pipe = self.store.client.pipeline(transaction=False)
        pipe.get(self._active_key())
        self.arms.read(pipe)
        active, *rest = pipe.execute()
        self.arms.apply(rest, self)
        return active

    def ready(self) -> bool:
        return self.store.ping() and self.archive_rules()
