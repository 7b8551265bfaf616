"""The reviewers' desk as pure policy: who holds a case, its notes, its age and whether it is late.

A claim and the notes live in the case's own application record, beside the decision, so
they are written under the user's lock with the record itself (on Redis Cluster, in the
user's slot). Claiming, releasing, noting and closing a case are then serialised against each
other exactly as two reviews are; the pending index (another slot) only orders the queue and
never says who holds what.

- A claim is `{"reviewer_id", "claimed_at", "until"}`; it holds while `until` is in the future
  (`review_claim_minutes`, rules/time.yaml). Its holder claiming again extends it; anyone else
  waits for its end or for the holder to release it. While it holds only the holder closes the
  case.
- Notes are append-only, oldest first; the same note sent again by the same reviewer right
  after (a retry) is not added twice.
- A case is as old as its opening: the decision's time for one the rules opened, the
  applicant's request for one they opened; it is overdue past `review_sla_hours`.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Optional

from service.domain.application import StoredApplication
from service.domain.decision import iso_utc, parse_iso_utc
from service.domain.rulebook import TimeRules

NOTES_MAX = 100   # notes a case keeps: a record stays well under Redis's comfortable sizes


class DeskRefusal(ValueError):
    """The desk step is not allowed on this case now (the API's 409)."""


@dataclass(frozen=True)
class Claim:
    reviewer_id: str
    claimed_at: dt.datetime
    until: dt.datetime

    def to_dict(self) -> dict:
        return {"reviewer_id": self.reviewer_id, "claimed_at": iso_utc(self.claimed_at),
                "until": iso_utc(self.until)}


def active_claim(record: StoredApplication, now: dt.datetime) -> Optional[Claim]:
    """The claim that holds the case at `now` (None: nobody holds it)."""
    raw = record.claim_at(now)
    if raw is None:
        return None
    return Claim(raw["reviewer_id"], parse_iso_utc(raw["claimed_at"]), parse_iso_utc(raw["until"]))


def _open_case(record: StoredApplication, now: dt.datetime) -> None:
    if not record.is_open_case():
        raise DeskRefusal(f"application {record.application_id!r} is {record.status_at(now)}, "
                          "not a pending review case")


def claimed(record: StoredApplication, reviewer_id: str, now: dt.datetime,
            time: TimeRules) -> StoredApplication:
    """The record claimed by `reviewer_id` from `now` (an own claim extended)."""
    _open_case(record, now)
    held = active_claim(record, now)
    if held is not None and held.reviewer_id != reviewer_id:
        raise DeskRefusal(f"claimed by {held.reviewer_id!r} until {iso_utc(held.until)}")
    since = held.claimed_at if held is not None else now
    claim = Claim(reviewer_id, since, now + dt.timedelta(minutes=time.review_claim_minutes))
    return record.with_changes(claim=claim.to_dict())


def released(record: StoredApplication, reviewer_id: str, now: dt.datetime) -> Optional[StoredApplication]:
    """The record without `reviewer_id`'s claim; None when no claim holds (nothing to write)."""
    _open_case(record, now)
    held = active_claim(record, now)
    if held is None:
        return None
    if held.reviewer_id != reviewer_id:
        raise DeskRefusal(f"claimed by {held.reviewer_id!r}, not by {reviewer_id!r}")
    return record.with_changes(claim=None)


def may_close(record: StoredApplication, reviewer_id: str, now: dt.datetime) -> None:
    """Refuse a close by anyone but the holder of a claim that holds."""
    held = active_claim(record, now)
    if held is not None and held.reviewer_id != reviewer_id:
        raise DeskRefusal(f"claimed by {held.reviewer_id!r} until {iso_utc(held.until)}; "
                          "only its holder closes the case")


def with_note(record: StoredApplication, reviewer_id: str, text: str,
              now: dt.datetime) -> Optional[StoredApplication]:
    """The record with the note appended; None when it is the same reviewer's last note again."""
    _open_case(record, now)
    notes = list(record.doc.get("notes") or ())
    if notes and notes[-1]["reviewer_id"] == reviewer_id and notes[-1]["text"] == text:
        return None
    if len(notes) >= NOTES_MAX:
        raise DeskRefusal(f"the case has {NOTES_MAX} notes, the most it keeps")
    return record.with_changes(notes=notes + [{"reviewer_id": reviewer_id, "at": iso_utc(now), "text": text}])


def opened_at(record: StoredApplication) -> dt.datetime:
    """When the case entered the queue: the applicant's request, else the decision."""
    requested = record.doc.get("human_review")
    return parse_iso_utc(requested["requested_at"] if requested else record.decision["decided_at"])


@dataclass(frozen=True)
class Standing:
    """A pending case on the desk at a moment, as GET /reviews lists it."""

    age_seconds: int
    overdue: bool
    claimed_by: Optional[str]
    claimed_until: Optional[str]


def standing(record: StoredApplication, now: dt.datetime, time: TimeRules) -> Standing:
    age = max(0, int((now - opened_at(record)).total_seconds()))
    held = active_claim(record, now)
    return Standing(age_seconds=age, overdue=age > time.review_sla_hours * 3600,
                    claimed_by=held.reviewer_id if held else None,
                    claimed_until=iso_utc(held.until) if held else None)


DESK_KINDS = ("review_claim", "review_note")   # the log records of the desk's steps


def desk_change(record: StoredApplication, logged: dict) -> StoredApplication:
    """The record as one logged desk step left it (a rebuild writes it again as it was)."""
    if logged["kind"] == "review_note":
        notes = list(record.doc.get("notes") or ())
        return record.with_changes(notes=notes + [{"reviewer_id": logged["reviewer_id"],
                                                   "at": logged["at"], "text": logged["text"]}])
    if logged["action"] == "release":
        return record.with_changes(claim=None)
    if logged["action"] == "claim":
        return record.with_changes(claim={"reviewer_id": logged["reviewer_id"],
                                          "claimed_at": logged["claimed_at"], "until": logged["until"]})
    raise ValueError(f"unknown claim action {logged['action']!r}")
