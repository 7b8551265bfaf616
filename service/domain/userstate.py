"""Per-user state: what the rules see of a user's history, and what a decision changes in it.

Pure values. The policy reads a UserState and returns a StateChange with its decision; the
state store (Redis, or the in-memory one) produces the one and applies the other atomically.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class UserState:
    """One user's state as of the decision's clock time."""

    applications_6m: int = 0                          # T3: own evaluated applications in the window
    cooldown_until: Optional[dt.datetime] = None      # T1: end of the reapply window
    cooling_off_application: Optional[str] = None     # T2: the loan whose funds are on hold
    cooling_off_until: Optional[dt.datetime] = None   # T2: when its funds are released
    temp_limit_expires_at: Optional[dt.datetime] = None   # T4
    temp_limit_grants: int = 0                        # T4: grants so far (first + renewals)
    grace_uses: tuple[dt.datetime, ...] = field(default=())   # T5: start of each use

    def fact_fields(self, limit_factor: float = 1.0) -> dict[str, float]:
        """The state as fact fields for the rules (R1's count, T4's limit factor)."""
        return {"recorded_applications_6m": self.applications_6m, "limit_factor": limit_factor}

    def in_cooldown(self, now: dt.datetime) -> bool:
        return self.cooldown_until is not None and now < self.cooldown_until

    def cooling_off_pending(self, now: dt.datetime) -> bool:
        return self.cooling_off_until is not None and now < self.cooling_off_until

    def temp_limit_active(self, now: dt.datetime) -> bool:
        return self.temp_limit_expires_at is not None and now < self.temp_limit_expires_at


@dataclass(frozen=True)
class StateChange:
    """What one decision does to its user's state; applied with the decision, atomically."""

    count_application: bool = False                   # T3: an evaluated application
    cooldown_until: Optional[dt.datetime] = None      # T1: open the window until then
    cooling_off_until: Optional[dt.datetime] = None   # T2: hold this application's funds
    temp_limit_expires_at: Optional[dt.datetime] = None   # T4: a new grant until then


def _iso(moment: Optional[dt.datetime]) -> Optional[str]:
    return None if moment is None else moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: Optional[str]) -> Optional[dt.datetime]:
    return None if text is None else dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=dt.timezone.utc)


def state_to_dict(state: UserState) -> dict:
    """The state as the decision log records it (and a replay reads it back)."""
    return {"applications_6m": state.applications_6m,
            "cooldown_until": _iso(state.cooldown_until),
            "cooling_off_application": state.cooling_off_application,
            "cooling_off_until": _iso(state.cooling_off_until),
            "temp_limit_expires_at": _iso(state.temp_limit_expires_at),
            "temp_limit_grants": state.temp_limit_grants,
            "grace_uses": [_iso(u) for u in state.grace_uses]}


def state_from_dict(doc: dict) -> UserState:
    return UserState(applications_6m=doc["applications_6m"],
                     cooldown_until=_parse(doc["cooldown_until"]),
                     cooling_off_application=doc["cooling_off_application"],
                     cooling_off_until=_parse(doc["cooling_off_until"]),
                     temp_limit_expires_at=_parse(doc["temp_limit_expires_at"]),
                     temp_limit_grants=doc["temp_limit_grants"],
                     grace_uses=tuple(_parse(u) for u in doc["grace_uses"]))


def change_to_dict(change: StateChange) -> dict:
    return {"count_application": change.count_application,
            "cooldown_until": _iso(change.cooldown_until),
            "cooling_off_until": _iso(change.cooling_off_until),
            "temp_limit_expires_at": _iso(change.temp_limit_expires_at)}


def change_from_dict(doc: dict) -> StateChange:
    return StateChange(count_application=doc["count_application"],
                       cooldown_until=_parse(doc["cooldown_until"]),
                       cooling_off_until=_parse(doc["cooling_off_until"]),
                       temp_limit_expires_at=_parse(doc["temp_limit_expires_at"]))
