"""Rebuild the per-user state from a decision log, and compare what a log implies with a live store.

Rebuild applies each record's recorded effects in log order, with the same writes the service
makes (decide.decision_write, cancel_write, grace_write), so a rebuilt store is the store the
service would have written. Diff rebuilds the log into an empty store and compares it, user by
user, with the live one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional

from service.domain.decision import parse_iso_utc
from service.domain.human_review import request_entry
from service.domain.overrides import PendingOverride
from service.domain.privacy import erasure_subject
from service.domain.review import LIFT_COOLDOWN
from service.domain.review_desk import DESK_KINDS, desk_change
from service.domain.userstate import change_from_dict
from service.usecases.decide import (
    cancel_write,
    decision_write,
    grace_write,
    raw_payload_digest,
)
from service.usecases.live_rules import LiveRules
from service.usecases.ports import ErasedWindows, OverrideIndex, UserSnapshot, UserWrite
from service.usecases.unit_of_work import UserWork


RECEIPTS_ONLY = frozenset({"export"})   # a copy handed out: its receipt changes no user


@dataclass
class Rebuilder:
    """Applies log records to one store: its unit of work, its kept windows, and the erasure
    key (with it, an erasure record found in a log exported before the erasure removes its user
    again)."""

    work: UserWork
    rules: LiveRules
    erased: ErasedWindows
    erasure_secret: Optional[bytes] = None
    seen: set = field(default_factory=set)   # users met so far: an erasure finds its user among them
    overrides: Optional[OverrideIndex] = None   # where a rebuilt four-eyes request points from its id

    def apply(self, record: dict) -> None:
        """Write one record's effects (application record, state change), not logging it again."""
        if record["kind"] == "erasure":
            self._erasure(record)
            return
        if record["kind"] in RECEIPTS_ONLY:
            return
        now = parse_iso_utc(record["at"])
        self.seen.add(record["user_id"])
        self.work.run(record["user_id"], record.get("application_id"),
                      lambda snapshot, _now: (None, self._write(record, snapshot)), now=now)

    def _write(self, record: dict, snapshot: UserSnapshot) -> Optional[UserWrite]:
        kind, now = record["kind"], parse_iso_utc(record["at"])
        if kind == "decision":
            return decision_write(self.rules.policy, record["request"], record["decision"],
                                  change_from_dict(record["change"]), now)
        if kind == "cancel":
            return cancel_write(snapshot, now)[1] if snapshot.application is not None else None
        if kind == "grace":
            return grace_write(self.rules.policy, record["days"], now, record.get("use_id"))
        if kind == "review":
            if snapshot.application is None:
                return None
            return UserWrite(at=now, application=snapshot.application.with_changes(review=record["review"],
                                                                                   claim=None),
                             change=change_from_dict(record["change"]),
                             lifts_cooldown=record.get("lifts_cooldown", False))
        if kind == "human_review":
            if snapshot.application is None:
                return None
            entry = request_entry(now, record.get("statement"), record["rules_version"])
            return UserWrite(at=now, application=snapshot.application.with_changes(
                human_review=entry, case={"request": record["request"]}))
        if kind in DESK_KINDS:
            if snapshot.application is None:
                return None
            return UserWrite(at=now, application=desk_change(snapshot.application, record))
        if kind in ("override", "override_request"):
            if record["action"] != LIFT_COOLDOWN:
                raise ValueError(f"unknown override action {record['action']!r}")
            return self._override(record, now)
        raise ValueError(f"unknown record kind {kind!r}")

    def _override(self, record: dict, now) -> UserWrite:
        """A four-eyes request keeps its pending override (and its pointer, given the index),
        changing no state; its approval lifts the window and marks the override applied; a
        one-step override lifts the window."""
        if record["kind"] == "override_request":
            asked = PendingOverride(
                override_id=record["override_id"], action=record["action"],
                requested_by=record["requested_by"], reason=record["reason"], requested_at=now,
                expires_at=parse_iso_utc(record["expires_at"]))
            if self.overrides is not None:
                self.overrides.point(asked.override_id, record["user_id"], asked.kept_until - now)
            return UserWrite(at=now, override=asked)
        asked = (self.work.store.pending_override(record["user_id"], record["override_id"])
                 if record.get("override_id") else None)
        applied = asked.approved(record["approved_by"], now) if asked is not None else None
        return UserWrite(at=now, lifts_cooldown=True, override=applied)

    def _erasure(self, record: dict) -> None:
        """An erasure record: the kept window under its keyed hash; the erased user's own records
        are gone from a log exported after it. A log exported before it still names the user:
        with the service's ERASURE_HMAC_SECRET, the user whose hash it is loses everything again."""
        if record.get("window_until"):
            until = parse_iso_utc(record["window_until"])
            if until > self.work.clock.now():
                self.erased.keep(record["subject"], until)
        if not self.erasure_secret:
            return
        for user_id in [u for u in self.seen if erasure_subject(self.erasure_secret, u) == record["subject"]]:
            self.work.store.forget(user_id)
            self.seen.discard(user_id)

    def rebuild(self, records: Iterable[dict]) -> int:
        count = 0
        for record in records:
            self.apply(record)
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


def diff(implied: Rebuilder, live: UserWork, records: Iterable[dict]) -> DiffResult:
    """Rebuild `records` into `implied` (an empty store) and compare it with the `live` store."""
    users: dict[str, set[str]] = {}
    requests: dict[tuple[str, str], dict] = {}
    for record in records:
        implied.apply(record)
        if record["kind"] == "erasure":
            for user_id in set(users) - implied.seen:
                users.pop(user_id)   # erased: neither side holds anything of the user
            continue
        if record["kind"] in RECEIPTS_ONLY:
            continue
        apps = users.setdefault(record["user_id"], set())
        if record.get("application_id"):
            apps.add(record["application_id"])
            if record["kind"] == "decision":
                requests[(record["user_id"], record["application_id"])] = record["request"]
    result = DiffResult(users=len(users))
    for user_id, app_ids in sorted(users.items()):
        want = _flat(implied.work.store.view(user_id, app_ids))
        have = _flat(live.store.view(user_id, app_ids))
        for key in want:
            if want[key] != have.get(key) and not _older_digest(want[key], have.get(key),
                                                                requests.get((user_id, key[4:]))):
                result.differences.append(Difference(user_id, key, want[key], have.get(key)))
    return result


def _flat(view: dict) -> dict:
    """A store's view of a user as the keys a difference names: user, apps, grace, app:<id>."""
    flat = {"user": view["state"], "apps": view["counted"], "grace": view["grace"]}
    flat.update({f"app:{a}": doc for a, doc in view["records"].items()})
    return flat


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
