"""What evaluating one application concludes: the values the policy returns and the recourse
search reads, apart from the Policy itself so that the search needs no import of it."""
from __future__ import annotations

from dataclasses import dataclass

from service.domain.decision import Decision
from service.domain.rulebook import Rule
from service.domain.userstate import StateChange


@dataclass(frozen=True)
class Outcome:
    decision: Decision
    change: StateChange
    evaluated: bool   # False: refused by state (T1/T2) without evaluating the rules


@dataclass(frozen=True)
class Verdict:
    """What a decision concludes, without its explanation: the recourse search
    evaluates many changed applications and reads only this of each, so it skips the trace,
    the reasons' texts and the largest-allowed probe, none of which changes the outcome."""

    outcome: str
    codes: frozenset[str]           # the reasons' codes
    fired_checks: tuple[Rule, ...]  # the checks that refused, in the product's rule order
    missing: tuple[str, ...]        # the request fields MISSING_DATA names
