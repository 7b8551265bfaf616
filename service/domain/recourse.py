"""Recourse: the smallest changes that turn a refusal into an offer, each one verified.

Pure. Which request fields an applicant can act on, and how, is declared in rules/recourse.yaml
(the RuleBook's `recourse`); this module only searches. Every candidate is evaluated through the
Policy, so through the same RuleEvaluator (on durable_rules: the same process-wide engine lock),
the same rules and the same clock arithmetic as the decision itself. Nothing is inferred from a
condition that is not then confirmed by an evaluation: an option is returned only when the
changed application, evaluated at the option's time, got the option's outcome.

The state an option is verified under is the user's state as THIS decision leaves it (its T3
count, the 90-day window it opens), because that is what the applicant meets when sending the
changed application: a refusal that opens the window gets options that wait until its end.

The search, bounded by `max_evaluations`:
1. the start time: now, or the end of the window that refuses a retry (T1, T2);
2. probes: every relevant supply at once, at each candidate amount (largest first), then the
   time window a date rule names. They tell which reasons any change lifts (the rest are
   `unreachable`) and whether an offer is reachable at all; if not, the search stops there;
3. sets of 1, 2, ... `max_fields` fields (declaration order, amounts largest first), each set
   touching every rule that refused; the first size that yields options is the answer.
"""
from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Protocol
from zoneinfo import ZoneInfo

from service.domain import conditions as cond
from service.domain.decision import Change, Decision, Option, Recourse, iso_utc, parse_iso_utc
from service.domain.facts import FACT_FIELDS, add_calendar
from service.domain.outcome import Outcome, Verdict
from service.domain.product_plan import ProductPlan, RuleEvaluator
from service.domain.rulebook import Actionable, Rule, RuleBook
from service.domain.userstate import StateChange, UserState

ACCEPTED = ("approved", "cooling_off")
STATE_CODES = ("REAPPLY_COOLDOWN", "COOLING_OFF_PENDING")
# RULEBOOK "Resolved points": date rules use calendar dates in Asia/Shanghai (as policy.py).
POLICY_TZ = ZoneInfo("Asia/Shanghai")

Candidate = tuple[tuple[Actionable, Any], ...]   # (declared action, value to set) pairs


class Evaluator(Protocol):
    """What the search reads of the Policy that made the decision: its rules, its compiled
    plans, and the verdict of a changed application. The Policy is one; policy.py imports
    this module and this module never imports it."""

    @property
    def book(self) -> RuleBook: ...

    @property
    def engine(self) -> RuleEvaluator: ...

    def product_recourse(self, product: str) -> "ProductRecourse": ...

    def verdict(self, request: Mapping[str, Any], state: UserState, now: dt.datetime) -> Verdict:
        ...


@dataclass(frozen=True)
class ProductRecourse:
    """What the search reads of one product's rules whatever the application, worked out once
    per rules version (the Policy holds one per product): for each rule, the request fields that
    could lift it; the amounts its limits name; the fields that waiting changes."""

    sources: Mapping[str, frozenset[str]]           # rule key -> request fields
    amounts: tuple[tuple[float, Any], ...]          # (limit, as JSON) within the range, largest first
    waits: frozenset[str]


def product_recourse(book: RuleBook, plan: ProductPlan) -> ProductRecourse:
    product, spec = plan.product, book.recourse
    document = f"applicant.documents.{book.time.temporary_limit.requires_document}"
    sources = {}
    for compiled in plan.rules:
        rule = compiled.rule
        fields = {FACT_FIELDS[f].source for f in rule.fields if FACT_FIELDS[f].source}
        if "limit_factor" in rule.fields:   # T4: the document that grants the raised limits
            fields.add(document)
        sources[rule.key] = frozenset(fields)
    raised = 1.0 + book.time.temporary_limit.increase
    values = {product.min_amount, product.max_amount}
    for compiled in plan.rules:
        if compiled.limit is not None:
            values.add(compiled.limit)
            if compiled.scales_with_limit:
                values.add(compiled.limit * raised)
    amounts = tuple((v, _json_value(v)) for v in sorted(values, reverse=True)
                    if product.min_amount <= v <= product.max_amount)
    waits = frozenset(a.field for a in spec.actionable if a.action == "wait") if spec else frozenset()
    return ProductRecourse(sources, amounts, waits)


def state_after(state: UserState, change: StateChange) -> UserState:
    """The user's state once `change` is applied: what a changed application meets."""
    return UserState(
        applications_6m=state.applications_6m + (1 if change.count_application else 0),
        cooldown_until=change.cooldown_until or state.cooldown_until,
        cooling_off_application=state.cooling_off_application,
        cooling_off_until=change.cooling_off_until or state.cooling_off_until,
        temp_limit_expires_at=change.temp_limit_expires_at or state.temp_limit_expires_at,
        temp_limit_grants=state.temp_limit_grants + (1 if change.temp_limit_expires_at else 0),
        grace_uses=state.grace_uses)


def search(policy: Evaluator, request: Mapping[str, Any], state: UserState, now: dt.datetime,
           outcome: Outcome) -> Optional[Recourse]:
    """The recourse of one decision: None for an offer, else the verified options."""
    if outcome.decision.outcome in ACCEPTED:
        return None
    return _Search(policy, request, state, now, outcome).run()


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _get(request: Mapping[str, Any], path: str) -> Any:
    node: Any = request
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def apply_changes(request: Mapping[str, Any], changes: Iterable[tuple[str, Any]]) -> dict:
    """A copy of the request with each (request path, value) set.

    Only the objects on a changed path are copied; the rest is shared with `request`, which is
    never written to (a deep copy of the whole request cost more than the evaluation)."""
    out = dict(request)
    for path, value in changes:
        node = out
        *parents, last = path.split(".")
        for part in parents:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, dict) else {}
            node = node[part]
        node[last] = value
    return out


def _codes(decision: Decision) -> set[str]:
    return {r.code for r in decision.reasons}


class _Search:
    """One recourse search; counts its evaluations against the declared cap."""

    def __init__(self, policy: Evaluator, request: Mapping[str, Any], state: UserState,
                 now: dt.datetime, outcome: Outcome):
        self.policy, self.request, self.now = policy, request, now
        self.spec = policy.book.recourse
        self.plan = policy.engine.plans[request["product"]]
        self.product = policy.product_recourse(request["product"])
        self.decision, self.evaluated = outcome.decision, outcome.evaluated
        self.state = state_after(state, outcome.change)
        self.codes = _codes(outcome.decision)
        self.lifted: set[str] = set()
        self.left = self.spec.max_evaluations
        self.waits = self.product.waits
        # a quarter of the candidates come up again (the probe's, then a set's, a window's end):
        # each is evaluated once, and still counted against the cap every time, as before
        self.verdicts: dict[tuple, Verdict] = {}

    # -- evaluation ----------------------------------------------------------------------------
    def _evaluate(self, candidate: Candidate, at: dt.datetime) -> Optional[Verdict]:
        if self.left <= 0:
            return None
        self.left -= 1
        key = (tuple((a, type(v), v) for a, v in candidate), at)
        verdict = self.verdicts.get(key)
        if verdict is None:
            changed = apply_changes(self.request, ((a.field, value) for a, value in candidate))
            verdict = self.verdicts[key] = self.policy.verdict(changed, self.state, at)
        self.lifted |= self.codes - verdict.codes
        return verdict

    def _try(self, candidate: Candidate, at: dt.datetime,
             decision: Optional[Verdict] = None) -> Optional[Option]:
        """The option this candidate gives at `at`, or after waiting out a date window."""
        decision = decision or self._evaluate(candidate, at)
        if decision is None:
            return None
        if decision.outcome not in ACCEPTED:
            until = self._window_end(decision, candidate, at)
            if until is None:
                return None
            decision, at = self._evaluate(candidate, until), until
            if decision is None or decision.outcome not in ACCEPTED:
                return None
        changes = tuple(Change(a.field, _json_value(v)) for a, v in candidate)
        return Option(changes, None if at == self.now else iso_utc(at), decision.outcome)

    # -- time ----------------------------------------------------------------------------------
    def _start(self) -> Optional[dt.datetime]:
        """When a changed application can first be evaluated: now, or the refusing window's end."""
        if not self.evaluated:
            code = self.decision.reasons[0].code
            return parse_iso_utc(self.decision.reapply_after) if code in self.spec.state_waits else None
        if self.decision.starts_cooldown:
            return parse_iso_utc(self.decision.reapply_after) \
                if "REAPPLY_COOLDOWN" in self.spec.state_waits else None
        return self.now

    def _window_end(self, decision: Verdict, candidate: Candidate,
                    at: dt.datetime) -> Optional[dt.datetime]:
        """When the date windows among the refusing rules all close (None: no such window).

        Rules that are not windows are left to the evaluation at that time: it tells whether
        waiting is enough (an option) or only lifts some reasons (not `unreachable`)."""
        changed = apply_changes(self.request, ((a.field, v) for a, v in candidate))
        today = at.astimezone(POLICY_TZ).date()
        days = [self._rule_window_end(rule, changed, today) for rule in decision.fired_checks]
        days = [day for day in days if day is not None]
        if not days:
            return None
        moment = dt.datetime.combine(max(days), dt.time(0), tzinfo=POLICY_TZ).astimezone(dt.timezone.utc)
        return moment if moment > at else None

    def _rule_window_end(self, rule: Rule, request: Mapping[str, Any],
                         today: dt.date) -> Optional[dt.date]:
        """The first day the rule `date_field >(=) today + offset` stops holding, if waiting lifts it."""
        comparison = rule.condition
        if not isinstance(comparison, cond.Comparison) or comparison.op not in (">", ">=") \
                or not isinstance(comparison.rhs, cond.Param):
            return None
        source = FACT_FIELDS[comparison.field].source
        offset = rule.param(comparison.rhs.name, self.plan.product)
        value = _get(request, source) if source in self.waits else None
        if not isinstance(offset, dict) or not isinstance(value, dt.date):
            return None
        guess = add_calendar(value, **{unit: -n for unit, n in offset.items()})
        for shift in range(-3, 5):
            day = guess + dt.timedelta(days=shift)
            bound = add_calendar(day, **offset)
            holds = value > bound if comparison.op == ">" else value >= bound
            if day > today and not holds:
                return day
        return None

    # -- what may change -----------------------------------------------------------------------
    def _needs(self, decision: Verdict) -> list[frozenset[str]]:
        """For each refusing rule (and missing field), the request fields that could lift it."""
        sources = self.product.sources
        needs = [sources[rule.key] for rule in decision.fired_checks]
        needs += [frozenset([source]) for source in decision.missing]
        return needs

    def _values(self, action: Actionable, at: dt.datetime) -> list[Any]:
        """The values worth trying for one declared action, best first (largest amount first)."""
        current = _get(self.request, action.field)
        product = self.plan.product
        if action.action == "set":
            return [] if current is action.to else [action.to]
        if action.action == "today":
            return [at.astimezone(POLICY_TZ).date()] if current is None else []
        if action.action == "term":
            low, high = product.term_days_min, product.term_days_max
            return [] if current is None or low <= current <= high else [low if current < low else high]
        if action.action == "amount":
            return self._amounts(current)
        return []

    def _amounts(self, amount: float) -> list[float]:
        """Every limit the product's rules name (raised by T4 where it applies), under `amount`."""
        product = self.plan.product
        if amount < product.min_amount:
            return [_json_value(product.min_amount)]
        return [shown for value, shown in self.product.amounts if value < amount]

    def _relevant(self, decision: Verdict, at: dt.datetime) -> list[tuple[Actionable, list[Any]]]:
        fields: set[str] = set().union(*self._needs(decision))
        out = []
        for action in self.spec.actionable:
            if action.field in fields and action.action != "wait":
                values = self._values(action, at)
                if values:
                    out.append((action, values))
        return out

    # -- the search ----------------------------------------------------------------------------
    def run(self) -> Recourse:
        start = self._start()
        if start is None:
            return Recourse((), tuple(sorted(self.codes)))
        base = self._evaluate((), start)
        waiting = self._try((), start, base) if base is not None else None
        if waiting is not None:
            return Recourse((waiting,), ())
        relevant = self._relevant(base, start) if base is not None else []
        options: list[Option] = []
        reachable = base is not None and self._probe(relevant, start)
        probed = self.left > 0   # the probes ran to the end: what they did not lift, nothing lifts
        if reachable:
            options = self._smallest_sets(base, relevant, start)
        unreachable = () if options or not probed else tuple(sorted(self.codes - self.lifted))
        return Recourse(tuple(options[:self.spec.max_options]), unreachable)

    def _probe(self, relevant: list[tuple[Actionable, list[Any]]], at: dt.datetime) -> bool:
        """Every supply at once, at each candidate amount: is any offer reachable at all?"""
        supplies = tuple((a, values[0]) for a, values in relevant if a.action != "amount")
        if supplies and self._try(supplies, at) is not None:
            return True
        for action, values in relevant:
            if action.action == "amount":
                for value in values:
                    if self._try(supplies + ((action, value),), at) is not None:
                        return True
        return False

    def _smallest_sets(self, base: Verdict, relevant: list[tuple[Actionable, list[Any]]],
                       at: dt.datetime) -> list[Option]:
        needs = [need for need in self._needs(base) if need]
        for size in range(1, self.spec.max_fields + 1):
            options: list[Option] = []
            for combo in itertools.combinations(relevant, size):
                fields = {a.field for a, _ in combo}
                if not all(need & fields or self._waitable(need) for need in needs):
                    continue
                option = self._first_passing(combo, at)
                if option is not None:
                    options.append(option)
                if len(options) >= self.spec.max_options or self.left <= 0:
                    break
            if options or self.left <= 0:
                return options
        return []

    def _waitable(self, need: set[str]) -> bool:
        return bool(need & self.waits)

    def _first_passing(self, combo, at: dt.datetime) -> Optional[Option]:
        """The first candidate of these fields that passes: amounts are tried largest first."""
        for values in itertools.product(*(values for _, values in combo)):
            option = self._try(tuple((a, v) for (a, _), v in zip(combo, values)), at)
            if option is not None or self.left <= 0:
                return option
        return None
