"""The use cases of a client app: decide, cancel (T2), record a grace use (T5), read an
application (as stored, or explained to its applicant) or a user's state.

Each one that writes runs as one unit of work under the user's lock (UserWork): read the state,
decide with the policy, commit the record, the state change and the log record together, or
write nothing. Entry points (HTTP, CLI) call these and only translate; nothing here knows
Flask or Redis. The writes themselves (`decision_write`, `cancel_write`, `grace_write`) are
plain functions: the simulation and the rebuild apply the very writes the service makes.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass, replace
from typing import Any, Mapping, Optional

from schemas.request import canonical_request
from service.domain.application import StoredApplication
from service.domain.decision import iso_utc
from service.domain.explanation import explain
from service.domain.policy import Policy
from service.domain.privacy import erasure_subject
from service.domain.userstate import StateChange, UserState
from service.usecases import jsontext, log_records
from service.usecases.errors import Conflict, NotFound
from service.usecases.live_rules import LiveRules
from service.usecases.ports import ErasedWindows, GraceUse, UserSnapshot, UserWrite
from service.usecases.reviews_index import CaseIndex
from service.usecases.unit_of_work import UserWork, windows_at


def raw_payload_digest(payload: Mapping[str, Any]) -> str:
    """The digest records written before canonical_request held: the JSON exactly as sent."""
    canonical = jsontext.dumps(payload, sort_keys=True)   # json.dumps' text, faster
    return hashlib.sha256(canonical.encode()).hexdigest()


def payload_digest(payload: Mapping[str, Any]) -> str:
    """The same application sent again is recognised by this digest of the valid request in
    canonical form: a retry that writes `4000.0` for `4000`, or a default out, is the same."""
    return raw_payload_digest(canonical_request(payload))


def same_request(stored_digest: str, payload: Mapping[str, Any], digest: Optional[str] = None) -> bool:
    """Whether a stored record was made by this request: by the canonical digest (`digest`, when
    the caller has it already), or by the raw one (records written before it), worked out only
    when the canonical one differs."""
    return stored_digest == (digest or payload_digest(payload)) \
        or stored_digest == raw_payload_digest(payload)


@dataclass(frozen=True)
class DecideResult:
    decision: dict
    replayed: bool   # True: the stored decision of an earlier identical request
    body: str = ""   # the decision as JSON, encoded once for the record, the log and the response
    # (request, state, now) a shadow evaluates after the response is sent (rule_changes)
    shadow_input: Optional[tuple] = None

    def json(self) -> str:
        return self.body or jsontext.dumps(self.decision)


# -- the writes ------------------------------------------------------------------------------------
def decision_write(policy: Policy, payload: Mapping[str, Any], decision: dict, change: StateChange,
                   now: dt.datetime, decision_text: Optional[str] = None,
                   digest: Optional[str] = None, log: Optional[str] = None,
                   keep_lock: bool = False) -> UserWrite:
    """One decision's writes: its application record and its state change (and, from the
    service, its log record and whether the lock outlives the commit)."""
    record = {"application_id": decision["application_id"], "user_id": decision["user_id"],
              "payload_sha256": digest or payload_digest(payload)}
    if decision["outcome"] == "review":   # a review case keeps what a reviewer decides on
        record["case"] = {"request": dict(payload)}
    record.update(decision=decision, cancelled_at=None)
    return UserWrite(at=now, application=StoredApplication(record), decision_text=decision_text,
                     change=change, count_from=policy.count_window_start(now), log=log,
                     keep_lock=keep_lock)


def cancel_write(snapshot: UserSnapshot, now: dt.datetime) -> tuple[StoredApplication, UserWrite]:
    """A cancel's writes: the record cancelled; the hold ends if it is this application's."""
    record = snapshot.application.with_changes(cancelled_at=iso_utc(now))
    holds = snapshot.state.cooling_off_application == snapshot.application_id
    return record, UserWrite(at=now, application=record, ends_hold=holds)


def grace_write(policy: Policy, days: int, now: dt.datetime, use_id: Optional[str]) -> UserWrite:
    """One use. Without the use id, uses in one second were one: the limit counted them once;
    records written before it existed (no use_id) rebuild as they were."""
    return UserWrite(at=now, grace_use=GraceUse(now, days, use_id),
                     grace_from=windows_at(policy, now).grace_from)


class Decisions:
    """The client app's use cases over one user store, the live rules and the review queue."""

    def __init__(self, work: UserWork, rules: LiveRules, cases: CaseIndex,
                 erased: ErasedWindows, erasure_secret: Optional[bytes] = None):
        self.work, self.rules, self.cases = work, rules, cases
        self.erased, self.erasure_secret = erased, erasure_secret
        self.evaluations = 0   # decisions made by this process (not replays): for tests and metrics

    @property
    def clock(self):
        return self.work.clock

    # -- decide -------------------------------------------------------------------------------------
    def decide(self, payload: Mapping[str, Any], request: Mapping[str, Any]) -> DecideResult:
        digest = payload_digest(payload)

        def step(snapshot: UserSnapshot, now: dt.datetime):
            stored = snapshot.application
            if stored is not None:
                if not same_request(stored.payload_sha256, payload, digest):
                    raise Conflict(f"application {request['application_id']!r} was already decided "
                                   "with a different payload")
                return DecideResult(stored.decision, replayed=True), None
            state, restored = self._with_erased_window(snapshot, now)
            policy, arm = self.rules.policy_for(request["user_id"])
            outcome = policy.evaluate(request, state, now)
            self.evaluations += outcome.evaluated
            change = replace(outcome.change, cooldown_until=restored) if restored else outcome.change
            decision = outcome.decision.to_dict()
            if arm is not None:
                decision["arm"] = arm
            body = jsontext.dumps(decision)
            log = log_records.encode_decision_record(payload, state, now, decision, body, change,
                                                     outcome.evaluated)
            write = decision_write(policy, payload, decision, change, now, body, digest, log,
                                   keep_lock=decision["outcome"] == "review")   # its index entry is added under it
            shadow = (request, state, now) if self.rules.shadowing else None
            return DecideResult(decision, replayed=False, body=body, shadow_input=shadow), write

        return self.work.run(request["user_id"], request["application_id"], step,
                             then=self._index_case)

    def _index_case(self, result: DecideResult, snapshot: UserSnapshot) -> None:
        self.cases.open_then_release(result.decision, lambda: self.work.store.release(snapshot))

    def _with_erased_window(self, snapshot: UserSnapshot,
                            now: dt.datetime) -> tuple[UserState, Optional[dt.datetime]]:
        """The state, with an erased user's kept 90-day window when the user looks new (no
        state, no application in the T3 window: what an erased user looks like). Read under the
        lock (an erasure holds it while it keeps the window) and written back into the state by
        this decision, so an erased user's window is read once, and a known user's never."""
        state = snapshot.state
        if snapshot.known or not self.erasure_secret:
            return state, None
        until = self.erased.until(erasure_subject(self.erasure_secret, snapshot.user_id), now)
        if until is None or state.in_cooldown(now):
            return state, None
        return replace(state, cooldown_until=until), until

    # -- cancel (T2) ------------------------------------------------------------------------------
    def cancel(self, user_id: str, application_id: str) -> dict:
        def step(snapshot: UserSnapshot, now: dt.datetime):
            stored = snapshot.application
            if stored is None or stored.user_id != user_id:
                raise NotFound(f"no application {application_id!r} for user {user_id!r}")
            status = stored.status_at(now)
            if status == "cancelled":
                return stored.view(now), None
            if status != "cooling_off":
                raise Conflict(f"application {application_id!r} is {status}: only a loan in its "
                               "cooling-off window can be cancelled")
            record, write = cancel_write(snapshot, now)
            log = log_records.log_text(log_records.cancel_record(user_id, application_id, now,
                                                                 self.rules.version))
            return record.view(now), replace(write, log=log)

        return self.work.run(user_id, application_id, step)

    # -- T5 grace -----------------------------------------------------------------------------------
    def use_grace(self, user_id: str, days: int) -> dict:
        grace = self.rules.policy.book.time.grace
        if not 1 <= days <= grace.max_days:
            raise ValueError(f"days must be between 1 and {grace.max_days}")

        def step(snapshot: UserSnapshot, now: dt.datetime):
            if len(snapshot.state.grace_uses) >= grace.max_uses:
                raise Conflict(f"{grace.max_uses} grace uses in the last {grace.period_days} days "
                               "already; no more are allowed yet")
            use_id = secrets.token_hex(8)
            log = log_records.log_text(log_records.grace_record(user_id, days, now,
                                                                self.rules.version, use_id))
            return None, replace(grace_write(self.rules.policy, days, now, use_id), log=log)

        self.work.run(user_id, None, step)
        return self.user_state(user_id)

    # -- reads ------------------------------------------------------------------------------------
    def application(self, user_id: str, application_id: str, with_request: bool = False) -> dict:
        """The application view; `with_request`: a review case's request too (for a reviewer)."""
        stored = self._own_application(user_id, application_id)
        view = stored.view(self.clock.now())
        case = stored.doc.get("case")
        if with_request and case and case.get("request") is not None:
            view["request"] = case["request"]
        return view

    def explanation(self, user_id: str, application_id: str, lang: str) -> dict:
        """The decision explained to its applicant, in the words of the rules version that
        made it (a later version's wording or deadlines never rewrite what was decided)."""
        stored = self._own_application(user_id, application_id)
        book = self.rules.book_of(stored.decision["rules_version"])
        return explain(stored, book, lang, self.clock.now())

    def _own_application(self, user_id: str, application_id: str) -> StoredApplication:
        """The user's application; another user's is as unknown as one never sent (404)."""
        stored = self.work.store.application(user_id, application_id)
        if stored is None or stored.user_id != user_id:
            raise NotFound(f"no application {application_id!r} for user {user_id!r}")
        return stored

    def user_state(self, user_id: str) -> dict:
        now = self.clock.now().replace(microsecond=0)
        policy = self.rules.policy
        state = self.work.store.state(user_id, windows_at(policy, now))
        if state is None:
            raise NotFound(f"no state for user {user_id!r}")
        return state_view(policy, user_id, state, now)


def state_view(policy: Policy, user_id: str, state: UserState, now: dt.datetime) -> dict:
    """GET /users/<id>/state: the state as the rules see it at `now`."""
    time_rules = policy.book.time
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
