"""Human review: list the pending cases, close one with a reviewer's outcome (API.md "Human review").

Closing runs under the user's lock like a decision: the application record gains its `review`
entry, the state change (T2 hold or the 90-day window, from review time) and the log record
are one COMMIT. Two reviewers closing one case are serialised by that lock: the first commits,
the second finds the case reviewed and gets the same 200 if it sent the same body, else a 409.
The pending index is updated after the commit (see service.adapters.review_store).
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Optional

from marshmallow import ValidationError

from schemas.request import DecideRequestSchema
from service.adapters import decision_log
from service.adapters.review_store import (
    ReviewIndex,
    decode_cursor,
    encode_cursor,
    entry,
    parse_entry,
    pending_case,
    scan_records,
)
from service.adapters.state_store import (
    COOLDOWN_UNTIL,
    COOLING_APP,
    COOLING_UNTIL,
    CommitPlan,
    StoreUnavailable,
    epoch,
)
from service.domain.decision import iso_utc, parse_iso_utc
from service.domain.review import review_effects
from service.domain.userstate import StateChange, state_from_dict
from service.usecases.decide import Conflict, DecisionService, NotFound

REVIEW_INPUT = ("reviewer_id", "outcome", "reason_codes", "note")


@dataclass(frozen=True)
class ReviewResult:
    view: dict
    replayed: bool   # True: the same review sent again


def review(service: DecisionService, application_id: str, data: dict) -> ReviewResult:
    """Close the review case of (`data["user_id"]`, `application_id`) with the reviewer's input."""
    user_id = data["user_id"]
    given = {name: data[name] for name in REVIEW_INPUT}

    def step(snapshot, now: dt.datetime):
        stored = snapshot.application
        if stored is None or stored.doc["user_id"] != user_id:
            raise NotFound(f"no application {application_id!r} for user {user_id!r}")
        done = stored.doc.get("review")
        if done:
            if {name: done[name] for name in REVIEW_INPUT} != given:
                raise Conflict(f"application {application_id!r} was already reviewed differently")
            return ReviewResult(stored.view(now), replayed=True), None
        if stored.decision["outcome"] != "review":
            raise Conflict(f"application {application_id!r} is {stored.status_at(now)}, not in review")
        if "case" not in stored.doc:   # decided before cases kept their request
            raise Conflict(f"application {application_id!r} was decided before review cases kept "
                           "the request; decide it again under a new application_id")
        request = stored.doc["case"]["request"]
        state = snapshot.state()
        outcome = review_effects(service.policy, _load(service, request), state, now,
                                 given["outcome"], given["reason_codes"])
        record = {**given, "reviewed_at": iso_utc(now), "rules_version": service.rules_version,
                  **outcome[0]}
        doc = dict(stored.doc, review=record)
        plan = plan_review(service, snapshot, doc, outcome[1])
        plan.log = decision_log.encode(decision_log.review_record(
            user_id, application_id, now, service.rules_version, request, state, record, outcome[1]))
        return ReviewResult(type(stored)(doc).view(now), replayed=False), plan

    result = service.run_locked(user_id, application_id, step)
    decided = epoch(parse_iso_utc(result.view["decision"]["decided_at"]))
    try:
        ReviewIndex(service.store).remove([entry(user_id, application_id, decided)])
    except StoreUnavailable:   # a stale entry: the next listing drops it (its record says reviewed)
        pass
    return result


def _load(service: DecisionService, request: dict) -> dict:
    """The stored request as the rules read it (the schema of the live rules version)."""
    try:
        return DecideRequestSchema(term_ranges=service.policy.book.term_ranges()).load(request)
    except ValidationError as exc:
        raise Conflict(f"the application's request is not valid under the live rules: {exc.messages}") from None


def plan_review(service: DecisionService, snapshot, doc: dict, change: StateChange) -> CommitPlan:
    """The writes of one review: the record with its review, and the state change."""
    plan = CommitPlan(app={"value": json.dumps(doc, ensure_ascii=False, separators=(",", ":")),
                           "ttl": service.store.app_ttl})
    if change.cooldown_until:
        plan.hset[COOLDOWN_UNTIL] = str(epoch(change.cooldown_until))
    if change.cooling_off_until:
        plan.hset[COOLING_APP] = doc["application_id"]
        plan.hset[COOLING_UNTIL] = str(epoch(change.cooling_off_until))
    return plan


def replay_review(policy, record: dict, request: dict) -> tuple[dict, StateChange]:
    """The effects a review record's inputs give under `policy` (replay compares them)."""
    state = state_from_dict(record["state"])
    review_doc = record["review"]
    return review_effects(policy, request, state, parse_iso_utc(record["at"]),
                          review_doc["outcome"], review_doc["reason_codes"])


# -- listing ------------------------------------------------------------------------------------
def pending(service: DecisionService, limit: int, cursor: Optional[str]) -> dict:
    """Pending cases oldest first, `limit` at most, after `cursor`; stale entries are dropped."""
    index = ReviewIndex(service.store)
    after = decode_cursor(cursor) if cursor else None
    items: list[dict] = []
    last, exhausted = after, False
    for _ in range(10):   # bounded: each round drops what it found stale
        members = index.page(last, limit - len(items))
        if not members:
            exhausted = True
            break
        docs = index.records(members)
        stale = [m for m, doc in zip(members, docs) if not pending_case(doc)]
        index.remove(stale)
        items += [_item(doc) for doc in docs if pending_case(doc)]
        last = members[-1]
        if len(items) >= limit:
            break
    more = not exhausted and last is not None and bool(index.page(last, 1))
    return {"items": items, "next_cursor": encode_cursor(last) if more else None}


def _item(doc: dict) -> dict:
    decision = doc["decision"]
    return {"application_id": doc["application_id"], "user_id": doc["user_id"],
            "product": decision["product"], "amount": doc.get("case", {}).get("request", {}).get("amount"),
            "reason_codes": [r["code"] for r in decision["reasons"]],
            "decided_at": decision["decided_at"]}


def repair(service: DecisionService) -> dict:
    """Re-add every open case the index lacks (an add lost between commit and index)."""
    index, added, found = ReviewIndex(service.store), 0, 0
    for doc in scan_records(service.store):
        if not pending_case(doc):
            continue
        found += 1
        member = entry(doc["user_id"], doc["application_id"],
                       epoch(parse_iso_utc(doc["decision"]["decided_at"])))
        if service.store.client.zscore(index.key, member) is None:
            index.add(*parse_entry(member)[1:], parse_entry(member)[0])
            added += 1
    return {"pending": found, "added": added}
