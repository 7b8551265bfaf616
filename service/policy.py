"""The policy: (request, per-user state, clock time, rules) -> Decision. Pure; no Flask, no Redis.

Conditions are evaluated by durable_rules (service.engine); this module only turns the rules
that fired into reasons, flags and an offer, and derives the passes in the trace from the
rules that did not fire.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from service import pricing
from service.decision import Decision, Offer, Reason, TraceEntry, combine_outcomes, iso_utc
from service.engine import ProductPlan, RuleEngine
from service.facts import FACT_FIELDS, Fact, build_fact
from service.rulebook import RuleBook
from service.userstate import UserState

# RULEBOOK "Resolved points": date rules use calendar dates in Asia/Shanghai.
POLICY_TZ = ZoneInfo("Asia/Shanghai")
LARGEST_ALLOWED = "largest_allowed_amount"


def decision_id(user_id: str, application_id: str, decided_at: str) -> str:
    """Deterministic, so replaying a decision reproduces its id."""
    digest = hashlib.sha256(f"{user_id}\0{application_id}\0{decided_at}".encode()).hexdigest()
    return "dec_" + digest[:24]


class Policy:
    """A RuleBook with its compiled engine: the decision function for one rules version."""

    def __init__(self, book: RuleBook, engine: RuleEngine | None = None):
        self.book = book
        self.engine = engine or RuleEngine(book)
        self.version = book.version

    def decide(self, request: Mapping[str, Any], state: UserState, now: dt.datetime) -> Decision:
        now = now.replace(microsecond=0)
        plan = self.engine.plans[request["product"]]
        today = now.astimezone(POLICY_TZ).date()
        fact = build_fact(request, state, today, plan.ref_dates)
        fired = self.engine.fire(plan.product.name, fact.values)
        return self._assemble(request, plan, fact, fired, now)

    def _assemble(self, request: Mapping[str, Any], plan: ProductPlan, fact: Fact,
                  fired: frozenset[str], now: dt.datetime) -> Decision:
        book = self.book
        # one MISSING_DATA per request field (a derived fact field names its source)
        missing = list(dict.fromkeys(FACT_FIELDS[f].source for f in plan.needed if f in fact.missing))
        reasons: list[Reason] = [self._missing_reason(source) for source in missing]
        trace: list[TraceEntry] = []
        flags: list[str] = []
        adjustments: list[Mapping] = []
        broken_limits = [c.limit for c in plan.rules if c.limit is not None and c.rule.key in fired]
        largest_allowed = min(broken_limits) if broken_limits else None
        for compiled in plan.rules:
            rule = compiled.rule
            matched = rule.key in fired
            inputs = {f: fact.display.get(f) for f in rule.fields if f not in plan.ref_dates}
            inputs.update({name: fact.display.get(value, value) if isinstance(value, str) else value
                           for name, value in compiled.params.items()})
            unread = any(fact.display.get(f) is None for f in rule.fields)
            if rule.is_check:
                passed = False if matched else (None if unread else True)
                if matched:
                    reason_inputs = dict(inputs)
                    if compiled.limit is not None:
                        reason_inputs[LARGEST_ALLOWED] = largest_allowed
                    spec = rule.reason
                    reasons.append(Reason(spec.code, rule.rule_id, spec.message_zh, spec.message_en,
                                          spec.advice_zh, spec.advice_en, reason_inputs))
            else:
                passed = None if unread and not matched else True
                if matched and rule.flag and rule.flag not in flags:
                    flags.append(rule.flag)
                if matched and rule.pricing:
                    adjustments.append(rule.pricing)
            trace.append(TraceEntry(rule.rule_id, rule.check, passed, matched, inputs))

        outcome_of = {r.key: r.reason.outcome for r in book.rules if r.reason}
        outcomes = [book.missing_data.reason.outcome] * len(missing)
        outcomes += [outcome_of[c.rule.key] for c in plan.rules if c.rule.key in fired and c.rule.is_check]
        outcome = combine_outcomes(outcomes)
        cooldown = outcome == "rejected" and any(
            c.rule.reason.starts_cooldown for c in plan.rules if c.rule.is_check and c.rule.key in fired)

        product = plan.product
        offer = None
        if outcome in ("approved", "cooling_off"):
            daily, monthly, apr = pricing.rates(product, adjustments, book.apr_cap, book.rate_decimals)
            offer = Offer(request["amount"], daily, monthly, apr, product.term_days_min,
                          product.term_days_max, product.interest_free_days)
        decided_at = iso_utc(now)
        reapply_after = iso_utc(now + dt.timedelta(days=book.reapply_window_days)) if cooldown else None
        return Decision(
            decision_id=decision_id(request["user_id"], request["application_id"], decided_at),
            application_id=request["application_id"], user_id=request["user_id"],
            product=product.name, outcome=outcome, reasons=tuple(reasons), offer=offer,
            funds_available_at=None, cancel_until=None, reapply_after=reapply_after,
            flags=tuple(flags), rules_version=self.version, decided_at=decided_at,
            trace=tuple(trace), starts_cooldown=cooldown,
        )

    def _missing_reason(self, source: str) -> Reason:
        template = self.book.missing_data
        spec = template.reason
        return Reason(spec.code, template.rule_id, spec.message_zh, spec.message_en, spec.advice_zh,
                      spec.advice_en, {"field": source})
