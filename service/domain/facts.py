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
from typing import Any, Iterable, Mapping, Optional

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


def _of_kind(kind: str, wanted: set[str]) -> tuple[str, ...]:
    return tuple(f for f, k in APPLICANT_FIELDS.items() if k == kind and f in wanted)


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


@dataclass(frozen=True)
class FactShape:
    """The fact fields one evaluation builds, sorted by where each comes from.

    A product's rules read about 34 of the catalogue's 43 fields: its shape, worked out once per
    product (service.domain.policy), builds only those. A field no rule names cannot change
    which rules fire (durable_rules never matches on it), but it was built, encoded and parsed
    by durable_rules on every evaluation all the same."""

    numbers: tuple[str, ...]                  # of the request's top level (amount, term_days)
    applicant_numbers: tuple[str, ...]        # the applicant's fields, by kind
    applicant_bools: tuple[str, ...]
    applicant_dates: tuple[str, ...]
    null_means_no: tuple[tuple[str, str], ...]   # (request field, derived fact field)
    groups: tuple[tuple[str, str], ...]       # (group, fact field)
    documents: tuple[str, ...]
    state: frozenset[str]
    ref_dates: tuple[tuple[str, Mapping[str, int]], ...]   # (fact field, calendar offset)

    @classmethod
    def of(cls, fields: Iterable[str], ref_dates: Mapping[str, Mapping[str, int]]) -> "FactShape":
        """The shape of the catalogue's fields among `fields`, and the reference dates among them."""
        wanted = set(fields)
        return cls(
            numbers=tuple(f for f in ("amount", "term_days") if f in wanted),
            applicant_numbers=_of_kind("number", wanted),
            applicant_bools=_of_kind("bool", wanted),
            applicant_dates=_of_kind("date", wanted),
            null_means_no=tuple((s, d) for s, d in NULL_MEANS_NO.items() if d in wanted),
            groups=tuple((g, f"is_{g}") for g in GROUPS if f"is_{g}" in wanted),
            documents=tuple(d for d in DOCUMENTS if d in wanted),
            state=frozenset(f for f in UserState().fact_fields() if f in wanted),
            ref_dates=tuple((f, offset) for f, offset in ref_dates.items() if f in wanted))

    @property
    def fields(self) -> frozenset[str]:
        """Every field a fact of this shape holds (in `display`, whatever the request)."""
        return frozenset([*self.numbers, *self.applicant_numbers, *self.applicant_bools,
                          *self.applicant_dates,
                          *(d for _, d in self.null_means_no), *(f for _, f in self.groups),
                          *self.documents, *self.state, *(f for f, _ in self.ref_dates)])

    @classmethod
    def every_field(cls, ref_dates: Mapping[str, Mapping[str, int]]) -> "FactShape":
        return cls.of([*FACT_FIELDS, *ref_dates], ref_dates)

    def reference_days(self, today: dt.date) -> tuple[tuple[str, str, int], ...]:
        """(fact field, ISO date, day number) of each reference date on `today`."""
        out = []
        for name, offset in self.ref_dates:
            day = add_calendar(today, **offset)
            out.append((name, day.isoformat(), (day - EPOCH).days))
        return tuple(out)


def build_fact(request: Mapping[str, Any], state: UserState, today: dt.date,
               ref_dates: Mapping[str, Mapping[str, int]], limit_factor: float = 1.0) -> Fact:
    """The fact of one evaluation with every field of the catalogue (the benchmarks and tests
    build these; a Policy builds each product's shape only, with shaped_fact)."""
    shape = FactShape.every_field(ref_dates)
    return shaped_fact(request, state, shape, shape.reference_days(today), limit_factor)


def shaped_fact(request: Mapping[str, Any], state: UserState, shape: FactShape,
                reference_days: tuple[tuple[str, str, int], ...], limit_factor: float = 1.0) -> Fact:
    """The fact of one evaluation, the fields of `shape` only (`reference_days` from
    shape.reference_days). Written as flat loops, not a helper per field: it runs for
    every evaluation (a decision, its T4 and largest-allowed passes, each recourse candidate),
    and a call per field cost more than the rule engine itself."""
    applicant = request["applicant"]
    values: dict[str, Any] = {}
    display: dict[str, Any] = {}
    missing: set[str] = set()

    for name in shape.numbers:
        value = display[name] = request.get(name)
        if value is None:
            missing.add(name)
        else:
            values[name] = durable_number(value) if type(value) is float else value
    get = applicant.get
    for name in shape.applicant_numbers:
        value = display[name] = get(name)
        if value is None:
            if not (name in NULL_MEANS_NO and name in applicant):   # null means "no" there
                missing.add(name)
        else:
            values[name] = durable_number(value) if type(value) is float else value
    for name in shape.applicant_bools:
        value = display[name] = get(name)
        if value is None:
            if not (name in NULL_MEANS_NO and name in applicant):
                missing.add(name)
        else:
            values[name] = value
    for name in shape.applicant_dates:
        value = get(name)
        if value is None:
            if not (name in NULL_MEANS_NO and name in applicant):
                missing.add(name)
            display[name] = None
        else:
            display[name] = value.isoformat()
            values[name] = (value - EPOCH).days
    for source, derived in shape.null_means_no:
        # null means "no"; only an absent key is missing data.
        if source in applicant:
            values[derived] = display[derived] = applicant[source] is not None
        else:
            missing.add(derived)
            display[derived] = None
    if shape.groups:
        groups = applicant.get("groups") or ()
        for group, name in shape.groups:
            values[name] = display[name] = group in groups
    documents = applicant.get("documents") or {}
    for doc in shape.documents:
        # absent: not claimed (false); null: unknown, missing data if a rule reads it
        claimed = documents.get(doc, False)
        if claimed is None:
            missing.add(doc)
        else:
            values[doc] = claimed
        display[doc] = claimed
    if shape.state:
        for name, value in state.fact_fields(limit_factor).items():
            if name in shape.state:
                display[name] = value
                if value is None:
                    missing.add(name)
                else:
                    values[name] = durable_number(value) if type(value) is float else value
    for name, iso, day in reference_days:
        display[name] = iso
        values[name] = day
    return Fact(values, display, frozenset(missing))
