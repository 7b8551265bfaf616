"""Human review and audited overrides as pure policy: what a reviewer's outcome does.

A reviewed case ends as if the rules had decided at review time (API.md "Human review"): an
approval gets the offer the rules give the amount and T2's hold when its condition holds; a
rejection whose codes include one that starts the 90-day window (rules/, `starts_cooldown`)
opens it from review time. The service, `replay` and `state rebuild` all go through here, so a
replay reproduces the recorded effects exactly.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from service.domain.decision import Offer, iso_utc, parse_iso_utc
from service.domain.policy import Policy
from service.domain.rulebook import RuleBook
from service.domain.userstate import StateChange, UserState

REVIEW_OUTCOMES = ("approved", "rejected")
LIFT_COOLDOWN = "lift_cooldown"


def reason_codes(book: RuleBook) -> dict[str, bool]:
    """Every fixed reason code of the rules, with whether it starts the 90-day window."""
    codes = {book.missing_data.reason.code: False}
    codes.update({code: False for code in book.time.state_reasons})
    for rule in book.rules:
        if rule.reason is not None:
            codes[rule.reason.code] = codes.get(rule.reason.code, False) or rule.reason.starts_cooldown
    return codes


def offer_dict(offer: Optional[Offer]) -> Optional[dict]:
    if offer is None:
        return None
    return {"limit": offer.limit, "daily_rate": offer.daily_rate, "monthly_rate": offer.monthly_rate,
            "apr": offer.apr, "term_days_min": offer.term_days_min,
            "term_days_max": offer.term_days_max, "interest_free_days": offer.interest_free_days}


def review_effects(policy: Policy, request: Mapping[str, Any], state: UserState, now: dt.datetime,
                   outcome: str, codes: list[str]) -> tuple[dict, StateChange]:
    """(the effects shown in the application view, the state change) of one review at `now`."""
    if outcome == "approved":
        offer, hold = policy.review_terms(request, state, now)
        effects = {"offer": offer_dict(offer), "funds_available_at": hold, "cancel_until": hold,
                   "reapply_after": None}
        return effects, StateChange(cooling_off_until=parse_iso_utc(hold) if hold else None)
    starts = reason_codes(policy.book)
    until = None
    if any(starts.get(code) for code in codes):
        until = now + dt.timedelta(days=policy.book.time.reapply_window_days)
        if state.in_cooldown(now) and state.cooldown_until > until:
            until = state.cooldown_until   # a longer window already running stays
    effects = {"offer": None, "funds_available_at": None, "cancel_until": None,
               "reapply_after": iso_utc(until) if until else None}
    return effects, StateChange(cooldown_until=until)


@dataclass(frozen=True)
class ApplicantCase:
    """A rejection the applicant sent to a person: the window its refusal opened, if any."""

    refusal_reapply_after: Optional[str]


def applicant_review_effects(policy: Policy, request: Mapping[str, Any], state: UserState,
                             now: dt.datetime, outcome: str,
                             case: ApplicantCase) -> tuple[dict, StateChange, bool]:
    """(effects, state change, whether the 90-day window ends) of a reviewer's outcome on a
    case the applicant asked for. The refusal stood while the case waited; an approval replaces
    it: the offer as at review time, and the window this refusal opened ends (a window some
    other refusal set since is another's, and stays). A rejection confirms the refusal: its
    window, no new one from review time (the applicant is not punished for asking)."""
    if outcome == "approved":
        effects, change = review_effects(policy, request, state, now, outcome, [])
        opened = case.refusal_reapply_after
        lifts = (opened is not None and state.in_cooldown(now)
                 and state.cooldown_until == parse_iso_utc(opened))
        return effects, change, lifts
    effects = {"offer": None, "funds_available_at": None, "cancel_until": None,
               "reapply_after": case.refusal_reapply_after}
    return effects, StateChange(), False


def final_status(review: Mapping[str, Any], now: dt.datetime) -> str:
    """A reviewed application's status: the reviewer's outcome, or T2's hold while it runs."""
    hold = review.get("funds_available_at")
    if review["outcome"] == "approved" and hold:
        return "cooling_off" if now < parse_iso_utc(hold) else "released"
    return review["outcome"]
