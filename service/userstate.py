"""The per-user state the rules see: the seam between the policy and the state store.

The policy reads it and never writes it; the state store (Redis, fakeredis) produces it
and applies the decision's effects to it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UserState:
    """What this service remembers of one user, as of the decision's clock time."""

    applications_6m: int = 0  # T3: this service's own evaluated applications in the 6 months before

    def fact_fields(self) -> dict[str, int]:
        return {"recorded_applications_6m": self.applications_6m}
