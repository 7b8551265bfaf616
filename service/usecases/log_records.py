"""The decision log's records: one per decision, cancel, grace use, human-review request, review,
claim or note at the reviewers' desk, override (and four-eyes override request), erasure and export
of a user's data.

A record holds everything a replay needs: the request as sent, the per-user state the rules
saw, the clock time used, the rules version, the full decision (outcome, reasons, offer,
trace) and the state change it made. The use cases build them; the unit of work appends each
with the write it records (UserWrite.log), so state and log never disagree. Their field order
is the export's. A record written while a request is served ends with that request's
`trace_id` (request_trace): it says which request wrote it, not what was decided, so replay,
rebuild and simulation never read it.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from service.domain.decision import iso_utc
from service.domain.overrides import PendingOverride
from service.domain.userstate import StateChange, UserState, change_to_dict, state_to_dict
from service.usecases import jsontext, request_trace

# 2: review, override and erasure records; version-1 lines still replay and rebuild
FORMAT_VERSION = 2


def encode_decision_record(payload: Mapping[str, Any], state: UserState, now: dt.datetime,
                           decision: dict, decision_json: str, change: StateChange,
                           evaluated: bool) -> str:
    """The log record of one decision, as the JSON line it is stored and exported as.

    Its field order is the export's. The decision's JSON is spliced in as given: it is encoded
    once per request and shared with the response and the application record.
    """
    head = jsontext.dumps({"v": FORMAT_VERSION, "kind": "decision", "at": iso_utc(now),
                           "user_id": decision["user_id"], "application_id": decision["application_id"],
                           "rules_version": decision["rules_version"], "evaluated": evaluated,
                           "request": dict(payload), "state": state_to_dict(state)})
    return _with_trace(head[:-1] + ',"decision":' + decision_json + ',"change":'
                       + jsontext.dumps(change_to_dict(change)) + "}")


def cancel_record(user_id: str, application_id: str, now: dt.datetime, rules_version: str) -> dict:
    return {"v": FORMAT_VERSION, "kind": "cancel", "at": iso_utc(now), "user_id": user_id,
            "application_id": application_id, "rules_version": rules_version}


def grace_record(user_id: str, days: int, now: dt.datetime, rules_version: str,
                 use_id: str) -> dict:
    """`use_id` makes the use's state member unique (two uses in one second are two uses) and
    lets a rebuild write the very member the service wrote."""
    return {"v": FORMAT_VERSION, "kind": "grace", "at": iso_utc(now), "user_id": user_id,
            "application_id": None, "rules_version": rules_version, "days": days,
            "use_id": use_id}


def review_record(user_id: str, application_id: str, now: dt.datetime, rules_version: str,
                  request: Mapping[str, Any], state: UserState, review: dict,
                  change: StateChange, applicant_case: Optional[dict] = None,
                  lifts_cooldown: bool = False) -> dict:
    """A reviewer closed a case: the request and state the effects were computed from, the
    reviewer's input and the effects (`review`), and the state change, as a replay needs them.
    A case the applicant asked for adds `applicant_case` (the window its refusal opened) and
    whether the approval ended that window (`lifts_cooldown`)."""
    record = {"v": FORMAT_VERSION, "kind": "review", "at": iso_utc(now), "user_id": user_id,
              "application_id": application_id, "rules_version": rules_version,
              "request": dict(request), "state": state_to_dict(state), "review": review,
              "change": change_to_dict(change)}
    if applicant_case is not None:
        record.update(applicant_case=applicant_case, lifts_cooldown=lifts_cooldown)
    return record


def human_review_record(user_id: str, application_id: str, now: dt.datetime, decision: Mapping,
                        request: Mapping[str, Any], statement: Optional[str],
                        deadline: dt.datetime) -> dict:
    """The applicant asked for a person instead of the rules: under the rules version that made
    the decision (its `human_review_days` set the deadline), with the decision's time and the
    request the reviewer will decide on, as a replay and a rebuild need them."""
    return {"v": FORMAT_VERSION, "kind": "human_review", "at": iso_utc(now), "user_id": user_id,
            "application_id": application_id, "rules_version": decision["rules_version"],
            "requested_by": "applicant", "statement": statement,
            "decided_at": decision["decided_at"], "deadline": iso_utc(deadline),
            "request": dict(request)}


def desk_record(kind: str, user_id: str, application_id: str, now: dt.datetime,
                rules_version: str, reviewer_id: str, **fields: Any) -> dict:
    """A step at the reviewers' desk: a claim taken or released (`review_claim`, with its
    `action` and `until`) or a note added (`review_note`, with its `text`). They decide
    nothing: a replay has nothing to recompute, a rebuild and a simulation write them again."""
    return {"v": FORMAT_VERSION, "kind": kind, "at": iso_utc(now), "user_id": user_id,
            "application_id": application_id, "rules_version": rules_version,
            "reviewer_id": reviewer_id, **fields}


def export_record(receipt: dict, subject: Optional[str], rules_version: str) -> dict:
    """A copy of a user's data was handed out: kept with its receipt (as an erasure's), so it
    outlives an erasure of the user; no user id, only the keyed hash when erasure is on."""
    return {"v": FORMAT_VERSION, "kind": "export", "at": receipt["exported_at"], "user_id": "",
            "application_id": None, "rules_version": rules_version,
            "receipt_id": receipt["receipt_id"], "operator_id": receipt["operator_id"],
            "reason": receipt["reason"], "exported": receipt["exported"], "subject": subject}


def override_record(user_id: str, now: dt.datetime, rules_version: str, action: str,
                    operator_id: str, reason: str, state: UserState,
                    asked: Optional[PendingOverride] = None) -> dict:
    """An override applied: by one operator, or (`asked`) by the second of a four-eyes override,
    who is `operator_id` and `approved_by`; the reason is the requester's."""
    record = {"v": FORMAT_VERSION, "kind": "override", "at": iso_utc(now), "user_id": user_id,
              "application_id": None, "rules_version": rules_version, "action": action,
              "operator_id": operator_id, "reason": reason, "state": state_to_dict(state)}
    if asked is not None:
        record.update(override_id=asked.override_id, requested_by=asked.requested_by,
                      approved_by=operator_id)
    return record


def override_request_record(user_id: str, rules_version: str, asked: PendingOverride,
                            state: UserState) -> dict:
    """The first operator of a four-eyes override asked for it: it changes no state; the state
    is the one it was asked on (a window was active), as a replay checks it."""
    return {"v": FORMAT_VERSION, "kind": "override_request", "at": iso_utc(asked.requested_at),
            "user_id": user_id, "application_id": None, "rules_version": rules_version,
            "action": asked.action, "override_id": asked.override_id,
            "requested_by": asked.requested_by, "reason": asked.reason,
            "expires_at": iso_utc(asked.expires_at), "state": state_to_dict(state)}


def erasure_record(receipt: dict, subject: str, window_until: Optional[str],
                   rules_version: str) -> dict:
    """An erasure, kept in the erasure stream: no user id, only the keyed hash (`subject`) the
    kept window is stored under; `user_id` is empty so the export's ordering holds."""
    return {"v": FORMAT_VERSION, "kind": "erasure", "at": receipt["erased_at"], "user_id": "",
            "application_id": None, "rules_version": rules_version,
            "receipt_id": receipt["receipt_id"], "operator_id": receipt["operator_id"],
            "reason": receipt["reason"], "erased": receipt["erased"], "subject": subject,
            "window_until": window_until}


def encode(record: Mapping[str, Any]) -> str:
    """A record as it is stored: the export writes the records it reads back with it."""
    return jsontext.dumps(record)


def log_text(record: Mapping[str, Any]) -> str:
    """A record being written now, as its log line: with the trace id of the request writing
    it, if any, as its last field."""
    return _with_trace(jsontext.dumps(record))


def _with_trace(text: str) -> str:
    """`text` (a JSON object) with the served request's trace id spliced in last: 32 hex
    digits (the HTTP app accepts no other), so no escaping is needed."""
    trace_id = request_trace.trace_id.get()
    if trace_id is None:
        return text
    return text[:-1] + ',"trace_id":"' + trace_id + '"}'


# -- the fields analysts filter on -----------------------------------------------------------------
@dataclass(frozen=True)
class AnalystFields:
    """What a record says in the fields analysts filter on, wherever its kind keeps them: the
    typed columns of the Parquet export (beside the record's full text). None where the kind has
    no such field (a cancel has no product, a grace use no outcome)."""
    kind: str
    at: str
    user_id: Optional[str]
    application_id: Optional[str]
    product: Optional[str]
    outcome: Optional[str]
    reason_codes: Optional[tuple[str, ...]]
    rules_version: Optional[str]
    arm: Optional[str]
    trace_id: Optional[str] = None   # the W3C trace of the request that wrote it, if one did


def analyst_fields(record: Mapping[str, Any]) -> AnalystFields:
    """A decision's outcome, reasons and arm are its response's; a review's are the reviewer's
    (the outcome and the codes given); the product is the request's."""
    kind = record["kind"]
    request = record.get("request") if isinstance(record.get("request"), Mapping) else {}
    outcome = codes = arm = None
    if kind == "decision":
        decision = record["decision"]
        outcome, arm = decision.get("outcome"), decision.get("arm")
        codes = tuple(reason["code"] for reason in decision.get("reasons", ()))
    elif kind == "review":
        outcome = record["review"].get("outcome")
        codes = tuple(record["review"].get("reason_codes") or ())
    return AnalystFields(kind=kind, at=record["at"], user_id=record.get("user_id"),
                         application_id=record.get("application_id"),
                         product=request.get("product"), outcome=outcome, reason_codes=codes,
                         rules_version=record.get("rules_version"), arm=arm,
                         trace_id=record.get("trace_id"))
