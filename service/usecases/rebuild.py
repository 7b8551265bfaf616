"""Rebuild the per-user state from a decision log, and compare what a log implies with live Redis.

Rebuild applies each record's recorded effects in log order, with the same commit plans the
service uses (so a rebuilt store is the store the service would have written). Diff rebuilds
the log into an empty in-process store and compares it, user by user, with the live one.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional

from service.adapters.review_store import ErasedWindows, user_keys
from service.adapters.state_store import COOLDOWN_UNTIL, CommitPlan
from service.domain.decision import parse_iso_utc
from service.domain.review import LIFT_COOLDOWN
from service.domain.userstate import change_from_dict
from service.usecases.decide import DecisionService, raw_payload_digest
from service.usecases.review import plan_review


def apply_record(service: DecisionService, record: dict, seen: Optional[set] = None) -> None:
    """Write one record's effects (application record, state change) without logging it again."""
    now = parse_iso_utc(record["at"])
    kind, user_id = record["kind"], record["user_id"]
    app_id = record.get("application_id")

    def step(snapshot, _now):
        if kind == "decision":
            return None, service.plan_decision(record["request"], record["decision"],
                                               change_from_dict(record["change"]), now)
        if kind == "cancel":
            if snapshot.application is None:
                return None, None
            return None, service.plan_cancel(snapshot, now)[1]
        if kind == "grace":
            return None, service.plan_grace(record["days"], now, record.get("use_id"))
        if kind in AUDITED:
            return None, AUDITED[kind](service, snapshot, record)
        raise ValueError(f"unknown record kind {kind!r}")

    if kind == "erasure":
        apply_erasure(service, record, seen if seen is not None else set())
        return
    if seen is not None:
        seen.add(user_id)   # a later erasure record finds its user among these, by hash
    service.run_locked(user_id, app_id, step, now=now)


def _plan_review(service: DecisionService, snapshot, record: dict):
    """A review record: the application record gains its review; the recorded change applies."""
    if snapshot.application is None:
        return None
    doc = dict(snapshot.application.doc, review=record["review"])
    return plan_review(service, snapshot, doc, change_from_dict(record["change"]))


def _plan_override(_service: DecisionService, _snapshot, record: dict):
    if record["action"] != LIFT_COOLDOWN:
        raise ValueError(f"unknown override action {record['action']!r}")
    return CommitPlan(hdel=[COOLDOWN_UNTIL])


AUDITED = {"review": _plan_review, "override": _plan_override}


def apply_erasure(service: DecisionService, record: dict, seen: set) -> None:
    """An erasure record: the kept window under its keyed hash; the erased user's own records
    are gone from a log exported after it. A log exported before it still names the user: with
    the service's ERASURE_HMAC_SECRET, the user whose hash it is loses every key again."""
    if record.get("window_until"):
        until = parse_iso_utc(record["window_until"])
        if until > service.clock.now():
            ErasedWindows(service.store, b"").keep(record["subject"], until)
    secret = service.erasure_secret
    if not secret:
        return
    windows = ErasedWindows(service.store, secret)
    for user_id in [u for u in seen if windows.subject(u) == record["subject"]]:
        keys = user_keys(service.store, user_id)
        if keys:
            service.store.client.delete(*keys)
        seen.discard(user_id)


def rebuild(service: DecisionService, records: Iterable[dict]) -> int:
    count, seen = 0, set()
    for record in records:
        apply_record(service, record, seen)
        count += 1
    return count


@dataclass
class Difference:
    user_id: str
    key: str
    log: object
    live: object


@dataclass
class DiffResult:
    users: int = 0
    differences: list[Difference] = field(default_factory=list)


def _user_view(service: DecisionService, user_id: str, app_ids: set[str]) -> dict:
    store, client = service.store, service.store.client
    _, user, apps, _, grace, _ = store.keys(user_id, None)
    view = {
        "user": {_s(k): _s(v) for k, v in client.hgetall(user).items()},
        "apps": {_s(m): s for m, s in client.zrange(apps, 0, -1, withscores=True)},
        "grace": {_s(m): s for m, s in client.zrange(grace, 0, -1, withscores=True)},
    }
    for app_id in sorted(app_ids):
        raw = client.get(store.keys(user_id, app_id)[3])
        view[f"app:{app_id}"] = json.loads(raw) if raw else None
    return view


def diff(implied: DecisionService, live: DecisionService, records: Iterable[dict]) -> DiffResult:
    """Rebuild `records` into `implied` (an empty store) and compare it with `live`."""
    users: dict[str, set[str]] = {}
    requests: dict[tuple[str, str], dict] = {}
    seen: set = set()
    for record in records:
        apply_record(implied, record, seen)
        if record["kind"] == "erasure":
            for user_id in set(users) - seen:
                users.pop(user_id)   # erased: neither side holds anything of the user
            continue
        apps = users.setdefault(record["user_id"], set())
        if record.get("application_id"):
            apps.add(record["application_id"])
            if record["kind"] == "decision":
                requests[(record["user_id"], record["application_id"])] = record["request"]
    result = DiffResult(users=len(users))
    for user_id, app_ids in sorted(users.items()):
        want, have = _user_view(implied, user_id, app_ids), _user_view(live, user_id, app_ids)
        for key in want:
            if want[key] != have[key] and not _older_digest(want[key], have[key],
                                                            requests.get((user_id, key[4:]))):
                result.differences.append(Difference(user_id, key, want[key], have[key]))
    return result


def _older_digest(want: object, have: object, request: dict | None) -> bool:
    """An application record written before retries were compared in canonical form carries the
    digest of the raw request; it is the same record, not a difference."""
    if not (isinstance(want, dict) and isinstance(have, dict) and request is not None):
        return False
    if have.get("payload_sha256") != raw_payload_digest(request):
        return False
    return {**have, "payload_sha256": want.get("payload_sha256")} == want


def records(lines: Iterable[tuple[int, str]]) -> Iterator[dict]:
    from service.usecases.replay import parse_line

    for number, text in lines:
        yield parse_line(number, text)


def _s(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
