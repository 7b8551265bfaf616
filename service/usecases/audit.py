"""Audited admin actions on a user (API.md "Audited overrides and erasure"): lifting a 90-day
window (by one operator, or by two: asked by one, applied by another, "Four eyes on
overrides"), and erasing a user's personal data on request (PIPL art. 47).

A four-eyes override is kept under the user's keys (PendingOverride), with a pointer from its id
to its user outside them (OverrideIndex), written first: a pointer without its override is an
unknown override. The approval reads it under the user's lock and commits it applied with the
lifted window and the log record, or writes nothing.

Both are decision-log records. An override is committed with the state change like a decision.
An erasure removes the user's log with everything else, so its record goes with its receipt
(the erasure stream), holding no user id: only the keyed hash of it under which an active window
is kept (ErasedWindows), so erasure is no way around the 90-day rule.

The user's data, the receipt with its log record, and the review index are in different places
(on Redis Cluster, different slots): no one step writes them all. So an erasure is a job a retry
can finish, all under the user's lock (no decision interleaves):
(0) an active window is kept under the keyed hash (no personal data; a later decision sees it);
(1) one step swaps everything held of the user for the pending erasure (UserStore.begin_erasure);
(2) the receipt and its log record are written together, once; (3) the index entries go;
(4) the pending erasure goes. A failure before (1) applied has changed nothing of the user (503
`store_unavailable`). After it the user is gone (404 to reads) and the rest is tried again for
as long as the lock lasts; still unfinished, the answer is 503 `outcome_unknown`, and the next
DELETE finds the pending erasure, finishes it and answers with its receipt.
"""
from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import replace
from typing import Callable, Optional

from service.domain.decision import iso_utc
from service.domain.overrides import APPLIED, EXPIRED, PendingOverride
from service.domain.privacy import erasure_subject, mask_free_text
from service.domain.review import LIFT_COOLDOWN
from service.usecases import log_records
from service.usecases.decide import Decisions
from service.domain.userstate import UserState
from service.usecases.errors import Conflict, Forbidden, NotFound
from service.usecases.ports import (
    ErasedWindows,
    OverrideIndex,
    Receipts,
    UserInventory,
    UserSnapshot,
    UserWrite,
)
from service.usecases.reviews_index import CaseIndex, case_entry
from service.usecases.unit_of_work import finish


Window = Callable[[], UserState]   # the state with its active window, or Conflict


class ErasureOff(RuntimeError):
    """No ERASURE_HMAC_SECRET: a window could not be kept, so nothing is erased."""


class Audit:
    """Overrides and erasures, over the decisions' unit of work and the erasure's own stores."""

    def __init__(self, decisions: Decisions, erased: ErasedWindows, receipts: Receipts,
                 cases: CaseIndex, erasure_secret: Optional[bytes] = None,
                 overrides: Optional[OverrideIndex] = None):
        self.decisions, self.erased, self.receipts, self.cases = decisions, erased, receipts, cases
        self.overrides = overrides
        self.work, self.rules = decisions.work, decisions.rules
        self.secret = erasure_secret

    def _subject(self, user_id: str) -> Optional[str]:
        return erasure_subject(self.secret, user_id) if self.secret else None

    # -- overrides ------------------------------------------------------------------------------
    def lift_cooldown(self, user_id: str, operator_id: str, reason: str) -> dict:
        """End an active 90-day window now (a wrongly applied refusal); 409 when none is active.
        One operator's word: the single-admin-key service's override."""
        def write(snapshot: UserSnapshot, now: dt.datetime, window: Window) -> UserWrite:
            log = log_records.log_text(log_records.override_record(
                user_id, now, self.rules.version, LIFT_COOLDOWN, operator_id, reason, window()))
            return UserWrite(at=now, lifts_cooldown=True, log=log)

        return self._lift(user_id, write)

    def request_override(self, user_id: str, operator_id: str, reason: str,
                         override_id: Optional[str] = None) -> dict:
        """The first operator of a four-eyes override: the override waits, pending, for another
        operator (approve_override); the user's state is not touched. 409 when no window is
        active now (there would be nothing to approve). `override_id`: a logged request's own
        (a simulation asks again what the log asked)."""
        subject = self._subject(user_id)

        def step(snapshot: UserSnapshot, now: dt.datetime):
            state = self._active_window(user_id, snapshot.state, now, subject, {})
            asked = PendingOverride.ask(LIFT_COOLDOWN, operator_id, reason, now)
            if override_id is not None:
                asked = replace(asked, override_id=override_id)
            self._index().point(asked.override_id, user_id, asked.kept_until - now)   # alone, a dead end
            log = log_records.log_text(log_records.override_request_record(
                user_id, self.rules.version, asked, state))
            return asked.answer(), UserWrite(at=now, override=asked, log=log)

        return self.work.run(user_id, None, step)

    def approve_override(self, override_id: str, operator_id: str) -> dict:
        """The second operator applies a pending override: in the one step that lifts the window
        and logs it, the override is marked applied, so two approvers racing apply it once.
        404 unknown, 409 applied or expired (or no window left), Forbidden to its requester."""
        user_id = self._index().user_of(override_id)
        if user_id is None:
            raise NotFound(f"no override {override_id!r}")

        def write(snapshot: UserSnapshot, now: dt.datetime, window: Window) -> UserWrite:
            asked = self._approvable(user_id, override_id, operator_id, now)
            log = log_records.log_text(log_records.override_record(
                user_id, now, self.rules.version, asked.action, operator_id, asked.reason,
                window(), asked))
            return UserWrite(at=now, lifts_cooldown=True, override=asked.approved(operator_id, now),
                             log=log)

        return self._lift(user_id, write)

    def _approvable(self, user_id: str, override_id: str, operator_id: str,
                    now: dt.datetime) -> PendingOverride:
        """The pending override, read under the user's lock, if this operator may apply it now."""
        asked = self.work.store.pending_override(user_id, override_id)
        if asked is None:   # its user was erased, or it was forgotten
            raise NotFound(f"no override {override_id!r}")
        status = asked.status(now)
        if status == APPLIED:
            raise Conflict(f"override {override_id!r} was already applied at {iso_utc(asked.approved_at)}")
        if operator_id == asked.requested_by:
            raise Forbidden("an override takes two operators: its requester cannot approve it")
        if status == EXPIRED:
            raise Conflict(f"override {override_id!r} expired at {iso_utc(asked.expires_at)}")
        return asked

    def _lift(self, user_id: str, write_of: Callable[[UserSnapshot, dt.datetime, Window], UserWrite]) -> dict:
        """End the user's window with the write `write_of` makes, under the user's lock; the
        window it ends may be an erased user's kept one, dropped once the write is committed."""
        subject, kept = self._subject(user_id), {}

        def step(snapshot: UserSnapshot, now: dt.datetime):
            window = lambda: self._active_window(user_id, snapshot.state, now, subject, kept)  # noqa: E731
            return None, write_of(snapshot, now, window)

        self.work.run(user_id, None, step)
        if kept.get("until"):
            self.erased.drop(subject)
        try:
            return self.decisions.user_state(user_id)
        except NotFound:   # an erased user whose kept window was lifted: no state left to show
            return {"user_id": user_id, "reapply_after": None}

    def _active_window(self, user_id: str, state: UserState, now: dt.datetime,
                       subject: Optional[str], kept: dict) -> UserState:
        """The state with its active 90-day window (the user's, or an erased user's kept one,
        noted in `kept`); Conflict when there is none."""
        if state.in_cooldown(now):
            return state
        kept["until"] = self.erased.until(subject, now) if subject else None
        if kept["until"] is None:
            raise Conflict(f"user {user_id!r} has no active 90-day window")
        return replace(state, cooldown_until=kept["until"])

    def _index(self) -> OverrideIndex:
        if self.overrides is None:
            raise RuntimeError("four-eyes overrides need an OverrideIndex")
        return self.overrides

    # -- erasure --------------------------------------------------------------------------------
    def erase(self, user_id: str, operator_id: str, reason: str) -> dict:
        """Erase everything held of the user, keep an active window, write the receipt."""
        if self.secret is None:
            raise ErasureOff("erasure is off: set ERASURE_HMAC_SECRET (the key of kept windows)")
        store = self.work.store

        def step(snapshot: UserSnapshot, now: dt.datetime):
            pending = store.pending_erasure(user_id)   # a retry of an erasure cut short
            if pending is None:
                pending = self._begin(snapshot, now, operator_id, reason)
            finish(lambda: self._finish(user_id, pending), seconds=store.lock_ttl_ms / 1000)
            return pending["receipt"], None

        return self.work.run(user_id, None, step)

    def _begin(self, snapshot: UserSnapshot, now: dt.datetime, operator_id: str, reason: str) -> dict:
        """Steps (0) and (1): the window kept, then everything of the user replaced by the
        pending erasure."""
        store, user_id = self.work.store, snapshot.user_id
        found = store.inventory(user_id)
        if found is None:   # nothing of the user (an erased one's kept window is not the user's data)
            raise NotFound(f"no data for user {user_id!r}")
        subject = self._subject(user_id)
        state = snapshot.state
        until = state.cooldown_until if state.in_cooldown(now) else None
        until = max(filter(None, (until, self.erased.until(subject, now))), default=None)
        if until is not None:   # kept before anything goes: a decision after this sees it
            self.erased.keep(subject, until)
        receipt = _receipt(now, operator_id, reason, _counts(found), until)
        record = log_records.erasure_record(receipt, subject, iso_utc(until) if until else None,
                                            self.rules.version)
        cases = [case_entry(r) for r in found.applications if r.is_open_case()]
        pending = {"receipt": receipt, "log": log_records.log_text(record), "cases": cases}
        return store.begin_erasure(snapshot, pending)

    def _finish(self, user_id: str, pending: dict) -> None:
        """Steps (2) to (4), each safe to run again."""
        self.receipts.save(pending["receipt"], pending["log"])
        self.cases.queue.remove(pending["cases"])
        self.work.store.end_erasure(user_id)

    def receipt(self, receipt_id: str) -> dict:
        found = self.receipts.load(receipt_id)
        if found is None or "erased_at" not in found:   # an export's receipt is not an erasure's
            raise NotFound(f"no erasure receipt {receipt_id!r}")
        return found


def _counts(found: UserInventory) -> dict:
    return {"applications": len(found.applications),
            "review_cases": sum(1 for r in found.applications
                                if r.decision["outcome"] == "review" or r.requested_by_applicant),
            "log_records": found.log_records,
            "state_keys": found.state_items}


def _receipt(now: dt.datetime, operator_id: str, reason: str, counts: dict,
             until: Optional[dt.datetime]) -> dict:
    """Who, when, why and how much; no personal data: the operator's text is masked as the log
    masks (ID and phone numbers, a name after a word that announces one)."""
    return {"receipt_id": "er_" + secrets.token_hex(12), "erased_at": iso_utc(now),
            "operator_id": mask_free_text(operator_id), "reason": mask_free_text(reason),
            "erased": counts, "window_kept": until is not None}
