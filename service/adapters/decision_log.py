"""The decision log: one record per decision, cancel, grace use, review, override and erasure,
and its JSON Lines export.

A record holds everything a replay needs: the request as sent, the per-user state the rules
saw, the clock time used, the rules version, the full decision (outcome, reasons, offer,
trace) and the state change it made. It is appended to the user's stream (`ld:{u}:log`) by the
same Lua script that commits the state change, so state and log never disagree.

Export reads every user's stream, keeps the records in [since, until) and writes them ordered
by time. It sorts in bounded memory (sorted runs spilled to temporary files, then merged), so
a log larger than memory exports too.
"""
from __future__ import annotations

import datetime as dt
import heapq
import json
import os
import tempfile
from typing import IO, Any, Iterable, Iterator, Mapping, Optional

from service.adapters import jsontext
from service.domain.decision import iso_utc
from service.domain.userstate import StateChange, UserState, change_to_dict, state_to_dict

# 2: review, override and erasure records (issue 11); version-1 lines still replay and rebuild
FORMAT_VERSION = 2


def encode_decision_record(payload: Mapping[str, Any], state: UserState, now: dt.datetime,
                           decision: dict, decision_json: str, change: StateChange,
                           evaluated: bool) -> str:
    """The log record of one decision, as the JSON line it is stored and exported as.

    Its field order is the export's. The decision's JSON is spliced in as given: it is encoded
    once per request and shared with the response and the application record.
    """
    head = encode({"v": FORMAT_VERSION, "kind": "decision", "at": iso_utc(now),
                   "user_id": decision["user_id"], "application_id": decision["application_id"],
                   "rules_version": decision["rules_version"], "evaluated": evaluated,
                   "request": dict(payload), "state": state_to_dict(state)})
    return head[:-1] + ',"decision":' + decision_json + ',"change":' + encode(change_to_dict(change)) + "}"


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
                  change: StateChange) -> dict:
    """A reviewer closed a case: the request and state the effects were computed from, the
    reviewer's input and the effects (`review`), and the state change, as a replay needs them."""
    return {"v": FORMAT_VERSION, "kind": "review", "at": iso_utc(now), "user_id": user_id,
            "application_id": application_id, "rules_version": rules_version,
            "request": dict(request), "state": state_to_dict(state), "review": review,
            "change": change_to_dict(change)}


def override_record(user_id: str, now: dt.datetime, rules_version: str, action: str,
                    operator_id: str, reason: str, state: UserState) -> dict:
    return {"v": FORMAT_VERSION, "kind": "override", "at": iso_utc(now), "user_id": user_id,
            "application_id": None, "rules_version": rules_version, "action": action,
            "operator_id": operator_id, "reason": reason, "state": state_to_dict(state)}


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
    return jsontext.dumps(record)


# -- export ----------------------------------------------------------------------------------------
def log_keys(client, prefix: str) -> Iterator[str]:
    """Every user's log stream, on one server or on every master of a cluster."""
    pattern = f"{prefix}:{{*}}:log"
    seen = set()
    for key in client.scan_iter(match=pattern, count=1000, _type="stream"):
        key = key.decode() if isinstance(key, bytes) else key
        if key not in seen:   # SCAN may return a key twice
            seen.add(key)
            yield key


def stream_records(client, key: str, batch: int = 500) -> Iterator[tuple[str, dict]]:
    start = "-"
    while True:
        entries = client.xrange(key, min=start, max="+", count=batch)
        if not entries:
            return
        for entry_id, fields in entries:
            entry_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            raw = fields.get(b"r") if b"r" in fields else fields.get("r")
            yield entry_id, json.loads(raw)
        if len(entries) < batch:
            return
        start = "(" + entry_id


def export(client, prefix: str, out: IO[str], since: Optional[str] = None,
           until: Optional[str] = None, run_size: int = 50_000) -> int:
    """Write the records with since <= at < until as JSON Lines, ordered by (at, user, id)."""
    runs: list[str] = []
    buffer: list[tuple[str, str, str, str]] = []

    def spill() -> None:
        buffer.sort()
        handle = tempfile.NamedTemporaryFile("w", delete=False, suffix=".jsonl", encoding="utf-8")
        with handle:
            for item in buffer:
                handle.write("\t".join(item[:3]) + "\t" + item[3] + "\n")
        runs.append(handle.name)
        buffer.clear()

    for key in log_keys(client, prefix):
        for entry_id, record in stream_records(client, key):
            at = record["at"]
            if (since and at < since) or (until and at >= until):
                continue
            ms, _, seq = entry_id.partition("-")
            buffer.append((at, record["user_id"], f"{int(ms):015d}-{int(seq or 0):06d}", encode(record)))
            if len(buffer) >= run_size:
                spill()
    try:
        if not runs:
            buffer.sort()
            for item in buffer:
                out.write(item[3] + "\n")
            return len(buffer)
        if buffer:
            spill()
        count = 0
        files = [open(name, encoding="utf-8") for name in runs]
        try:
            for line in heapq.merge(*files):
                out.write(line.split("\t", 3)[3])
                count += 1
        finally:
            for handle in files:
                handle.close()
        return count
    finally:
        for name in runs:
            os.unlink(name)


def read_lines(handle: IO[str]) -> Iterable[tuple[int, str]]:
    for number, line in enumerate(handle, 1):
        if line.strip():
            yield number, line
