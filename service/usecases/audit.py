"""Audited admin actions on a user (API.md "Audited overrides and erasure"): lifting a 90-day
window, and erasing a user's personal data on request (PIPL art. 47).

Both are decision-log records. An override is committed with the state change like a decision.
An erasure deletes the user's log stream with everything else, so its record goes to the
erasure stream (`ld:{#erasures}:log`), holding no user id: only the keyed hash of it under which
an active window is kept (ErasedWindows), so erasure is no way around the 90-day rule.
"""
from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import replace
from typing import Optional

from service.adapters import decision_log
from service.adapters.review_store import (
    ErasedWindows,
    PendingErasures,
    Receipts,
    ReviewIndex,
    entry,
    pending_case,
    user_keys,
)
from service.adapters.state_store import (
    COOLDOWN_UNTIL,
    CommitPlan,
    StoreUnavailable,
    epoch,
)
from service.domain.decision import iso_utc, parse_iso_utc
from service.domain.privacy import mask_free_text
from service.domain.review import LIFT_COOLDOWN
from service.usecases.decide import Conflict, DecisionService, NotFound


class ErasureOff(RuntimeError):
    """No ERASURE_HMAC_SECRET: a window could not be kept, so nothing is erased."""


def _windows(service: DecisionService) -> Optional[ErasedWindows]:
    return ErasedWindows(service.store, service.erasure_secret) if service.erasure_secret else None


# -- overrides ------------------------------------------------------------------------------------
def lift_cooldown(service: DecisionService, user_id: str, operator_id: str, reason: str) -> dict:
    """End an active 90-day window now (a wrongly applied refusal); 409 when none is active."""
    windows = _windows(service)
    kept = {}

    def step(snapshot, now: dt.datetime):
        state = snapshot.state()
        if not state.in_cooldown(now):
            kept["until"] = windows.until(user_id, now) if windows else None
            if kept["until"] is None:
                raise Conflict(f"user {user_id!r} has no active 90-day window")
            state = replace(state, cooldown_until=kept["until"])
        plan = CommitPlan(hdel=[COOLDOWN_UNTIL])
        plan.log = decision_log.encode(decision_log.override_record(
            user_id, now, service.rules_version, LIFT_COOLDOWN, operator_id, reason, state))
        return None, plan

    service.run_locked(user_id, None, step)
    if kept.get("until"):
        windows.drop(user_id)
    try:
        return service.user_state(user_id)
    except NotFound:   # an erased user whose kept window was lifted: no state left to show
        return {"user_id": user_id, "reapply_after": None}


# -- erasure ----------------------------------------------------------------------------------------
def erase(service: DecisionService, user_id: str, operator_id: str, reason: str) -> dict:
    """Erase the user's keys, keep an active window under the keyed hash, write the receipt.

    The user's keys, the receipt with its log record, and the review index are in different
    cluster slots: no one script writes them all. So an erasure is a job a retry can finish:
    (0) an active window is kept under the keyed hash (no personal data; a later decision sees
    it); (1) one script in the user's slot swaps every key of the user for the pending erasure;
    (2) one script in the erasure slot writes the receipt and its log record; (3) the index
    entries go; (4) the pending erasure goes. A failure before (1) applied has changed nothing
    of the user (503 `store_unavailable`). After it the user is gone (404 to reads) and the rest
    is tried again for as long as the lock lasts; still unfinished, the answer is 503
    `outcome_unknown`, and the next DELETE finds the pending erasure, finishes it and answers
    with its receipt. All under the user's lock, so no decision of the user interleaves.
    """
    windows = _windows(service)
    if windows is None:
        raise ErasureOff("erasure is off: set ERASURE_HMAC_SECRET (the key of kept windows)")
    store, pending_erasures = service.store, PendingErasures(service.store)

    def step(snapshot, now: dt.datetime):
        pending = pending_erasures.find(user_id)   # a retry of an erasure cut short
        if pending is None:
            pending = _begin_erasure(service, windows, pending_erasures, snapshot, now,
                                     operator_id, reason)
        try:
            store._retrying(lambda: _finish_erasure(store, pending_erasures, user_id, pending),
                            seconds=store.lock_ttl_ms / 1000, refused_too=True)
        except StoreUnavailable as exc:
            raise StoreUnavailable(f"the erasure is not finished: {exc}", outcome_unknown=True) from exc
        return pending["receipt"], None

    return service.run_locked(user_id, None, step)


def _begin_erasure(service: DecisionService, windows: ErasedWindows, pending_erasures: PendingErasures,
                   snapshot, now: dt.datetime, operator_id: str, reason: str) -> dict:
    """Steps (0) and (1): the window kept, then the user's keys replaced by the pending erasure."""
    store, user_id = service.store, snapshot.user_id
    keys = user_keys(store, user_id)
    if not keys:   # nothing of the user (an erased one's kept window is not the user's data)
        raise NotFound(f"no data for user {user_id!r}")
    state = snapshot.state()
    until = state.cooldown_until if state.in_cooldown(now) else None
    until = max(filter(None, (until, windows.until(user_id, now))), default=None)
    found = _inventory(store, user_id, keys)
    subject = windows.subject(user_id)
    if until is not None:   # kept before anything goes: a decision after this sees it
        windows.keep(subject, until)
    receipt = _receipt(now, operator_id, reason, found["counts"], until)
    record = decision_log.erasure_record(receipt, subject, iso_utc(until) if until else None,
                                         service.rules_version)
    pending = {"receipt": receipt, "log": decision_log.encode(record), "cases": found["cases"]}
    return pending_erasures.begin(snapshot, keys, pending)


def _finish_erasure(store, pending_erasures: PendingErasures, user_id: str, pending: dict) -> None:
    """Steps (2) to (4), each safe to run again."""
    Receipts(store).save(pending["receipt"], pending["log"])
    ReviewIndex(store).remove(pending["cases"])
    pending_erasures.end(user_id)


def _inventory(store, user_id: str, keys: list[str]) -> dict:
    """What is about to go: counts for the receipt, and the open cases to drop from the index."""
    base = store._base(user_id)
    apps = [k for k in keys if k.startswith(f"{base}:app:")]
    docs = [json.loads(raw) for raw in store._do(lambda: store.client.mget(apps)) if raw] if apps else []
    log_key = f"{base}:log"
    records = int(store._do(lambda: store.client.xlen(log_key))) if log_key in keys else 0
    cases = [entry(d["user_id"], d["application_id"], epoch(parse_iso_utc(d["decision"]["decided_at"])))
             for d in docs if pending_case(d)]
    return {"counts": {"applications": len(docs),
                       "review_cases": sum(1 for d in docs if d["decision"]["outcome"] == "review"),
                       "log_records": records,
                       "state_keys": sum(1 for k in keys if k.rsplit(":", 1)[-1] in ("user", "apps", "grace"))},
            "cases": cases}


def _receipt(now: dt.datetime, operator_id: str, reason: str, counts: dict,
             until: Optional[dt.datetime]) -> dict:
    """Who, when, why and how much; no personal data: the operator's text is masked as the log
    masks (ID and phone numbers, a name after a word that announces one)."""
    return {"receipt_id": "er_" + secrets.token_hex(12), "erased_at": iso_utc(now),
            "operator_id": mask_free_text(operator_id), "reason": mask_free_text(reason),
            "erased": counts, "window_kept": until is not None}


def receipt(service: DecisionService, receipt_id: str) -> dict:
    found = Receipts(service.store).load(receipt_id)
    if found is None:
        raise NotFound(f"no erasure receipt {receipt_id!r}")
    return found
