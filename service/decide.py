"""The decide use case: read the user's state, evaluate, return the decision.

Entry points (HTTP, CLI) call this and only translate; it knows nothing of Flask.
"""
from __future__ import annotations

from typing import Any, Mapping

from service.clock import Clock, SystemClock
from service.decision import Decision
from service.policy import Policy
from service.userstate import UserState


class DecisionService:
    def __init__(self, policy: Policy, clock: Clock | None = None):
        self.policy = policy
        self.clock = clock or SystemClock()

    @property
    def rules_version(self) -> str:
        return self.policy.version

    def decide(self, request: Mapping[str, Any]) -> Decision:
        return self.policy.decide(request, UserState(), self.clock.now())
