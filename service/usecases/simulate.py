"""Replay that carries state forward: what the log's period would have looked like under other rules.

`replay` re-runs each decision with the state it recorded. Simulation instead builds each
user's state from the candidate's own decisions, in log order (the export's time order): a
rejection that no longer happens opens no 90-day window, and an application the old window
refused (REAPPLY_COOLDOWN, COOLING_OFF_PENDING) is evaluated on its payload. The state lives
in a store of the partition's own (the in-memory adapters, which keep the Redis adapters'
promises), written by the service's own unit of work and writes (UserWork, decision_write,
cancel_write, grace_write), so T1 windows, T2 holds, T3 counts, T4 grants and T5 uses follow
the same code as live decisions.

Other records are applied where they still apply, and counted where they no longer can: a
cancel whose loan is not in a cooling-off hold under the candidate, a grace use beyond the
candidate's limit, a review of an application the candidate did not send to review, a lifted
window the candidate never opened, a request for a person about a decision the candidate did not
make a rejection. Reviews, overrides and those requests run through the live use cases
(Reviews.review, Audit.lift_cooldown and the four-eyes steps, ApplicantRights) with the clock at the record's time, so their effects
(T2 hold or 90-day window from review time) are the service's. A record kind this module has no
handler for is counted and skipped (`HANDLERS` maps kinds to handlers; a new record kind
registers one): erasures are, since the simulation holds no ERASURE_HMAC_SECRET to find the
erased user, and an export after an erasure holds none of the user's earlier records anyway;
so are the receipts of copies handed out (`export`), which change nothing.

State never crosses users, so `jobs` > 1 partitions the log by a stable hash of the user id,
one process and one store a partition; every figure is a count and the changed decisions are
listed by line, so the answer is the same for any number of jobs.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import json
import multiprocessing
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from marshmallow import ValidationError

from schemas.request import DecideRequestSchema
from service.domain.clock import Clock, FixedClock
from service.domain.decision import parse_iso_utc
from service.domain.policy import Policy
from service.domain.review import LIFT_COOLDOWN
from service.usecases import ports
from service.usecases.audit import Audit
from service.usecases.decide import Decisions, cancel_write, decision_write, grace_write
from service.usecases.errors import Conflict, Forbidden, NotFound
from service.usecases.impact import Impact
from service.usecases.live_rules import LiveRules
from service.usecases.review import REVIEW_INPUT, Reviews
from service.usecases.review_desk import ReviewDesk
from service.usecases.reviews_index import CaseIndex
from service.usecases.rights import ApplicantRights
from service.usecases.unit_of_work import UserWork
from service.usecases.replay import (
    EFFECT_FIELDS,
    BadRecord,
    PolicySource,
    Replayed,
    Summary,
    change_report,
    compared,
    parse_line,
)

FREEZE_EVERY = 1000
STATE_REFUSALS = frozenset({"REAPPLY_COOLDOWN", "COOLING_OFF_PENDING"})
_USER_ID = re.compile(r'"user_id"\s*:\s*("(?:[^"\\]|\\.)*")')


def refused_by_state(decision: dict) -> bool:
    """A refusal by state (T1, T2): no rule was evaluated, only the user's state refused."""
    return decision["outcome"] == "rejected" and any(
        r["code"] in STATE_REFUSALS for r in decision["reasons"])


@dataclass
class Simulation:
    """What a simulation found: replay's summary, plus what only carrying state forward shows."""

    summary: Summary = field(default_factory=Summary)
    state_refusals: Counter = field(default_factory=Counter)   # before, after, vanished, appeared
    applied: Counter = field(default_factory=Counter)          # kind -> records applied
    no_longer_apply: Counter = field(default_factory=Counter)  # kind -> records that cannot apply
    skipped_kinds: Counter = field(default_factory=Counter)    # kind with no handler -> records
    changes: list = field(default_factory=list)                # change reports (when kept)
    bad: list = field(default_factory=list)                    # (line, problem)
    impact: Optional[Impact] = None

    def merge(self, other: "Simulation") -> None:
        mine, theirs = self.summary, other.summary
        for name in ("total", "identical", "changed", "exact", "other_records", "bad_lines"):
            setattr(mine, name, getattr(mine, name) + getattr(theirs, name))
        mine.transitions.update(theirs.transitions)
        mine.rules.update(theirs.rules)
        for kind, (total, same) in theirs.audited.items():
            mine.audited[kind] = [mine.audited[kind][0] + total, mine.audited[kind][1] + same]
        for name in ("state_refusals", "applied", "no_longer_apply", "skipped_kinds"):
            getattr(self, name).update(getattr(other, name))
        self.changes = sorted(self.changes + other.changes, key=lambda c: c["line"])
        self.bad = sorted(self.bad + other.bad)
        if other.impact is not None:
            if self.impact is None:
                self.impact = Impact()
            self.impact.merge(other.impact)

    def to_dict(self) -> dict:
        refusals = {k: self.state_refusals[k] for k in ("before", "after", "vanished", "appeared")}
        return {**self.summary.to_dict(), "simulated": True, "state_refusals": refusals,
                "applied": dict(sorted(self.applied.items())),
                "no_longer_apply": dict(sorted(self.no_longer_apply.items())),
                "skipped_kinds": dict(sorted(self.skipped_kinds.items()))}


# The stores of one partition: of its own, in memory (no other process reads them, and they
# go with it), on the partition's clock.
StoresFactory = Callable[[Clock], ports.Stores]


class Service:
    """The use cases of one partition, on its stores, with the clock at each record's time."""

    def __init__(self, policy: Policy, stores: ports.Stores, clock: FixedClock):
        self.clock = clock
        self.rules = LiveRules(policy, build=lambda book: policy)   # switched per record version
        work = UserWork(stores.users, clock, lambda: self.rules.policy)
        cases = CaseIndex(stores.queue, stores.users)
        self.work = work
        self.decisions = Decisions(work, self.rules, cases, stores.erased)
        self.reviews = Reviews(work, self.rules, cases)
        self.desk = ReviewDesk(work, self.rules)
        self.audit = Audit(self.decisions, stores.erased, stores.receipts, cases,
                           overrides=stores.overrides)
        self.rights = ApplicantRights(work, self.rules, cases, stores.receipts)

    @property
    def policy(self) -> Policy:
        return self.rules.policy


class Partition:
    """Some users' records, in log order, against one store of their own."""

    def __init__(self, source: PolicySource, stores: StoresFactory, skip_bad: bool,
                 keep_changes: bool, impact: bool):
        self.source, self.stores = source, stores
        self.skip_bad, self.keep_changes = skip_bad, keep_changes
        self.result = Simulation(impact=Impact() if impact else None)
        self.service: Optional[Service] = None
        self.schemas: dict[str, DecideRequestSchema] = {}
        self.stopped = False   # at the first bad record, unless skip_bad
        self.fed = 0

    def feed(self, number: int, text: str) -> None:
        if self.stopped:
            return
        self.fed += 1
        if self.fed % FREEZE_EVERY == 0:
            # the store holds every decision made so far (long-lived, no reference cycles):
            # moved out of the collector's sight, the full collections a long log triggers
            # stop scanning them over and over (freed by reference counting all the same)
            gc.freeze()
        try:
            record = parse_line(number, text)
            handler = HANDLERS.get(record["kind"])
            if handler is None:
                self.result.skipped_kinds[str(record["kind"])] += 1
                self.result.summary.add(Replayed(number, str(record["kind"]), record))
                return
            self.result.summary.add(handler(self, number, record))
        except BadRecord as bad:
            self.result.summary.bad_lines += 1
            self.result.bad.append((bad.line, bad.problem))
            self.stopped = not self.skip_bad

    def service_for(self, version: str) -> Service:
        """The partition's service under the rules that decide `version`'s records now."""
        policy = self.source.for_version(version)
        if self.service is None:
            # the store's clock is the records' (lock expiry and TTLs follow the log's time)
            clock = FixedClock(dt.datetime.now(dt.timezone.utc))
            self.service = Service(policy, self.stores(clock), clock)
        elif self.service.policy is not policy:
            self.service.rules.use(policy)
        return self.service

    def schema(self, policy: Policy) -> DecideRequestSchema:
        if policy.version not in self.schemas:
            self.schemas[policy.version] = DecideRequestSchema(term_ranges=policy.book.term_ranges())
        return self.schemas[policy.version]

    def count_applied(self, kind: str, applied: bool) -> None:
        (self.result.applied if applied else self.result.no_longer_apply)[kind] += 1


def _at(number: int, record: dict) -> dt.datetime:
    try:
        return parse_iso_utc(record["at"])
    except (TypeError, ValueError) as exc:
        raise BadRecord(number, f"malformed record: {exc!r}") from None


def simulate_decision(part: Partition, number: int, record: dict) -> Replayed:
    """Decide the logged request again, on the state the candidate's own decisions built."""
    service = part.service_for(record["rules_version"])
    now = _at(number, record)
    try:
        request = part.schema(service.policy).load(record["request"])
    except ValidationError as exc:
        raise BadRecord(number, f"request is not valid: {exc.messages}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadRecord(number, f"malformed record: {exc!r}") from None

    def step(snapshot, now):
        outcome = service.policy.evaluate(request, snapshot.state, now)
        decision = outcome.decision.to_dict()
        # no digest: the partition's store is never asked to recognise a request sent again
        # (a log holds each application's decision once), and it costs a canonical encoding
        return decision, decision_write(service.policy, record["request"], decision, outcome.change,
                                        now, digest="-")

    service.clock.set(now)
    new = service.work.run(record["user_id"], record["application_id"], step, now=now)
    item = rules_run_both_times(compared(number, record, new))
    _count(part, item)
    return item


def rules_run_both_times(item: Replayed) -> Replayed:
    """The decision with the rules whose results changed among those that ran both times.

    A refusal by state runs no rule: when one stands on either side (the candidate's window
    refuses an application the log's rules evaluated, or the other way round), every rule of
    the evaluated side differs from "not run", which counted each of them as changed for each
    such decision, as if E2 had moved. Such a decision changed because of the user's state
    (state_refusals counts it), so it names no changed rule."""
    if refused_by_state(item.record["decision"]) or refused_by_state(item.new):
        return dataclasses.replace(item, changed_rules=())
    return item


def _count(part: Partition, item: Replayed) -> None:
    before, after = refused_by_state(item.record["decision"]), refused_by_state(item.new)
    refusals = part.result.state_refusals
    refusals["before"] += before
    refusals["after"] += after
    refusals["vanished"] += before and not after
    refusals["appeared"] += after and not before
    if part.result.impact is not None:
        part.result.impact.add(item, refused_by_state=before or after)
    if item.changed and part.keep_changes:
        part.result.changes.append(change_report(item))


def simulate_cancel(part: Partition, number: int, record: dict) -> Replayed:
    """A cancel applies while the candidate holds the loan's funds; otherwise it is counted."""
    service = part.service_for(record["rules_version"])

    def step(snapshot, now):
        stored = snapshot.application
        if stored is None or stored.status_at(now) != "cooling_off":
            return False, None
        return True, cancel_write(snapshot, now)[1]

    service.clock.set(_at(number, record))
    applied = service.work.run(record["user_id"], record["application_id"], step,
                               now=_at(number, record))
    part.count_applied("cancel", applied)
    return Replayed(number, "cancel", record)


def simulate_grace(part: Partition, number: int, record: dict) -> Replayed:
    """A grace use applies within the candidate's T5 limits; otherwise it is counted."""
    service = part.service_for(record["rules_version"])
    grace = service.policy.book.time.grace
    days = record.get("days")
    if not isinstance(days, int):
        raise BadRecord(number, "a grace record needs whole `days`")

    def step(snapshot, now):
        if not 1 <= days <= grace.max_days or len(snapshot.state.grace_uses) >= grace.max_uses:
            return False, None
        return True, grace_write(service.policy, days, now, record.get("use_id"))

    service.clock.set(_at(number, record))
    applied = service.work.run(record["user_id"], None, step, now=_at(number, record))
    part.count_applied("grace", applied)
    return Replayed(number, "grace", record)


def simulate_review(part: Partition, number: int, record: dict) -> Replayed:
    """A review applies, through the live use case at review time, while the candidate still
    sent the application to review; otherwise (NotFound, Conflict) it is counted."""
    service = part.service_for(record["rules_version"])
    given = record.get("review")
    if not isinstance(given, dict) or any(name not in given for name in REVIEW_INPUT):
        raise BadRecord(number, "a review record needs the reviewer's input in `review`")
    service.clock.set(_at(number, record))
    try:
        view = service.reviews.review(record["application_id"],
                                      dict(given, user_id=record["user_id"])).view["review"]
    except (NotFound, Conflict):
        part.count_applied("review", False)
        return Replayed(number, "review", record, changed=True, exact=False)
    part.count_applied("review", True)
    same = all(view.get(name) == given.get(name) for name in EFFECT_FIELDS)
    return Replayed(number, "review", record, view, changed=not same, exact=same)


def simulate_override(part: Partition, number: int, record: dict) -> Replayed:
    """Lifting a window applies, through the live use case, while the candidate's window is
    active: in one step, or as the approval of the four-eyes override the candidate's log asked
    for; otherwise (Conflict; NotFound: the candidate asked for none) it is counted. A request
    for one asks for it again, under its logged id, and changes no state."""
    service = part.service_for(record["rules_version"])
    kind = record["kind"]
    if record.get("action") != LIFT_COOLDOWN:
        raise BadRecord(number, f"unknown override action {record.get('action')!r}")
    service.clock.set(_at(number, record))
    try:
        if kind == "override_request":
            service.audit.request_override(record["user_id"], str(record.get("requested_by")),
                                           str(record.get("reason")), str(record.get("override_id")))
        elif record.get("override_id"):
            service.audit.approve_override(str(record["override_id"]), str(record.get("approved_by")))
        else:
            service.audit.lift_cooldown(record["user_id"], str(record.get("operator_id")),
                                        str(record.get("reason")))
    except (Conflict, NotFound, Forbidden):
        part.count_applied(kind, False)
        return Replayed(number, kind, record, changed=True, exact=False)
    part.count_applied(kind, True)
    return Replayed(number, kind, record)


def simulate_human_review(part: Partition, number: int, record: dict) -> Replayed:
    """A request for a person applies, through the live use case at its time, while the
    candidate's decision is one the applicant could send to a person then (a rejection the
    rules made, within the candidate's deadline); otherwise (the candidate approved it, say)
    it is counted."""
    service = part.service_for(record["rules_version"])
    request = record.get("request")
    if not isinstance(request, dict):
        raise BadRecord(number, "a human_review record needs the decision's `request`")
    service.clock.set(_at(number, record))
    try:
        service.rights.request_human_review(record["user_id"], record["application_id"],
                                            record.get("statement"), request)
    except (NotFound, Conflict):
        part.count_applied("human_review", False)
        return Replayed(number, "human_review", record, changed=True, exact=False)
    part.count_applied("human_review", True)
    return Replayed(number, "human_review", record)


DESK_FIELDS = {"review_claim": ("application_id", "reviewer_id", "action"),
               "review_note": ("application_id", "reviewer_id", "text")}


def simulate_desk(part: Partition, number: int, record: dict) -> Replayed:
    """A claim, release or note applies, through the live use case at its time, while the
    candidate still sent the application to review; otherwise it is counted."""
    service, kind = part.service_for(record["rules_version"]), record["kind"]
    missing = [name for name in DESK_FIELDS[kind] if name not in record]
    if missing:
        raise BadRecord(number, f"a {kind} record needs {', '.join(missing)}")
    if kind == "review_claim" and record["action"] not in ("claim", "release"):
        raise BadRecord(number, f"unknown claim action {record['action']!r}")
    args = (record["application_id"], record["user_id"], record["reviewer_id"])
    service.clock.set(_at(number, record))
    try:
        if kind == "review_note":
            service.desk.note(*args, record["text"])
        else:
            getattr(service.desk, record["action"])(*args)
    except (NotFound, Conflict):
        part.count_applied(kind, False)
        return Replayed(number, kind, record, changed=True, exact=False)
    part.count_applied(kind, True)
    return Replayed(number, kind, record)


Handler = Callable[[Partition, int, dict], Replayed]
HANDLERS: dict[str, Handler] = {
    "decision": simulate_decision,
    "cancel": simulate_cancel,
    "grace": simulate_grace,
    "review": simulate_review,
    "override": simulate_override,
    "override_request": simulate_override,
    "human_review": simulate_human_review,
    "review_claim": simulate_desk,
    "review_note": simulate_desk,
}


# -- running: one partition, or one process per partition -----------------------------------------
def partition_of(text: str, jobs: int) -> int:
    """The partition of a log line: a stable hash of its user id (the first `user_id` field,
    which the export writes before the request), so every record of a user goes to one."""
    match = _USER_ID.search(text)
    if match is None:
        return 0   # not a record: its partition reports it as bad
    try:
        user_id = json.loads(match.group(1))
    except ValueError:
        return 0
    return zlib.crc32(str(user_id).encode()) % jobs


def _partition_main(source, options, inbox, outbox) -> None:
    part = Partition(source, *options)
    failure = None
    while (batch := inbox.get()) is not None:
        if failure is not None:
            continue   # keep draining: the parent never blocks on a full queue
        try:
            for number, text in batch:
                part.feed(number, text)
        except Exception as exc:   # e.g. a rules version that cannot be found
            failure = exc
    outbox.put(("failed", failure) if failure is not None else ("done", part.result))


def _run_processes(lines: Iterable[tuple[int, str]], source: PolicySource, jobs: int,
                   options: tuple, batch_size: int) -> Simulation:
    context = multiprocessing.get_context("fork")
    inboxes = [context.Queue(maxsize=4) for _ in range(jobs)]
    outbox = context.Queue()
    workers = [context.Process(target=_partition_main, args=(source, options, inbox, outbox),
                               daemon=True) for inbox in inboxes]
    for worker in workers:
        worker.start()
    buffers: list[list] = [[] for _ in range(jobs)]
    try:
        for number, text in lines:
            index = partition_of(text, jobs)
            buffers[index].append((number, text))
            if len(buffers[index]) >= batch_size:
                inboxes[index].put(buffers[index])
                buffers[index] = []
    finally:
        for index, inbox in enumerate(inboxes):
            if buffers[index]:
                inbox.put(buffers[index])
            inbox.put(None)
    results = [outbox.get() for _ in workers]
    for worker in workers:
        worker.join()
    total = Simulation(impact=Impact() if options[-1] else None)
    for status, value in results:
        if status == "failed":
            raise value
        total.merge(value)
    return total


def simulate(lines: Iterable[tuple[int, str]], source: PolicySource, stores: StoresFactory, *, jobs: int = 1,
             skip_bad: bool = False, keep_changes: bool = False, impact: bool = False,
             on_bad: Optional[Callable[[BadRecord], None]] = None,
             batch_size: int = 200) -> Simulation:
    """Simulate the log under `source`'s rules; raises the first BadRecord unless skip_bad."""
    options = (stores, skip_bad, keep_changes, impact)
    if jobs <= 1:
        part = Partition(source, *options)
        for number, text in lines:
            part.feed(number, text)
            if part.stopped:
                break
        result = part.result
    else:
        result = _run_processes(lines, source, jobs, options, batch_size)
    bads = [BadRecord(line, problem) for line, problem in result.bad]
    if bads and not skip_bad:
        raise bads[0]
    for bad in bads:
        if on_bad:
            on_bad(bad)
    return result
