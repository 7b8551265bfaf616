"""The rule files compiled into durable_rules rulesets, one per product, and evaluated there.

durable_rules 2.0.28 traps this module exists to contain (docs/durable-rules.md):
- its engine is process-global and not thread-safe, and the stock Host starts timer threads
  that act on live sessions: a Host subclass with a no-op `_run`, and one process-wide lock
  around every evaluation. Scale with processes, not threads.
- a ruleset holds at most 1,024 live sessions (`sid`): each evaluation uses a fresh sid and
  deletes it in a `finally`, so memory stays flat however many evaluations run.
- `post` lets the first matching rule consume an event: facts are asserted, so every
  failing rule fires. A rule whose `any` has several true branches fires once per branch:
  fired rules are collected as a set.
- exceptions in actions are swallowed into the session state. None of ours runs (below), so
  none can be swallowed.
- (measured here, not in the guide) deleting a session in which no rule fired crashes the
  process (segfault in `delete_state`); every ruleset carries a sentinel rule that always
  fires, so no session is ever left unmatched.
- numbers are int64/double parsed from the ruleset's JSON, and at most 64 rules may be true
  for one fact: `number_problem` and `rule_count_problem` say what it cannot take, and the
  rule loader (service.adapters.rules_files) refuses such rules at load time, naming them.
Rules fire when they FAIL (or, for flags and pricing, when they apply); the cost of an
evaluation grows with the rules that fire, and passing rules cost nothing.

Why `fire` drives the C engine itself: the stock Python host runs each fired rule's
action through a Closure, decoding the session state and the matched fact from JSON, encoding
the state back and storing it, four JSON passes of the whole fact per fired rule, only for an
action that records the rule's name. Here the evaluation asks the same C engine for the same
pending actions of the session (`start_action_for_state`, `complete_and_start_action`), reads
each action's name off the front of its message and completes it: the rules that fire are the
same (a test compares both drivers on thousands of facts), at a third of the cost. The rulesets
are still registered through the Host (its checks and JSON compilation), with actions that are
never called.
"""
from __future__ import annotations

import copy
import itertools
import math
import re
import threading
from typing import Any, Mapping, Optional

import durable_rules_engine
from durable.engine import Host

from service.adapters.span_hook import SpanHook
from service.usecases import jsontext
from service.domain.policy import Policy
from service.domain.product_plan import EvaluationError, compile_product
from service.domain.rulebook import EvaluatorLimits, RuleBook

# durable_rules refuses more than 64 rules true for one fact (error 303); a product whose
# ruleset could exceed it is refused at load time instead of failing at decision time.
DURABLE_MAX_RULES = 64
# durable_rules keeps numbers as int64/double and parses its ruleset JSON itself: an integer
# past 2**53 compares wrongly (measured: x = 2**64-1 is not < 2**64) and a float that Python
# writes with an exponent but no decimal point (1e-07, 1e+16) is refused when the ruleset is built (error 204).
DURABLE_MAX_MAGNITUDE = 2 ** 53
_SENTINEL = "sentinel"
# a pending action's message is {"<rule name>": {...the matched fact...}}: the name leads it
_ACTION_NAME = re.compile(r'\{"(r[0-9]+|sentinel)":')
# One lock for the whole process: every Host shares durable_rules' global C engine.
_ENGINE_LOCK = threading.Lock()


class EngineError(EvaluationError):
    """durable_rules failed while evaluating; the decision must not be made."""


class _QuietHost(Host):
    """A Host without the background dispatch threads (no timers are used)."""

    def _run(self) -> None:
        return None


class RuleEngine:
    """The policy's RuleEvaluator on durable_rules: one Host holding a ruleset per product for one RuleBook.

    A reload builds a new RuleEngine (durable_rules mutates definitions and refuses to
    register a name twice); the old one is simply dropped. `spans` (a tracing hook, optional)
    wraps every evaluation in a span: `fire` is the one way into the engine.
    """

    def __init__(self, book: RuleBook, spans: Optional[SpanHook] = None):
        self.version = book.version
        self._spans = spans
        self.plans = {name: compile_product(book, p) for name, p in book.products.items()}
        self._sids = itertools.count(1)
        # durable_rules name -> rule key, per product (the sentinel maps to itself)
        self._keys: dict[str, dict[str, str]] = {}
        definitions = {}
        for name, plan in self.plans.items():
            ruleset, keys = {}, {_SENTINEL: _SENTINEL}
            for index, compiled in enumerate(plan.rules):
                # durable_rules names must be plain: a '.' in a rule name crashes its C engine.
                ruleset[f"r{index}"] = {"all": [{"m": copy.deepcopy(compiled.definition)}], "run": _not_run}
                keys[f"r{index}"] = compiled.rule.key
            ruleset[_SENTINEL] = {"all": [{"m": {"$gte": {_SENTINEL: 0}}}], "run": _not_run}
            definitions[name] = ruleset
            self._keys[name] = keys
        with _ENGINE_LOCK:
            self._host = _QuietHost()
            try:
                self._host.set_rulesets(definitions)
            except Exception as exc:  # the loader refuses what it knows; this names the rest
                raise EngineError(f"durable_rules refused the rules: {exc}") from exc
            self._handles = {name: self._host.get_ruleset(name)._handle for name in definitions}

    def fire(self, product: str, fact: Mapping[str, Any]) -> frozenset[str]:
        """Assert the fact in a fresh session; return the keys of the rules that fired."""
        if self._spans is None:
            return self._fire(product, fact)
        with self._spans.span("rules.evaluate", {"loan.product": product, "rules.version": self.version}):
            return self._fire(product, fact)

    def _fire(self, product: str, fact: Mapping[str, Any]) -> frozenset[str]:
        handle, keys = self._handles[product], self._keys[product]
        with _ENGINE_LOCK:
            sid = str(next(self._sids))
            try:
                try:
                    # the standard encoder's numbers (jsontext), which durable_rules' parser takes
                    result = durable_rules_engine.assert_fact(
                        handle, jsontext.dumps({**fact, "sid": sid, _SENTINEL: 1}))
                    if result[0] != 0:   # 1 not handled, 2 observed, 3 queued: never for a fresh sid
                        raise EngineError(f"durable_rules did not take the fact for {product} (code {result[0]})")
                    fired = _drain(handle, result[1], keys)
                except EngineError:
                    raise
                except Exception as exc:  # durable_rules raises bare Exceptions with codes
                    raise EngineError(f"durable_rules failed for {product}: {exc}") from exc
                if _SENTINEL not in fired:
                    raise EngineError(f"durable_rules did not run the sentinel rule for {product}")
                fired.discard(_SENTINEL)
                return frozenset(fired)
            finally:
                try:
                    self._host.delete_state(product, sid)
                except Exception:   # a failed assert leaves no session (error 309): nothing to free
                    pass


def number_problem(value: Any) -> Optional[str]:
    """Why durable_rules cannot take this number as the rules give it, or None if it can."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "is not a finite number"
    if abs(value) > DURABLE_MAX_MAGNITUDE:
        return f"is beyond ±2**53, which durable_rules cannot compare exactly"
    if isinstance(value, float) and "e" in repr(value) and "." not in repr(value).split("e")[0]:
        return ("is written with an exponent and no decimal point (as 1e-07), which "
                "durable_rules refuses: use 0, at least 0.0001, or a value such as 1.5e-07")
    return None


def rule_count_problem(count: int) -> Optional[str]:
    """Why durable_rules cannot hold a product's `count` rules, or None if it can (all of
    them may be true for one fact, and durable_rules refuses a fact past DURABLE_MAX_RULES)."""
    if count > DURABLE_MAX_RULES:
        return f"durable_rules allows at most {DURABLE_MAX_RULES} true at once"
    return None


# What the rule loader checks the rules against while building them (service.adapters.rules_files).
LIMITS = EvaluatorLimits(number_problem=number_problem, rule_count_problem=rule_count_problem)


def _not_run(_closure) -> None:
    """The action every rule is registered with; `fire` completes actions without running them."""


def _drain(handle, state_handle, keys: Mapping[str, str]) -> set[str]:
    """Take and complete every pending action of one session; the rule keys they belong to."""
    fired: set[str] = set()
    pending = durable_rules_engine.start_action_for_state(handle, state_handle)
    message = pending[1] if pending else None
    while message:
        match = _ACTION_NAME.match(message)
        if match is None or match.group(1) not in keys:
            raise EngineError(f"durable_rules returned an action this engine did not register: {message[:80]!r}")
        fired.add(keys[match.group(1)])
        message = durable_rules_engine.complete_and_start_action(handle, state_handle)
    return fired


def policy_for(book: RuleBook, spans: Optional[SpanHook] = None) -> Policy:
    """The decision function of one rules version, evaluated on durable_rules (each
    evaluation in a span of `spans`, when given)."""
    return Policy(book, RuleEngine(book, spans))
