"""The policy test kit: scenario files a risk analyst reads and extends, and how a case is judged.

A kit is a directory (`rules/tests/`) of YAML files. `base.yaml` holds the applicant every case
starts from (approved for every product), the changes per product that keep it approved, and
the default decision time. Every other file holds `cases:`; a case names what it changes in the
request (`product`, `amount`, `term_days`, `applicant`, merged into the base), the decision
time (`at`), the user's prior state (`state`) and what must come out (`expect`). Only what
`expect` names is compared, so a case says exactly what it pins.

Pure: building the kit from its parsed files, a case's request and state, and comparing a
decision with the expectation. Reading and parsing the files is service.adapters.rules_files's
(`kit_files`, `parse_kit`); evaluating a case needs a Policy (service.usecases.policy_tests does that).
"""
from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional


from service.domain.decision import iso_utc, parse_iso_utc
from service.domain.rulebook import RulesError
from service.domain.userstate import UserState, change_to_dict

BASE_FILE = "base.yaml"
REQUEST_KEYS = ("product", "amount", "term_days", "applicant", "user_id", "application_id")
STATE_TIMES = ("cooldown_until", "cooling_off_until", "temp_limit_expires_at")
EXPECT_KEYS = ("outcome", "reasons", "largest_allowed_amount", "offer", "flags",
               "reapply_after", "state_change")


class KitError(RulesError):
    """The kit itself is malformed; the message names the file and case."""


@dataclass(frozen=True)
class Case:
    file: str
    name: str
    request: Mapping[str, Any]     # the full request document (before the request schema)
    at: dt.datetime
    state: Mapping[str, Any]       # prior state as written (applications: list of times)
    expect: Mapping[str, Any]

    @property
    def label(self) -> str:
        return f"{self.file}: {self.name}"


@dataclass(frozen=True)
class Kit:
    cases: tuple[Case, ...] = field(default=())


def merge(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict:
    """Deep merge: nested mappings merge, everything else replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _instant(where: str, value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):   # YAML reads an unquoted time as a datetime
        return value.replace(tzinfo=value.tzinfo or dt.timezone.utc).astimezone(dt.timezone.utc)
    try:
        return parse_iso_utc(value)
    except (TypeError, ValueError):
        raise KitError(f"{where}: {value!r} is not a time like 2026-11-23T08:00:00Z") from None


def build_kit(documents: Mapping[str, Any]) -> Kit:
    """A kit from its files' parsed documents (name -> document); none is an empty kit.

    The documents are read base first, then each file by name."""
    if not documents:
        return Kit()
    if BASE_FILE not in documents:
        raise KitError(f"{BASE_FILE}: missing (the applicant every case starts from)")
    base = _document(documents, BASE_FILE)
    for key in ("request", "at"):
        if key not in base:
            raise KitError(f"{BASE_FILE}: '{key}' is required")
    cases: list[Case] = []
    for name in sorted(documents):
        if name == BASE_FILE:
            continue
        doc = _document(documents, name)
        raw_cases = doc.get("cases")
        if not isinstance(raw_cases, list):
            raise KitError(f"{name}: expected a list under 'cases'")
        cases.extend(_case(name, index, raw, base) for index, raw in enumerate(raw_cases))
    return Kit(tuple(cases))


def _document(documents: Mapping[str, Any], name: str) -> dict:
    doc = documents[name]
    if not isinstance(doc, dict):
        raise KitError(f"{name}: expected a mapping at the top level")
    return doc


def _case(file: str, index: int, raw: Any, base: Mapping[str, Any]) -> Case:
    where = f"{file}: case {index + 1}"
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise KitError(f"{where}: each case is a mapping with a 'name'")
    where = f"{file}: {raw['name']}"
    unknown = set(raw) - {"name", "at", "state", "expect", *REQUEST_KEYS}
    if unknown:
        raise KitError(f"{where}: unknown key(s) {sorted(unknown)}")
    expect = raw.get("expect")
    if not isinstance(expect, dict) or "outcome" not in expect:
        raise KitError(f"{where}: 'expect' must name at least the outcome")
    if set(expect) - set(EXPECT_KEYS):
        raise KitError(f"{where}: unknown expectation(s) {sorted(set(expect) - set(EXPECT_KEYS))}")
    product = raw.get("product", base["request"].get("product"))
    request = merge(base["request"], (base.get("products") or {}).get(product) or {})
    request = merge(request, {k: raw[k] for k in REQUEST_KEYS if k in raw})
    request.setdefault("user_id", "kit-user")
    request.setdefault("application_id", f"kit-{index + 1}")
    state = raw.get("state") or {}
    if not isinstance(state, dict):
        raise KitError(f"{where}: 'state' must be a mapping")
    return Case(file, raw["name"], request, _instant(f"{where}: at", raw.get("at", base["at"])),
                state, expect)


def build_state(case: Case, window_start: Callable[[dt.datetime], dt.datetime]) -> UserState:
    """The prior state as the store would read it: `applications` (times of earlier evaluated
    applications) is counted from the policy's own T3 window start, like the store does."""
    doc = case.state
    applications = [_instant(f"{case.label}: state.applications", t) for t in doc.get("applications", ())]
    start = window_start(case.at)
    times = {k: _instant(f"{case.label}: state.{k}", doc[k]) if doc.get(k) else None for k in STATE_TIMES}
    return UserState(applications_6m=sum(1 for t in applications if start <= t < case.at),
                     cooldown_until=times["cooldown_until"],
                     cooling_off_application=doc.get("cooling_off_application"),
                     cooling_off_until=times["cooling_off_until"],
                     temp_limit_expires_at=times["temp_limit_expires_at"],
                     temp_limit_grants=int(doc.get("temp_limit_grants", 0)))


def observed(decision: Mapping[str, Any], change) -> dict:
    """What a kit can expect of one decision, in the kit's own terms."""
    largest = [r["inputs"].get("largest_allowed_amount") for r in decision["reasons"]
               if "largest_allowed_amount" in r["inputs"]]
    return {"outcome": decision["outcome"],
            "reasons": sorted({r["code"] for r in decision["reasons"]}),
            "largest_allowed_amount": largest[0] if largest else None,
            "offer": decision["offer"], "flags": sorted(decision["flags"]),
            "reapply_after": decision["reapply_after"],
            "state_change": change_to_dict(change)}


def differences(expect: Mapping[str, Any], seen: Mapping[str, Any]) -> list[str]:
    """One line per expectation that does not hold: 'field: expected X, got Y'."""
    out = []
    for key, wanted in expect.items():
        got = seen[key]
        if key == "reasons":
            wanted = sorted(set(wanted or ()))
        if key == "flags":
            wanted = sorted(wanted or ())
        if key in ("offer", "state_change") and isinstance(wanted, Mapping) and got is not None:
            for sub, value in wanted.items():
                if not _same(value, got.get(sub)):
                    out.append(f"{key}.{sub}: expected {value!r}, got {got.get(sub)!r}")
            continue
        if not _same(wanted, got):
            out.append(f"{key}: expected {wanted!r}, got {got!r}")
    return out


def _same(wanted: Any, got: Any) -> bool:
    if isinstance(wanted, (int, float)) and isinstance(got, (int, float)) \
            and not isinstance(wanted, bool) and not isinstance(got, bool):
        return abs(wanted - got) <= 1e-12 * max(1.0, abs(wanted))
    if isinstance(wanted, dt.datetime):
        wanted = iso_utc(_instant("expect", wanted))
    return wanted == got


def describe_failure(case: Case, problems: list[str], error: Optional[str] = None) -> str:
    """The readable diff printed for a failing case."""
    lines = [f"FAIL {case.label}"]
    if error:
        lines.append(f"    error: {error}")
    lines.extend(f"    {p}" for p in problems)
    return "\n".join(lines)
