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
    """Erase the user's keys, keep an active window under the keyed hash, write the receipt."""
    windows = _windows(service)
    if windows is None:
        raise ErasureOff("erasure is off: set ERASURE_HMAC_SECRET (the key of kept windows)")
    store, found = service.store, {}

    def step(snapshot, now: dt.datetime):
        keys = user_keys(store, user_id)
        if not keys:   # nothing of the user (an erased one's kept window is not the user's data)
            raise NotFound(f"no data for user {user_id!r}")
        state = snapshot.state()
        until = state.cooldown_until if state.in_cooldown(now) else None
        until = max(filter(None, (until, windows.until(user_id, now))), default=None)
        found.update(_inventory(store, user_id, keys), now=now, until=until)
        if until is not None:   # kept before anything goes: a decision after this sees it
            windows.keep(windows.subject(user_id), until)
        store._do(lambda: store.client.delete(*keys))   # one slot: one command
        return None, None

    service.run_locked(user_id, None, step)
    _forget_cases(store, found["cases"])
    return _receipt(service, windows.subject(user_id), found, operator_id, reason)


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


def _forget_cases(store, members: list[str]) -> None:
    try:
        ReviewIndex(store).remove(members)
    except StoreUnavailable:   # left stale: a listing drops an entry whose record is gone
        pass


def _receipt(service: DecisionService, subject: str, found: dict, operator_id: str,
             reason: str) -> dict:
    receipt = {"receipt_id": "er_" + secrets.token_hex(12), "erased_at": iso_utc(found["now"]),
               "operator_id": operator_id, "reason": reason, "erased": found["counts"],
               "window_kept": found["until"] is not None}
    until = iso_utc(found["until"]) if found["until"] else None
    record = decision_log.erasure_record(receipt, subject, until, service.rules_version)
    Receipts(service.store).save(receipt, decision_log.encode(record))
    return receipt


def receipt(service: DecisionService, receipt_id: str) -> dict:
    found = Receipts(service.store).load(receipt_id)
    if found is None:
        raise NotFound(f"no erasure receipt {receipt_id!r}")
    return found
