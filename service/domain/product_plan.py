"""A product's rules compiled for evaluation, and the port the policy evaluates them through.

Compiling is pure: each rule's condition becomes the rule language's JSON with the product's
parameters filled in (dates as fact fields such as `today_minus_1y`), and the plan records what
the trace shows and which fact fields the rules read. Evaluating is not: durable_rules holds
process-global C state behind a lock. So the policy owns only the small `RuleEvaluator`
interface; `service.adapters.rule_engine` implements it on durable_rules.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol

from service.domain import conditions as cond
from service.domain.rulebook import Product, Rule, RuleBook


class EvaluationError(RuntimeError):
    """The evaluator failed while evaluating; the decision must not be made."""


def ref_date_field(offset: Mapping[str, int]) -> str:
    """The fact field holding 'today + offset', e.g. {years: -1} -> today_minus_1y."""
    parts = []
    for unit in ("years", "months", "days"):
        if unit in offset:
            value = offset[unit]
            parts.append(f"{'plus' if value >= 0 else 'minus'}_{abs(value)}{unit[0]}")
    return "today_" + "_".join(parts)


@dataclass(frozen=True)
class CompiledRule:
    rule: Rule
    params: Mapping[str, Any]     # parameter -> value shown in the trace (dates as fact fields)
    limit: float | None
    definition: dict              # durable_rules JSON of the condition

    @property
    def scales_with_limit(self) -> bool:
        """A limit the temporary limit (T4) raises: its condition reads `limit_factor`."""
        return "limit_factor" in self.rule.fields


@dataclass(frozen=True)
class ProductPlan:
    product: Product
    rules: tuple[CompiledRule, ...]
    ref_dates: Mapping[str, Mapping[str, int]]   # fact field -> calendar offset
    needed: tuple[str, ...]                      # fact fields the product's rules read


def compile_product(book: RuleBook, product: Product) -> ProductPlan:
    compiled: list[CompiledRule] = []
    ref_dates: dict[str, Mapping[str, int]] = {}
    needed: list[str] = []
    for rule in book.rules_for(product.name):
        shown: dict[str, Any] = {}

        def resolve(name: str, rule: Rule = rule, shown: dict = shown) -> cond.Operand:
            value = rule.param(name, product)
            label = name.removeprefix("product.")
            if isinstance(value, dict):
                ref = ref_date_field(value)
                ref_dates[ref] = value
                shown[label] = ref
                return cond.FieldRef(ref)
            shown[label] = value
            return cond.Literal(value)

        definition = cond.compile_condition(rule.condition, resolve)
        limit = rule.param(rule.limit, product) if rule.limit else None
        compiled.append(CompiledRule(rule, dict(shown), limit, definition))
        needed.extend(f for f in rule.fields if f not in needed)
    return ProductPlan(product, tuple(compiled), ref_dates, tuple(needed))


class RuleEvaluator(Protocol):
    """What the policy needs of a rule engine: the compiled plans and one evaluation."""

    plans: Mapping[str, ProductPlan]

    def fire(self, product: str, fact: Mapping[str, Any]) -> frozenset[str]:
        """The keys of the product's rules whose conditions hold for `fact` (rules fire on failure)."""
        ...
