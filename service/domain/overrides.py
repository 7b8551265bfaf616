"""A four-eyes override: one operator asks for it, another applies it (API.md "Four eyes on
overrides").

The pending override is a value of the user's own: it is stored under the user's keys, so the
approval reads it, applies it and marks it applied in the one step that lifts the window and
writes the log record (a second approver finds it applied). It stays readable for a while
after it expired or was applied, so a late approval is told why (409) rather than "unknown".
"""
from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import asdict, dataclass, replace
from typing import Any, Mapping, Optional

from service.domain.decision import iso_utc, parse_iso_utc

PENDING_HOURS = 24      # how long a requested override waits for its second operator
KEPT_DAYS = 7           # after it expired or was applied: a late approval gets a 409, not a 404

PENDING, APPLIED, EXPIRED = "pending", "applied", "expired"


@dataclass(frozen=True)
class PendingOverride:
    """An override one operator asked for; `approved_by` is set once another applied it."""

    override_id: str
    action: str
    requested_by: str
    reason: str
    requested_at: dt.datetime
    expires_at: dt.datetime
    approved_by: Optional[str] = None
    approved_at: Optional[dt.datetime] = None

    @classmethod
    def ask(cls, action: str, operator_id: str, reason: str, now: dt.datetime) -> "PendingOverride":
        return cls(override_id="ov_" + secrets.token_hex(12), action=action,
                   requested_by=operator_id, reason=reason, requested_at=now,
                   expires_at=now + dt.timedelta(hours=PENDING_HOURS))

    def status(self, now: dt.datetime) -> str:
        """Applied, else expired from `expires_at` on (the last pending second is the one before)."""
        if self.approved_by is not None:
            return APPLIED
        return EXPIRED if now >= self.expires_at else PENDING

    def approved(self, operator_id: str, now: dt.datetime) -> "PendingOverride":
        return replace(self, approved_by=operator_id, approved_at=now)

    @property
    def kept_until(self) -> dt.datetime:
        """When the store may forget it (and its id stops being found)."""
        return self.expires_at + dt.timedelta(days=KEPT_DAYS)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        for name in ("requested_at", "expires_at", "approved_at"):
            doc[name] = iso_utc(doc[name]) if doc[name] else None
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> "PendingOverride":
        times = {name: parse_iso_utc(doc[name]) if doc.get(name) else None
                 for name in ("requested_at", "expires_at", "approved_at")}
        return cls(**{**dict(doc), **times})

    def answer(self) -> dict[str, Any]:
        """The 202 of a request: what the requester needs to pass on to the second operator."""
        return {"override_id": self.override_id, "status": PENDING,
                "requested_by": self.requested_by, "expires_at": iso_utc(self.expires_at)}
