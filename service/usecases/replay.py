"""Replay a decision log: re-run each decision at its recorded clock time with its recorded state.

Used to answer "why was this user refused?" (under the rules that made the decision: the same
answer, exactly) and "what would this rule change have done?" (under other rules: which
decisions change, how, and which rules' results moved). Streams its input; `jobs` > 1 spreads
the work over processes (durable_rules is per process), keeping results in input order.
"""
from __future__ import annotations

import datetime as dt
import json
import multiprocessing
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Optional

from marshmallow import ValidationError

from schemas.request import DecideRequestSchema
from service.domain.rulebook import RuleBook
from service.domain.decision import iso_utc, parse_iso_utc
from service.domain.overrides import PENDING_HOURS
from service.domain.policy import Policy
from service.domain.review import LIFT_COOLDOWN, ApplicantCase, applicant_review_effects, review_effects
from service.domain.userstate import change_to_dict, state_from_dict
from service.usecases.live_rules import PolicyBuilder
from service.usecases.ports import RulesArchive

RESULT_FIELDS = ("outcome", "offer", "flags", "funds_available_at", "cancel_until", "reapply_after")
REQUIRED = ("kind", "at", "user_id", "application_id", "rules_version")
DECISION_REQUIRED = ("request", "state", "decision")


class BadRecord(ValueError):
    def __init__(self, line: int, problem: str):
        super().__init__(f"line {line}: {problem}")
        self.line, self.problem = line, problem


class PolicySource:
    """Which rules replay a record: one rules book, one archived version, or each record's own.

    `fixed`: every record under these rules (`--rules DIR`). Otherwise the version asked
    (`--rules-version V`) or each record's own, found as the `default` rules when their version
    matches, else in the archive that `archive()` opens (the service's store). Sent to worker
    processes as this description: each builds its own engines (durable_rules is per process).
    """

    def __init__(self, build: PolicyBuilder, fixed: Optional[RuleBook] = None,
                 version: Optional[str] = None, default: Optional[RuleBook] = None,
                 archive: Optional[Callable[[], Optional[RulesArchive]]] = None):
        self.build, self.fixed, self.version = build, fixed, version
        self.default, self.archive = default, archive
        self._policies: dict[str, Policy] = {}
        self._fixed: Optional[Policy] = None
        self._archive: Optional[RulesArchive] = None
        self._schemas: dict[str, DecideRequestSchema] = {}

    def __getstate__(self):   # sent to worker processes: they build their own engines
        return {k: v for k, v in self.__dict__.items() if k in (
            "build", "fixed", "version", "default", "archive")}

    def __setstate__(self, state):
        self.__init__(**state)

    def for_version(self, version: str) -> Policy:
        if self.fixed is not None:
            if self._fixed is None:
                self._fixed = self.build(self.fixed)
            return self._fixed
        wanted = self.version or version
        if wanted not in self._policies:
            self._policies[wanted] = self.build(self._load(wanted))
        return self._policies[wanted]

    def schema(self, policy: Policy) -> DecideRequestSchema:
        """The request schema of a rules version (its term ranges), built once: building one
        costs more than loading a request with it."""
        schema = self._schemas.get(policy.version)
        if schema is None:
            schema = self._schemas[policy.version] = DecideRequestSchema(term_ranges=policy.book.term_ranges())
        return schema

    def book(self, version: str) -> RuleBook:
        """The rules of `version` wherever this source finds them (the fixed rules, the default
        rules, the archive): what a rules diff of a record's version and the candidate's reads."""
        if self.fixed is not None and self.fixed.version == version:
            return self.fixed
        return self._load(version)

    def _load(self, version: str) -> RuleBook:
        if self.default is not None and self.default.version == version:
            return self.default
        if self.archive is not None:
            if self._archive is None:
                self._archive = self.archive()
            book = self._archive.load(version) if self._archive else None
            if book is not None:
                return book
        raise LookupError(f"rules version {version} is not available: pass --rules DIR, or set "
                          "REDIS_URL to the service's Redis (it archives every version it ran)")


@dataclass
class Replayed:
    line: int
    kind: str
    record: dict = field(repr=False)
    new: Optional[dict] = field(default=None, repr=False)
    changed: bool = False
    exact: bool = True
    changed_rules: tuple[str, ...] = ()


def results_of(decision: dict) -> dict:
    """What a decision decided, without the inputs it showed (thresholds may differ)."""
    out = {name: decision[name] for name in RESULT_FIELDS}
    out["reasons"] = [(r["code"], r["rule_id"]) for r in decision["reasons"]]
    out["rules"] = {f"{e['rule_id']}.{e['check']}": (e["passed"], e["matched"]) for e in decision["trace"]}
    return out


def _without_version(decision: dict) -> dict:
    # `arm` (champion/challenger) names who decided, as rules_version does; not what was decided
    return {k: v for k, v in decision.items() if k not in ("rules_version", "arm")}


def parse_line(number: int, text: str) -> dict:
    try:
        record = json.loads(text)
    except ValueError as exc:
        raise BadRecord(number, f"not valid JSON ({exc})") from None
    if not isinstance(record, dict):
        raise BadRecord(number, "not a JSON object")
    missing = [name for name in REQUIRED if name not in record]
    if record.get("kind") == "decision":
        missing += [name for name in DECISION_REQUIRED if name not in record]
    if missing:
        raise BadRecord(number, f"missing field(s) {', '.join(missing)}")
    return record


AUDITED_REQUIRED = {"review": ("request", "state", "review", "change"),
                    "override": ("action", "operator_id", "reason", "state"),
                    "override_request": ("action", "override_id", "requested_by", "reason",
                                         "expires_at", "state"),
                    "human_review": ("decided_at", "deadline", "request")}
# counted in a summary only when a log holds any: summaries of older logs stay as they were
OPTIONAL_COUNTS = frozenset({"override_requests"})
EFFECT_FIELDS = ("offer", "funds_available_at", "cancel_until", "reapply_after")


def replay_audited(source: PolicySource, number: int, record: dict) -> Replayed:
    """A review, override or request for a person: recompute what it did from its recorded
    inputs and state at its time, and compare that with what it recorded."""
    missing = [name for name in AUDITED_REQUIRED[record["kind"]] if name not in record]
    if missing:
        raise BadRecord(number, f"missing field(s) {', '.join(missing)}")
    try:
        now = parse_iso_utc(record["at"])
        if record["kind"] == "human_review":
            return _replay_request(source, number, record, now)
        state = state_from_dict(record["state"])
        if record["kind"] in ("override", "override_request"):
            return _replay_override(number, record, state, now)
        return _replay_review(source, number, record, state, now)
    except ValidationError as exc:
        raise BadRecord(number, f"request is not valid: {exc.messages}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise BadRecord(number, f"malformed record: {exc!r}") from None


def _replay_override(number: int, record: dict, state, now) -> Replayed:
    """An override (one step, or a four-eyes approval) and a request for one were allowed iff a
    window was active; a request waited PENDING_HOURS from its time."""
    same = record["action"] == LIFT_COOLDOWN and state.in_cooldown(now)
    if record["kind"] == "override_request":
        same = same and record["expires_at"] == iso_utc(now + dt.timedelta(hours=PENDING_HOURS))
    return Replayed(number, record["kind"], record, changed=not same, exact=same)


def _replay_review(source: PolicySource, number: int, record: dict, state, now) -> Replayed:
    policy = source.for_version(record["rules_version"])
    request = source.schema(policy).load(record["request"])
    given = record["review"]
    lifts = False
    if "applicant_case" in record:      # a case its applicant asked for
        effects, change, lifts = applicant_review_effects(
            policy, request, state, now, given["outcome"], ApplicantCase(**record["applicant_case"]))
    else:
        effects, change = review_effects(policy, request, state, now, given["outcome"],
                                         given["reason_codes"])
    same = ({k: given.get(k) for k in EFFECT_FIELDS} == effects
            and change_to_dict(change) == record["change"]
            and lifts == record.get("lifts_cooldown", False))
    return Replayed(number, "review", record, dict(given, **effects), changed=not same, exact=same)


def _replay_request(source: PolicySource, number: int, record: dict, now) -> Replayed:
    """A request for a person was allowed iff it came by the deadline its decision's rules
    version set (human_review_days after the decision)."""
    book = source.book(record["rules_version"])
    deadline = parse_iso_utc(record["decided_at"]) + dt.timedelta(days=book.time.human_review_days)
    same = iso_utc(deadline) == record["deadline"] and now <= deadline
    return Replayed(number, "human_review", record, changed=not same, exact=same)


def replay_one(source: PolicySource, number: int, text: str) -> Replayed:
    record = parse_line(number, text)
    if record["kind"] in AUDITED_REQUIRED:
        return replay_audited(source, number, record)
    if record["kind"] != "decision":
        return Replayed(number, record["kind"], record)
    try:
        policy = source.for_version(record["rules_version"])
        request = source.schema(policy).load(record["request"])
        state = state_from_dict(record["state"])
        now = parse_iso_utc(record["at"])
    except ValidationError as exc:
        raise BadRecord(number, f"request is not valid: {exc.messages}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise BadRecord(number, f"malformed record: {exc!r}") from None
    return compared(number, record, policy.evaluate(request, state, now).decision.to_dict())


def compared(number: int, record: dict, new: dict) -> Replayed:
    """A logged decision beside its new decision (replayed here, or simulated)."""
    old = record["decision"]
    before, after = results_of(old), results_of(new)
    rules = tuple(sorted(k for k in set(before["rules"]) | set(after["rules"])
                         if before["rules"].get(k) != after["rules"].get(k)))
    return Replayed(number, "decision", record, new, changed=before != after,
                    exact=_without_version(old) == _without_version(new), changed_rules=rules)


# -- running many ----------------------------------------------------------------------------------
_WORKER_SOURCE: Optional[PolicySource] = None


def _init_worker(source: PolicySource) -> None:
    global _WORKER_SOURCE
    _WORKER_SOURCE = source


def _work(batch: list[tuple[int, str]], skip_bad: bool) -> list[Any]:
    out = []
    for number, text in batch:
        try:
            out.append(replay_one(_WORKER_SOURCE, number, text))
        except BadRecord as exc:
            if not skip_bad:
                return out + [exc]
            out.append(exc)
    return out


def _batches(lines: Iterable[tuple[int, str]], size: int) -> Iterator[list[tuple[int, str]]]:
    batch = []
    for item in lines:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def run(lines: Iterable[tuple[int, str]], source: PolicySource, jobs: int = 1,
        skip_bad: bool = False, batch_size: int = 200) -> Iterator[Any]:
    """Replayed results (or BadRecord) in input order; stops at the first bad line unless skip_bad.

    `batch_size`: records a worker process takes at a time (with jobs > 1)."""
    if jobs <= 1:
        # one record at a time: a batch would keep its parsed records and results alive
        # together, and that many live objects make the garbage collector's passes a third
        # of the run (their batching only pays across processes)
        _init_worker(source)
        for number, text in lines:
            for item in _work([(number, text)], skip_bad):
                yield item
                if isinstance(item, BadRecord) and not skip_bad:
                    return
        return
    context = multiprocessing.get_context("fork")
    with context.Pool(jobs, initializer=_init_worker, initargs=(source,)) as pool:
        pending: deque = deque()
        batches = _batches(lines, batch_size)
        for batch in batches:                 # at most 2 batches a process in flight: bounded memory
            pending.append(pool.apply_async(_work, (batch, skip_bad)))
            if len(pending) >= jobs * 2:
                for item in pending.popleft().get():
                    yield item
                    if isinstance(item, BadRecord) and not skip_bad:
                        pool.terminate()
                        return
        while pending:
            for item in pending.popleft().get():
                yield item
                if isinstance(item, BadRecord) and not skip_bad:
                    pool.terminate()
                    return


@dataclass
class Summary:
    total: int = 0
    identical: int = 0
    changed: int = 0
    exact: int = 0
    other_records: int = 0
    bad_lines: int = 0
    transitions: Counter = field(default_factory=Counter)
    rules: Counter = field(default_factory=Counter)
    # reviews, overrides and requests for a person: [replayed, identical]
    audited: dict = field(default_factory=lambda: {"reviews": [0, 0], "overrides": [0, 0],
                                                   "human_reviews": [0, 0],
                                                   "override_requests": [0, 0]})

    def add(self, item: Replayed) -> None:
        if item.kind in AUDITED_REQUIRED:
            self.audited[f"{item.kind}s"][0] += 1
            self.audited[f"{item.kind}s"][1] += not item.changed
            return
        if item.kind != "decision":
            self.other_records += 1
            return
        self.total += 1
        self.exact += item.exact
        if item.changed:
            self.changed += 1
            old, new = item.record["decision"]["outcome"], item.new["outcome"]
            if old != new:
                self.transitions[f"{old}->{new}"] += 1
            self.rules.update(item.changed_rules)
        else:
            self.identical += 1

    def to_dict(self) -> dict:
        return {"total": self.total, "identical": self.identical, "changed": self.changed,
                "exact": self.exact, "other_records": self.other_records,
                "bad_lines": self.bad_lines,
                "transitions": dict(sorted(self.transitions.items())),
                "rules": dict(sorted(self.rules.items())),
                **{kind: {"total": total, "identical": same}
                   for kind, (total, same) in self.audited.items()
                   if total or kind not in OPTIONAL_COUNTS}}


def change_report(item: Replayed) -> dict:
    """One changed decision: old and new outcome and reasons, and the trace entries that differ."""
    old, new = item.record["decision"], item.new
    old_trace = {f"{e['rule_id']}.{e['check']}": e for e in old["trace"]}
    new_trace = {f"{e['rule_id']}.{e['check']}": e for e in new["trace"]}
    trace = [{"rule": key, "old": old_trace.get(key), "new": new_trace.get(key)}
             for key in sorted(set(old_trace) | set(new_trace))
             if old_trace.get(key) != new_trace.get(key)]
    return {"line": item.line, "at": item.record["at"], "user_id": item.record["user_id"],
            "application_id": item.record["application_id"],
            "old": {"outcome": old["outcome"], "reasons": [r["code"] for r in old["reasons"]],
                    "rules_version": old["rules_version"], "reapply_after": old.get("reapply_after")},
            "new": {"outcome": new["outcome"], "reasons": [r["code"] for r in new["reasons"]],
                    "rules_version": new["rules_version"], "reapply_after": new.get("reapply_after")},
            "changed_rules": list(item.changed_rules), "trace": trace}


def replay(lines: Iterable[tuple[int, str]], source: PolicySource, *, jobs: int = 1,
           skip_bad: bool = False, on_change: Optional[Callable[[dict], None]] = None,
           on_bad: Optional[Callable[[BadRecord], None]] = None,
           on_item: Optional[Callable[[Any], None]] = None) -> Summary:
    summary = Summary()
    for item in run(lines, source, jobs=jobs, skip_bad=skip_bad):
        if on_item:
            on_item(item)
        if isinstance(item, BadRecord):
            summary.bad_lines += 1
            if on_bad:
                on_bad(item)
            if not skip_bad:
                raise item
            continue
        summary.add(item)
        if item.changed and on_change and item.kind == "decision":
            on_change(change_report(item))
    return summary
