"""The policy: (request, per-user state, clock time, rules) -> Decision. Pure; no Flask, no Redis.

Conditions are evaluated through the RuleEvaluator port (durable_rules behind it, in
service.adapters.rule_engine); this module only turns the rules that fired into reasons, flags
and an offer, derives the passes in the trace from the rules that did not fire, and says what
the decision changes in the user's state. The refusals by
state (T1 reapply window, T2 pending cooling-off) compare the clock with times the state
holds, and come before any rule is evaluated.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple, Optional
from zoneinfo import ZoneInfo

from service.domain import pricing, recourse
from service.domain.decision import (
    Decision,
    Offer,
    Reason,
    TraceEntry,
    combine_outcomes,
    trace_entry,
    iso_utc,
    parse_iso_utc,
)
from service.domain.facts import FACT_FIELDS, FactShape, add_calendar, shaped_fact
from service.domain.outcome import Outcome, Verdict
from service.domain.product_plan import CompiledRule, ProductPlan, RuleEvaluator
from service.domain.rulebook import Rule, RuleBook
from service.domain.userstate import StateChange, UserState

# RULEBOOK "Resolved points": date rules use calendar dates in Asia/Shanghai.
POLICY_TZ = ZoneInfo("Asia/Shanghai")
LARGEST_ALLOWED = "largest_allowed_amount"
TEMPORARY_LIMIT_FLAG = "temporary_limit"


def _scaled(compiled, limit_factor: float) -> float:
    """A limit as it stands under the limit factor (only limits that read it are raised)."""
    return compiled.limit * (limit_factor if compiled.scales_with_limit else 1.0)


def decision_id(user_id: str, application_id: str, decided_at: str) -> str:
    """Deterministic, so replaying a decision reproduces its id."""
    digest = hashlib.sha256(f"{user_id}\0{application_id}\0{decided_at}".encode()).hexdigest()
    return "dec_" + digest[:24]


@dataclass(frozen=True)
class _RuleView:
    """One compiled rule with what every decision reads of it worked out once:
    the trace's input fields and parameters, its key, whether it is a check."""

    compiled: CompiledRule
    rule: Rule
    key: str
    is_check: bool
    fields: frozenset[str]                  # every fact field the rule reads
    trace_fields: tuple[str, ...]           # the ones the trace shows (reference dates left out)
    # (name, value, shown as the fact's value) of the parameters shown with the inputs: a
    # parameter naming a fact field (a reference date) shows that field's value
    params: tuple[tuple[str, Any, bool], ...]
    constant_params: Optional[dict[str, Any]]   # all of them, when none names a fact field (else None)
    reads_unbuilt: bool                     # reads a field no fact has: never evaluated


def _product_fields(plan: ProductPlan) -> set[str]:
    """The fact fields a product's facts hold: every one its rules read, every reference date,
    and every fact field a parameter names (the trace shows its value)."""
    named = {value for c in plan.rules for value in c.params.values()
             if isinstance(value, str) and value in FACT_FIELDS}
    return set(plan.needed) | set(plan.ref_dates) | named


def _views(plan: ProductPlan, built: frozenset[str]) -> tuple[_RuleView, ...]:
    """The rule views of one product whose facts hold the fields `built`."""
    views = []
    for c in plan.rules:
        params = tuple((name, value, isinstance(value, str) and value in built)
                       for name, value in c.params.items())
        constant = None if any(shown for _, _, shown in params) else {n: v for n, v, _ in params}
        views.append(_RuleView(c, c.rule, c.rule.key, c.rule.is_check, frozenset(c.rule.fields),
                               tuple(f for f in c.rule.fields if f not in plan.ref_dates),
                               params, constant, not frozenset(c.rule.fields) <= built))
    return tuple(views)


class _TraceRow(NamedTuple):
    """What one rule's trace line reads of its view, as a plain tuple: the trace loop unpacks
    one per rule of the product on every decision, faster than it reads a view's attributes."""

    rule_id: str
    check: str
    key: str
    is_check: bool
    shown: tuple[str, ...]
    constant_params: Optional[dict[str, Any]]
    params: tuple[tuple[str, Any, bool], ...]
    fields: frozenset[str]
    reads_unbuilt: bool

    @classmethod
    def of(cls, view: _RuleView) -> "_TraceRow":
        return cls(view.rule.rule_id, view.rule.check, view.key, view.is_check, view.trace_fields,
                   view.constant_params, view.params, view.fields, view.reads_unbuilt)


def _trace(rows: tuple[_TraceRow, ...], display: Mapping[str, Any],
           fired: frozenset[str]) -> list[TraceEntry]:
    """The trace: one line per rule, in the product's order. A rule that fired matched (a
    check failed, a flag or pricing applied); one that did not passed, unless it reads a field
    the application left unknown (absent or null), which it then could not evaluate (None)."""
    get = display.get
    unknown = {name for name, value in display.items() if value is None}
    trace: list[TraceEntry] = []
    append = trace.append
    for rule_id, check, key, is_check, shown, constant, params, fields, unbuilt in rows:
        inputs = {name: get(name) for name in shown}
        if constant:
            inputs.update(constant)
        elif params:
            for name, value, from_fact in params:
                inputs[name] = get(value) if from_fact else value
        if key in fired:
            append({"rule_id": rule_id, "check": check, "passed": not is_check, "matched": True,
                    "inputs": inputs})
        else:
            passed = None if unbuilt or (unknown and not unknown.isdisjoint(fields)) else True
            append({"rule_id": rule_id, "check": check, "passed": passed, "matched": False,
                    "inputs": inputs})
    return trace


@dataclass(frozen=True)
class _Pass:
    """One evaluation of the product's rules on one fact."""

    fired: frozenset[str]
    fact: Any
    limit_factor: float


class Policy:
    """A RuleBook with its rule evaluator: the decision function for one rules version."""

    def __init__(self, book: RuleBook, engine: RuleEvaluator):
        self.book = book
        self.engine = engine
        self.version = book.version
        # product -> the shape of its facts: only the fields its rules and trace read
        self._shapes = {name: FactShape.of(_product_fields(plan), plan.ref_dates)
                        for name, plan in engine.plans.items()}
        self._views = {name: _views(plan, self._shapes[name].fields)
                       for name, plan in engine.plans.items()}
        self._trace_rows = {name: tuple(map(_TraceRow.of, views)) for name, views in self._views.items()}
        self._rule_index = {name: {v.key: i for i, v in enumerate(views)}
                            for name, views in self._views.items()}
        self._reference_days: dict[tuple[str, dt.datetime], tuple] = {}
        self._recourse = {name: recourse.product_recourse(book, plan)
                          for name, plan in engine.plans.items()} if book.recourse else {}
        # product -> check key -> compiled rule: what refused, looked up from the (few) fired keys
        self._checks = {name: {v.key: v.compiled for v in views if v.is_check}
                        for name, views in self._views.items()}
        # product -> its limit rules (a few of its ~30), in rule order
        self._limits = {name: tuple(c for c in plan.rules if c.limit is not None)
                        for name, plan in engine.plans.items()}
        self._window_starts: dict[dt.datetime, dt.datetime] = {}

    def product_recourse(self, product: str) -> recourse.ProductRecourse:
        """What the recourse search reads of a product's rules (recourse.Evaluator)."""
        return self._recourse[product]

    # -- windows ------------------------------------------------------------------------
    def count_window_start(self, now: dt.datetime) -> dt.datetime:
        """T3: the start of the look-back window for the user's own applications (remembered
        for the last few moments: a unit of work asks for it at its read and at its write)."""
        start = self._window_starts.get(now)
        if start is None:
            if len(self._window_starts) > 64:
                self._window_starts.clear()
            start = self._window_starts[now] = self._count_window_start(now)
        return start

    def _count_window_start(self, now: dt.datetime) -> dt.datetime:
        local = now.astimezone(POLICY_TZ)
        start = add_calendar(local.date(), months=-self.book.time.application_count_months)
        return dt.datetime.combine(start, local.timetz()).astimezone(dt.timezone.utc)

    # -- the decision ---------------------------------------------------------------------
    def decide(self, request: Mapping[str, Any], state: UserState, now: dt.datetime) -> Decision:
        return self.evaluate(request, state, now).decision

    def evaluate(self, request: Mapping[str, Any], state: UserState, now: dt.datetime) -> Outcome:
        outcome = self.evaluate_plain(request, state, now)
        if self.book.recourse is None or outcome.decision.outcome in ("approved", "cooling_off"):
            return outcome   # an offer's recourse is null: nothing to search, nothing to copy
        return self._with_recourse(request, state, now.replace(microsecond=0), outcome)

    def _with_recourse(self, request, state: UserState, now: dt.datetime, outcome: Outcome) -> Outcome:
        """Attach the recourse (searched only for refusals; null for offers).

        The search evaluates its candidates through this Policy (recourse.Evaluator)."""
        found = recourse.search(self, request, state, now, outcome)
        return Outcome(outcome.decision.with_recourse(found), outcome.change, outcome.evaluated)

    def evaluate_plain(self, request: Mapping[str, Any], state: UserState, now: dt.datetime) -> Outcome:
        """The decision without recourse (its verdict is what the recourse search reads of each candidate)."""
        now = now.replace(microsecond=0)
        refusal = self._refusal_by_state(request, state, now)
        if refusal:
            return Outcome(refusal, StateChange(), evaluated=False)
        plan = self.engine.plans[request["product"]]
        chosen, temp_limit_used = self._passes(request, plan, state, now)
        largest = self._largest_allowed(request, plan, state, now, chosen)
        decision = self._assemble(request, plan, chosen, now, temp_limit_used, largest)
        return Outcome(decision, self._change(decision, state, now, temp_limit_used), evaluated=True)

    def verdict(self, request: Mapping[str, Any], state: UserState, now: dt.datetime) -> Verdict:
        """The outcome and what refused, as evaluate_plain would decide them, without the
        explanation: what the recourse search evaluates its candidates with."""
        now = now.replace(microsecond=0)
        refusal = self._refusal_by_state(request, state, now)
        if refusal:
            return Verdict(refusal.outcome, frozenset(r.code for r in refusal.reasons), (), ())
        plan = self.engine.plans[request["product"]]
        chosen, _ = self._passes(request, plan, state, now)
        return self._judge(plan, chosen)

    def _passes(self, request, plan: ProductPlan, state: UserState,
                now: dt.datetime) -> tuple[_Pass, bool]:
        """The pass the decision is made on (T4's raised one when it applies), and whether the
        temporary limit is what lets it through."""
        first = self._run(request, plan, state, now, 1.0)
        raised = self._with_temporary_limit(request, plan, state, now, first)
        if raised is None:
            return first, False
        checks = self._checks[plan.product.name]
        return raised, not any(key in checks for key in raised.fired)

    def _judge(self, plan: ProductPlan, run: _Pass) -> Verdict:
        """The outcome of one pass: missing data, refusing checks, and T2's cooling-off."""
        absent = run.fact.missing
        missing = tuple(dict.fromkeys(FACT_FIELDS[f].source for f in plan.needed if f in absent)) \
            if absent else ()
        hit = self._fired_views(plan.product.name, run.fired)
        checks = tuple(v.rule for v in hit if v.is_check)
        outcomes = [self.book.missing_data.reason.outcome] * len(missing)
        outcomes += [rule.reason.outcome for rule in checks]
        if any(v.rule.cooling_off for v in hit if not v.is_check):
            outcomes.append("cooling_off")
        codes = frozenset([self.book.missing_data.reason.code] if missing else []) \
            | {rule.reason.code for rule in checks}
        return Verdict(combine_outcomes(outcomes), codes, checks, missing)

    def _fired_views(self, product: str, fired: frozenset[str]) -> list[_RuleView]:
        """The views of the rules that fired, in the product's order (a few of its ~30)."""
        views, index = self._views[product], self._rule_index[product]
        return [views[i] for i in sorted(index[key] for key in fired)]

    def _run(self, request, plan: ProductPlan, state: UserState, now: dt.datetime,
             limit_factor: float) -> _Pass:
        name = plan.product.name
        fact = shaped_fact(request, state, self._shapes[name], self._days(name, now), limit_factor)
        return _Pass(self.engine.fire(name, fact.values), fact, limit_factor)

    def _days(self, product: str, now: dt.datetime) -> tuple[tuple[str, str, int], ...]:
        """The product's reference dates at `now` (remembered for the last few moments: a
        decision, its T4 and probe passes and most recourse candidates share one clock time)."""
        key = (product, now)
        days = self._reference_days.get(key)
        if days is None:
            if len(self._reference_days) > 64:
                self._reference_days.clear()
            days = self._reference_days[key] = self._shapes[product].reference_days(
                now.astimezone(POLICY_TZ).date())
        return days

    def _with_temporary_limit(self, request, plan: ProductPlan, state: UserState,
                              now: dt.datetime, first: _Pass) -> Optional[_Pass]:
        """T4: when only raisable limits refused the amount, try again at the raised limit.

        The second pass is the answer whether it passes (approved on the temporary limit) or
        not (refused, with the raised limit as the largest allowed amount).
        """
        checks = self._checks[plan.product.name]
        failed = [checks[key] for key in first.fired if key in checks]
        if not failed or not all(c.scales_with_limit for c in failed):
            return None
        if not self._temporary_limit_available(request, state, now):
            return None
        return self._run(request, plan, state, now, 1.0 + self.book.time.temporary_limit.increase)

    def _temporary_limit_available(self, request, state: UserState, now: dt.datetime) -> bool:
        """T4: may this application use the raised limits (a grant held, or one granted now)?"""
        t4 = self.book.time.temporary_limit
        if t4.applies_while_active and state.temp_limit_active(now):
            return True
        if not (request["applicant"].get("documents") or {}).get(t4.requires_document):
            return False
        return state.temp_limit_active(now) or state.temp_limit_grants < t4.max_grants

    def _largest_allowed(self, request, plan: ProductPlan, state: UserState, now: dt.datetime,
                         run: _Pass) -> Optional[float]:
        """The largest allowed amount shown with AMOUNT_OUT_OF_RANGE (None if no limit refused).

        "smallest_broken_limit" (rules versions without the setting): the smallest limit the amount
        broke. "smallest_applicable_limit": the smallest of every limit that applies to the
        applicant, found by a probe pass at an amount above every limit: the limit rules that
        fire then are exactly the ones whose other conditions (group, tier, balance) hold.
        """
        limits = self._limits[plan.product.name]
        fired_limits = [c for c in limits if c.rule.key in run.fired]
        if not fired_limits:
            return None
        if self.book.largest_allowed == "smallest_broken_limit":
            return min(_scaled(c, run.limit_factor) for c in fired_limits)
        probe = self._limits_probe(request, plan, state, now)
        applicable = [c for c in limits if c.rule.key in probe.fired]
        return min(_scaled(c, probe.limit_factor) for c in applicable or fired_limits)

    def _limits_probe(self, request, plan: ProductPlan, state: UserState, now: dt.datetime) -> _Pass:
        """A pass at an amount above every limit, at the limit factor this application may use
        (T4's when available): the limit rules that fire are the ones that apply to it."""
        factor = 1.0 + self.book.time.temporary_limit.increase \
            if self._temporary_limit_available(request, state, now) else 1.0
        ceiling = max(c.limit * factor for c in self._limits[plan.product.name])
        return self._run({**request, "amount": ceiling * 2 + 1}, plan, state, now, factor)

    def _refusal_by_state(self, request, state: UserState, now: dt.datetime) -> Optional[Decision]:
        if state.in_cooldown(now):
            code, until = "REAPPLY_COOLDOWN", state.cooldown_until
            inputs = {"reapply_after": iso_utc(until)}
        elif state.cooling_off_pending(now):
            code, until = "COOLING_OFF_PENDING", state.cooling_off_until
            inputs = {"application_id": state.cooling_off_application,
                      "funds_available_at": iso_utc(until)}
        else:
            return None
        rule_id, spec = self.book.time.state_reasons[code]
        reason = Reason(code, rule_id, spec.message_zh, spec.message_en, spec.advice_zh,
                        spec.advice_en, inputs)
        decided_at = iso_utc(now)
        return Decision(
            decision_id=decision_id(request["user_id"], request["application_id"], decided_at),
            application_id=request["application_id"], user_id=request["user_id"],
            product=request["product"], outcome="rejected", reasons=(reason,), offer=None,
            funds_available_at=None, cancel_until=None, reapply_after=iso_utc(until), flags=(),
            rules_version=self.version, decided_at=decided_at,
            trace=(trace_entry(rule_id, "state", False, True, inputs),),
            recourse_declared=self.book.recourse is not None)

    def _assemble(self, request: Mapping[str, Any], plan: ProductPlan, run: _Pass,
                  now: dt.datetime, temp_limit_used: bool,
                  largest_allowed: Optional[float]) -> Decision:
        book, display, fired = self.book, run.fact.display, run.fired
        verdict = self._judge(plan, run)
        # one MISSING_DATA per request field (a derived fact field names its source)
        reasons: list[Reason] = [self._missing_reason(source) for source in verdict.missing]
        flags: list[str] = [TEMPORARY_LIMIT_FLAG] if temp_limit_used else []
        adjustments: list[Mapping] = []
        name = plan.product.name
        trace = _trace(self._trace_rows[name], display, fired)
        index = self._rule_index[name]
        for view in self._fired_views(name, fired):
            rule = view.rule
            if view.is_check:
                reason_inputs = dict(trace[index[view.key]]["inputs"])
                if view.compiled.limit is not None:
                    reason_inputs[LARGEST_ALLOWED] = largest_allowed
                spec = rule.reason
                reasons.append(Reason(spec.code, rule.rule_id, spec.message_zh, spec.message_en,
                                      spec.advice_zh, spec.advice_en, reason_inputs))
            else:
                if rule.flag and rule.flag not in flags:
                    flags.append(rule.flag)
                if rule.pricing:
                    adjustments.append(rule.pricing)

        outcome = verdict.outcome
        cooldown = outcome == "rejected" and any(rule.reason.starts_cooldown for rule in verdict.fired_checks)
        product = plan.product
        offer = None
        if outcome in ("approved", "cooling_off"):
            daily, monthly, apr = pricing.rates(product, adjustments, book.apr_cap, book.rate_decimals)
            offer = Offer(request["amount"], daily, monthly, apr, product.term_days_min,
                          product.term_days_max, product.interest_free_days)
        hold_until = iso_utc(now + dt.timedelta(hours=book.time.cooling_off_hours)) \
            if outcome == "cooling_off" else None
        decided_at = iso_utc(now)
        reapply_after = iso_utc(now + dt.timedelta(days=book.time.reapply_window_days)) \
            if cooldown else None
        return Decision(
            decision_id=decision_id(request["user_id"], request["application_id"], decided_at),
            application_id=request["application_id"], user_id=request["user_id"],
            product=product.name, outcome=outcome, reasons=tuple(reasons), offer=offer,
            funds_available_at=hold_until, cancel_until=hold_until, reapply_after=reapply_after,
            flags=tuple(flags), rules_version=self.version, decided_at=decided_at,
            trace=tuple(trace), starts_cooldown=cooldown,
            recourse_declared=book.recourse is not None,
        )

    def _change(self, decision: Decision, state: UserState, now: dt.datetime,
                temp_limit_used: bool) -> StateChange:
        t4 = self.book.time.temporary_limit
        granted = None
        if temp_limit_used and decision.offer is not None and not state.temp_limit_active(now):
            granted = now + dt.timedelta(days=t4.days)
        return StateChange(
            count_application=True,
            cooldown_until=parse_iso_utc(decision.reapply_after) if decision.starts_cooldown else None,
            cooling_off_until=now + dt.timedelta(hours=self.book.time.cooling_off_hours)
            if decision.outcome == "cooling_off" else None,
            temp_limit_expires_at=granted,
        )

    def _missing_reason(self, source: str) -> Reason:
        template = self.book.missing_data
        spec = template.reason
        return Reason(spec.code, template.rule_id, spec.message_zh, spec.message_en, spec.advice_zh,
                      spec.advice_en, {"field": source})

    # -- human review ----------------------------------------------------------
    def review_terms(self, request: Mapping[str, Any], state: UserState,
                     now: dt.datetime) -> tuple[Offer, Optional[str]]:
        """A reviewer's approval: the offer the rules give the amount, and T2's hold end when
        its condition holds, both as if the rules had approved at `now` (API.md "Human review").
        The eligibility checks are the reviewer's call; the pricing, T2 and (by the rules
        version's setting) the limit rules still apply."""
        plan = self.engine.plans[request["product"]]
        run = self._run(request, plan, state, now.replace(microsecond=0), 1.0)
        adjustments, hold = [], False
        for compiled in plan.rules:
            rule = compiled.rule
            if rule.is_check or rule.key not in run.fired:
                continue
            if rule.pricing:
                adjustments.append(rule.pricing)
            hold = hold or bool(rule.cooling_off)
        product = plan.product
        daily, monthly, apr = pricing.rates(product, adjustments, self.book.apr_cap, self.book.rate_decimals)
        offer = Offer(self._review_amount(request, plan, state, now.replace(microsecond=0)), daily,
                      monthly, apr, product.term_days_min, product.term_days_max,
                      product.interest_free_days)
        until = iso_utc(now + dt.timedelta(hours=self.book.time.cooling_off_hours)) if hold else None
        return offer, until

    def _review_amount(self, request, plan: ProductPlan, state: UserState, now: dt.datetime) -> float:
        """The limit of an approval's offer (limits.yaml `review_approval_amount`).

        "amount_asked" (rules versions without the setting): the amount, whatever the limits.
        "least_favourable_limit": the amount, but at most the smallest limit that applies, a
        limit whose condition reads a field the application left missing counting as applying.
        A case reaches review only when no limit refused, and a limit that reads a missing field
        cannot refuse (the engine never matches a missing field); its least favourable value is
        the one under which it applies (WE2000's base line, weilidai's lowest tier)."""
        if self.book.review_approval == "amount_asked":
            return request["amount"]
        probe = self._limits_probe(request, plan, state, now)
        applicable = [c for c in self._limits[plan.product.name] if
                      (c.rule.key in probe.fired or not probe.fact.missing.isdisjoint(c.rule.fields))]
        largest = min((_scaled(c, probe.limit_factor) for c in applicable), default=request["amount"])
        return largest if largest < request["amount"] else request["amount"]
