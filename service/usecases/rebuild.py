"""Rebuild the per-user state from a decision log, and compare what a log implies with live Redis.

Rebuild applies each record's recorded effects in log order, with the same commit plans the
service uses (so a rebuilt store is the store the service would have written). Diff rebuilds
the log into an empty in-process store and compares it, user by user, with the live one.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from service.domain.decision import parse_iso_utc
from service.domain.userstate import change_from_dict
from service.usecases.decide import DecisionService, raw_payload_digest


def apply_record(service: DecisionService, record: dict) -> None:
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
        raise ValueError(f"unknown record kind {kind!r}")

    service.run_locked(user_id, app_id, step, now=now)


def rebuild(service: DecisionService, records: Iterable[dict]) -> int:
    count = 0
    for record in records:
        apply_record(service, record)
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
    for record in records:
        apply_record(implied, record)
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
