"""Turn a validated request and the user's state into the flat fact durable_rules is asked about.

durable_rules compares what it is given: numbers as numbers, dates as day numbers (days since
1970-01-01), booleans as booleans. A field that is absent or null is left out of the fact, since
durable_rules never matches a missing field; the policy reports it as MISSING_DATA instead of
letting a failing rule pass silently.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from service.domain.applicant_fields import APPLICANT_FIELDS, DOCUMENTS, GROUPS, NULL_MEANS_NO
from service.domain.userstate import UserState

EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class FactField:
    kind: str              # "number" | "bool" | "date"
    source: Optional[str]  # request path named by MISSING_DATA; None when always present


def _catalogue() -> dict[str, FactField]:
    out = {"amount": FactField("number", "amount"), "term_days": FactField("number", "term_days")}
    for name, kind in APPLICANT_FIELDS.items():
        out[name] = FactField(kind, f"applicant.{name}")
    for source, derived in NULL_MEANS_NO.items():
        out[derived] = FactField("bool", f"applicant.{source}")
    for group in GROUPS:
        out[f"is_{group}"] = FactField("bool", None)
    for doc in DOCUMENTS:
        out[doc] = FactField("bool", f"applicant.documents.{doc}")
    for name in UserState().fact_fields():
        out[name] = FactField("number", None)
    return out


FACT_FIELDS: dict[str, FactField] = _catalogue()


def durable_number(value: float) -> float:
    """A number durable_rules' JSON parser accepts, with the same order against any threshold.

    Measured here: it refuses a float that Python writes with an exponent but no decimal point
    (`1e-05`, `1e+16`: error 204). Integral floats become ints; others move one ulp, which
    gains them a decimal point (`1.0000000000000001e-05`); subnormals become 0.
    """
    if isinstance(value, bool) or not isinstance(value, float):
        return value
    if value.is_integer():
        return int(value)
    text = repr(value)
    if "e" in text and "." not in text.split("e")[0]:
        if abs(value) < 1e-300:
            return 0.0
        return math.nextafter(value, math.inf)
    return value


def day_number(day: dt.date) -> int:
    return (day - EPOCH).days


def add_calendar(day: dt.date, years: int = 0, months: int = 0, days: int = 0) -> dt.date:
    """Calendar arithmetic: 31 Jan + 1 month is 28/29 Feb (the day is clamped to the month's end)."""
    month_index = day.month - 1 + months + 12 * years
    year, month = day.year + month_index // 12, month_index % 12 + 1
    next_month = dt.date(year + month // 12, month % 12 + 1, 1)
    last_day = (next_month - dt.timedelta(days=1)).day
    return dt.date(year, month, min(day.day, last_day)) + dt.timedelta(days=days)


@dataclass(frozen=True)
class Fact:
    values: dict[str, Any]    # what durable_rules sees (absent fields left out)
    display: dict[str, Any]   # the same fields as the request gave them (dates as ISO), for the trace
    missing: frozenset[str]   # fact fields absent or null in the request


def build_fact(request: Mapping[str, Any], state: UserState, today: dt.date,
               ref_dates: Mapping[str, Mapping[str, int]], limit_factor: float = 1.0) -> Fact:
    """The fact of one evaluation. Written as flat loops, not a helper per field: it runs for
    every evaluation (a decision, its T4 and largest-allowed passes, each recourse candidate),
    and a call per field cost more than the rule engine itself."""
    applicant = request["applicant"]
    values: dict[str, Any] = {}
    display: dict[str, Any] = {}
    missing: set[str] = set()

    for name, value in (("amount", request["amount"]), ("term_days", request.get("term_days"))):
        _put_number(name, value, values, display, missing)
    for name, kind in _APPLICANT_KINDS:
        value = applicant.get(name)
        if value is None:
            if not (name in NULL_MEANS_NO and name in applicant):   # null means "no" there
                missing.add(name)
            display[name] = None
        elif kind == "date":
            display[name] = value.isoformat()
            values[name] = (value - EPOCH).days
        else:
            display[name] = value
            values[name] = durable_number(value) if type(value) is float else value
    for source, derived in NULL_MEANS_NO.items():
        # null means "no"; only an absent key is missing data.
        if source in applicant:
            values[derived] = display[derived] = applicant[source] is not None
        else:
            missing.add(derived)
            display[derived] = None
    groups = applicant.get("groups") or ()
    for group in GROUPS:
        values[f"is_{group}"] = display[f"is_{group}"] = group in groups
    documents = applicant.get("documents") or {}
    for doc in DOCUMENTS:
        # absent: not claimed (false); null: unknown, missing data if a rule reads it
        claimed = documents.get(doc, False)
        if claimed is None:
            missing.add(doc)
        else:
            values[doc] = claimed
        display[doc] = claimed
    for name, value in state.fact_fields(limit_factor).items():
        _put_number(name, value, values, display, missing)
    for name, offset in ref_dates.items():
        day = add_calendar(today, **offset)
        display[name] = day.isoformat()
        values[name] = (day - EPOCH).days
    return Fact(values, display, frozenset(missing))


_APPLICANT_KINDS = tuple(APPLICANT_FIELDS.items())


def _put_number(name: str, value: Any, values: dict, display: dict, missing: set) -> None:
    display[name] = value
    if value is None:
        missing.add(name)
    else:
        values[name] = durable_number(value)
