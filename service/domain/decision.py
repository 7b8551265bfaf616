"""Decision values: what the policy returns and the API, the log and a replay share."""
from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from typing import Any, Optional, TypedDict

# RULEBOOK "Resolved points": rejected > review > cooling_off > approved.
OUTCOME_PRECEDENCE = ("rejected", "review", "cooling_off", "approved")


@functools.lru_cache(maxsize=64)
def iso_utc(moment: dt.datetime) -> str:
    """The moment as the API writes it. Remembered for a few moments: one request writes its
    clock time three or four times (decided_at, the log record, a window's end), and strftime
    costs twenty times the look-up. Equal datetimes are the same instant, so the same text."""
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso_utc(text: str) -> dt.datetime:
    """`YYYY-MM-DDTHH:MM:SSZ` exactly (ValueError for anything else). The text is first checked
    to have that shape in ASCII, then read by fromisoformat, a tenth of strptime's cost (a
    replay reads several per record); strptime reads what fails the check, and says why."""
    if (len(text) == 20 and text.isascii() and text[19] == "Z" and text[10] == "T"
            and text[4] == text[7] == "-" and text[13] == text[16] == ":"
            and (text[:4] + text[5:7] + text[8:10] + text[11:13] + text[14:16] + text[17:19]).isdigit()):
        return dt.datetime.fromisoformat(text)
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class Reason:
    code: str
    rule_id: str
    message_zh: str
    message_en: str
    advice_zh: str
    advice_en: str
    inputs: dict[str, Any]


@dataclass(frozen=True)
class Offer:
    limit: float
    daily_rate: float
    monthly_rate: float
    apr: float
    term_days_min: int
    term_days_max: int
    interest_free_days: int


class TraceEntry(TypedDict):
    """One rule's line of the trace, built as the very dict the response carries: a decision
    has one per rule of its product, and a frozen dataclass each, copied into a dict by
    to_dict, cost about 40 us a decision. Nothing writes to it once built."""

    rule_id: str
    check: str
    passed: Optional[bool]   # None: not evaluated, a field it reads is missing
    matched: bool            # the rule's condition held (a check failed, a flag/pricing applied)
    inputs: dict[str, Any]


def trace_entry(rule_id: str, check: str, passed: Optional[bool], matched: bool,
                inputs: dict[str, Any]) -> TraceEntry:
    return {"rule_id": rule_id, "check": check, "passed": passed, "matched": matched, "inputs": inputs}


@dataclass(frozen=True)
class Change:
    field: str   # request path, as recourse.yaml names it
    to: Any      # the JSON value to send


@dataclass(frozen=True)
class Option:
    """A verified way to the `outcome`: send the application with `changes`, at `wait_until`."""

    changes: tuple[Change, ...]
    wait_until: Optional[str]
    outcome: str


@dataclass(frozen=True)
class Recourse:
    options: tuple[Option, ...]
    unreachable: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"options": [{"changes": [{"field": c.field, "to": c.to} for c in o.changes],
                             "wait_until": o.wait_until, "outcome": o.outcome} for o in self.options],
                "unreachable": list(self.unreachable)}


@dataclass(frozen=True)
class Decision:
    decision_id: str
    application_id: str
    user_id: str
    product: str
    outcome: str
    reasons: tuple[Reason, ...]
    offer: Optional[Offer]
    funds_available_at: Optional[str]
    cancel_until: Optional[str]
    reapply_after: Optional[str]
    flags: tuple[str, ...]
    rules_version: str
    decided_at: str
    trace: tuple[TraceEntry, ...] = field(default=())
    starts_cooldown: bool = False   # not in the response: tells the state store to open T1
    # False when the rules version declares no recourse; the document then has no
    # `recourse` key at all, as decisions logged before it had none.
    recourse_declared: bool = False
    recourse: Optional[Recourse] = None

    def with_recourse(self, recourse: Optional[Recourse]) -> "Decision":
        """This decision with its recourse: `dataclasses.replace` walks the fields' definitions
        on every call, at twice the cost of copying the values."""
        return Decision(**{**vars(self), "recourse": recourse})

    def to_dict(self) -> dict[str, Any]:
        """The response document. Written out by hand: dataclasses.asdict deep-copies every
        value and cost more than the whole rule evaluation (320 us against 220 us, measured)."""
        offer = self.offer
        doc = {
            "decision_id": self.decision_id, "application_id": self.application_id,
            "user_id": self.user_id, "product": self.product, "outcome": self.outcome,
            "reasons": [{"code": r.code, "rule_id": r.rule_id, "message_zh": r.message_zh,
                         "message_en": r.message_en, "advice_zh": r.advice_zh,
                         "advice_en": r.advice_en, "inputs": dict(r.inputs)} for r in self.reasons],
            "offer": None if offer is None else {
                "limit": offer.limit, "daily_rate": offer.daily_rate, "monthly_rate": offer.monthly_rate,
                "apr": offer.apr, "term_days_min": offer.term_days_min,
                "term_days_max": offer.term_days_max, "interest_free_days": offer.interest_free_days},
            "funds_available_at": self.funds_available_at, "cancel_until": self.cancel_until,
            "reapply_after": self.reapply_after, "flags": list(self.flags),
            "rules_version": self.rules_version, "decided_at": self.decided_at,
            "trace": list(self.trace),   # the entries themselves: built in this shape, never written to
        }
        if self.recourse_declared:
            doc["recourse"] = None if self.recourse is None else self.recourse.to_dict()
        return doc


def combine_outcomes(outcomes: list[str]) -> str:
    for outcome in OUTCOME_PRECEDENCE:
        if outcome in outcomes:
            return outcome
    return "approved"
