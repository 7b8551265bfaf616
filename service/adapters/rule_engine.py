"""The rule files compiled into durable_rules rulesets, one per product, and evaluated there.

durable_rules 2.0.28 traps this module exists to contain (DEVELOPERS.md):
- its engine is process-global and not thread-safe, and the stock Host starts timer threads
  that act on live sessions: a Host subclass with a no-op `_run`, and one process-wide lock
  around every evaluation. Scale with processes, not threads.
- a ruleset holds at most 1,024 live sessions (`sid`): each evaluation uses a fresh sid and
  deletes it in a `finally`, so memory stays flat however many evaluations run.
- `post` lets the first matching rule consume an event: facts are asserted, so every
  failing rule fires. A rule whose `any` has several true branches fires once per branch:
  fired rules are collected as a set.
- exceptions in actions are swallowed into the session state: the state is checked.
- (measured here, not in the guide) deleting a session in which no rule fired crashes the
  process (segfault in `delete_state`); every ruleset carries a sentinel rule that always
  fires, so no session is ever left unmatched.
Rules fire when they FAIL (or, for flags and pricing, when they apply); the cost of an
evaluation grows with the rules that fire, and passing rules cost nothing.
"""
from __future__ import annotations

import copy
import itertools
import threading
from typing import Any, Mapping

from durable.engine import Host

from service.domain.policy import Policy
from service.domain.product_plan import compile_product
from service.domain.rulebook import RuleBook

_SENTINEL = "sentinel"
# One lock for the whole process: every Host shares durable_rules' global C engine.
_ENGINE_LOCK = threading.Lock()


class EngineError(RuntimeError):
    """durable_rules failed while evaluating; the decision must not be made."""


class _QuietHost(Host):
    """A Host without the background dispatch threads (no timers are used)."""

    def _run(self) -> None:
        return None


class RuleEngine:
    """The policy's RuleEvaluator on durable_rules: one Host holding a ruleset per product for one RuleBook.

    A reload builds a new RuleEngine (durable_rules mutates definitions and refuses to
    register a name twice); the old one is simply dropped.
    """

    def __init__(self, book: RuleBook):
        self.version = book.version
        self.plans = {name: compile_product(book, p) for name, p in book.products.items()}
        self._fired: set[str] = set()
        self._sids = itertools.count(1)
        definitions = {}
        for name, plan in self.plans.items():
            ruleset = {}
            for index, compiled in enumerate(plan.rules):
                # durable_rules names must be plain: a '.' in a rule name crashes its C engine.
                ruleset[f"r{index}"] = {"all": [{"m": copy.deepcopy(compiled.definition)}],
                                        "run": self._recorder(compiled.rule.key)}
            ruleset[_SENTINEL] = {"all": [{"m": {"$gte": {_SENTINEL: 0}}}], "run": self._recorder(_SENTINEL)}
            definitions[name] = ruleset
        with _ENGINE_LOCK:
            self._host = _QuietHost()
            try:
                self._host.set_rulesets(definitions)
            except Exception as exc:  # the loader refuses what it knows; this names the rest
                raise EngineError(f"durable_rules refused the rules: {exc}") from exc

    def _recorder(self, key: str):
        def record(_closure) -> None:
            self._fired.add(key)
        return record

    def fire(self, product: str, fact: Mapping[str, Any]) -> frozenset[str]:
        """Assert the fact in a fresh session; return the keys of the rules that fired."""
        with _ENGINE_LOCK:
            sid = str(next(self._sids))
            self._fired = set()
            try:
                try:
                    self._host.assert_fact(product, {**fact, "sid": sid, _SENTINEL: 1})
                except Exception as exc:  # durable_rules raises bare Exceptions with codes
                    raise EngineError(f"durable_rules failed for {product}: {exc}") from exc
                state = self._host.get_state(product, sid)
                if "exception" in state:
                    raise EngineError(f"a rule action failed for {product}: {state['exception']}")
                if _SENTINEL not in self._fired:
                    raise EngineError(f"durable_rules did not run the sentinel rule for {product}")
                self._fired.discard(_SENTINEL)
                return frozenset(self._fired)
            finally:
                try:
                    self._host.delete_state(product, sid)
                except Exception:   # a failed assert leaves no session (error 309): nothing to free
                    pass


def policy_for(book: RuleBook) -> Policy:
    """The decision function of one rules version, evaluated on durable_rules."""
    return Policy(book, RuleEngine(book))
