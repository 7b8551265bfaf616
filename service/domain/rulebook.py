"""The rule files' model, built from their validated documents, and fingerprinted.

A bad rules directory is refused as a whole, with an error naming the file, the rule and the
problem, so a service never starts (or reloads) on half a policy. `version` is a content hash
of the rule files: two directories with the same files have the same version, and every
decision records the version that made it.

Pure: `build` checks what the rules mean (products, parameters, fields, one reason code meaning
one thing) on documents already read, parsed and checked against their schemas; reading,
YAML and the schemas are the loader's (service.adapters.rules_files), and what the rule
evaluator cannot take is the evaluator's (`EvaluatorLimits`, service.adapters.rule_engine).
"""
from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from service.domain import conditions as cond
from service.domain.facts import FACT_FIELDS

PRODUCTS_FILE = "products.yaml"
TIME_FILE = "time.yaml"
LIMITS_FILE = "limits.yaml"
RECOURSE_FILE = "recourse.yaml"
EXPLANATIONS_FILE = "explanations.yaml"


class RulesError(ValueError):
    """The rules directory cannot be used; the message names file, rule and problem."""


@dataclass(frozen=True)
class ReasonSpec:
    code: str
    outcome: str
    starts_cooldown: bool
    message_zh: str
    message_en: str
    advice_zh: str
    advice_en: str


@dataclass(frozen=True)
class Product:
    name: str
    name_zh: str
    min_amount: float
    max_amount: float
    term_days_min: int
    term_days_max: int
    base_daily_rate: float
    floor_apr: float
    max_apr: float
    consumer: bool
    interest_free_days: int


@dataclass(frozen=True)
class Rule:
    rule_id: str
    check: str
    source: str
    products: frozenset[str]
    condition: Optional[cond.Condition]
    params: Mapping[str, Any]
    product_params: Mapping[str, Mapping[str, Any]]
    reason: Optional[ReasonSpec] = None
    limit: Optional[str] = None          # parameter name of the largest allowed amount
    flag: Optional[str] = None
    pricing: Optional[Mapping[str, Any]] = None
    cooling_off: bool = False
    fields: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.rule_id}.{self.check}"

    @property
    def is_check(self) -> bool:
        return self.reason is not None

    def param(self, name: str, product: Product) -> Any:
        """A parameter's value for one product: `product.x`, the product override, or the base."""
        if name.startswith("product."):
            return getattr(product, name.split(".", 1)[1])
        override = self.product_params.get(product.name, {})
        return override[name] if name in override else self.params[name]


@dataclass(frozen=True)
class TemporaryLimit:
    increase: float
    days: int
    max_grants: int
    requires_document: str
    # True: an active grant raises the limits without the document (RULEBOOK).
    # Rules versions without the setting asked for the document on every application.
    applies_while_active: bool = False


@dataclass(frozen=True)
class Grace:
    max_uses: int
    max_days: int
    period_days: int


# what rules versions written before these parameters existed allow
DEFAULT_HUMAN_REVIEW_DAYS = 30
DEFAULT_REVIEW_CLAIM_MINUTES = 30
DEFAULT_REVIEW_SLA_HOURS = 24


@dataclass(frozen=True)
class TimeRules:
    """time.yaml: the windows of T1-T5 and the wording of the refusals by state."""

    reapply_window_days: int
    cooling_off_hours: int
    application_count_months: int
    temporary_limit: TemporaryLimit
    grace: Grace
    state_reasons: Mapping[str, tuple[str, ReasonSpec]]   # code -> (rule id, wording)
    human_review_days: int = DEFAULT_HUMAN_REVIEW_DAYS     # an applicant may ask for a person
    review_claim_minutes: int = DEFAULT_REVIEW_CLAIM_MINUTES  # a reviewer's claim on a case lasts
    review_sla_hours: int = DEFAULT_REVIEW_SLA_HOURS          # a case older than this is overdue


@dataclass(frozen=True)
class Actionable:
    """recourse.yaml: one request field an applicant can act on, and how (see the file)."""

    field: str                 # request path: amount, applicant.documents.repayment_proof, ...
    action: str                # amount | term | set | today | wait
    to: Optional[bool] = None  # the value a `set` supplies


@dataclass(frozen=True)
class RecourseSpec:
    """recourse.yaml: what the recourse search may change, and its bounds."""

    actionable: tuple[Actionable, ...]
    state_waits: frozenset[str]
    max_evaluations: int
    max_fields: int
    max_options: int


# explanations.yaml: the summaries an explanation opens with, by who decided and outcome, and the
# placeholders each may name (filled by service.domain.explanation). Only an offer has a limit.
_SUMMARY_COMMON = frozenset({"product", "count"})
_SUMMARY_OFFER = _SUMMARY_COMMON | {"limit"}
SUMMARY_FIELDS: Mapping[str, Mapping[str, frozenset[str]]] = {
    "rules": {"approved": _SUMMARY_OFFER, "cooling_off": _SUMMARY_OFFER,
              "rejected": _SUMMARY_COMMON, "review": _SUMMARY_COMMON},
    "reviewer": {"approved": _SUMMARY_OFFER, "rejected": _SUMMARY_COMMON},
}


@dataclass(frozen=True)
class ExplanationTexts:
    """explanations.yaml: the words that open an explanation to the applicant. Kept in the rules,
    not the code, so the wording changes (and is versioned and diffed) as the rules do."""

    summaries: Mapping[str, Mapping[str, Mapping[str, str]]]   # decided_by -> outcome -> lang -> template
    product_names: Mapping[str, Mapping[str, str]] = field(default_factory=dict)   # lang -> product -> name

    def summary(self, decided_by: str, outcome: str, lang: str) -> Optional[str]:
        """The template for one decision (None: the file writes none for it)."""
        return self.summaries.get(decided_by, {}).get(outcome, {}).get(lang)


@dataclass(frozen=True)
class RuleBook:
    version: str
    directory: Path
    products: Mapping[str, Product]
    apr_cap: float
    rate_decimals: int
    time: TimeRules
    rules: tuple[Rule, ...]
    missing_data: Rule              # the MISSING_DATA template (no condition)
    # limits.yaml `largest_allowed_amount`: "smallest_broken_limit" (the behaviour of rules
    # versions without the setting) or "smallest_applicable_limit" (RULEBOOK)
    largest_allowed: str = "smallest_broken_limit"
    # limits.yaml `review_approval_amount`: "amount_asked" (rules versions without the
    # setting: an approval offers the amount whatever the limits) or "least_favourable_limit"
    # (at most the smallest limit that applies, a limit reading a missing field applying)
    review_approval: str = "amount_asked"
    # None: the rules version declares no recourse (versions from before recourse), and its
    # decisions carry no `recourse` key, so their logged records replay identical.
    recourse: Optional[RecourseSpec] = None
    # None: the rules version has no explanations.yaml; an explanation then has no summary.
    explanations: Optional[ExplanationTexts] = None
    files: Mapping[str, bytes] = field(repr=False, default_factory=dict)

    def rules_for(self, product: str) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if product in r.products and r.condition is not None)

    def term_ranges(self) -> dict[str, tuple[int, int]]:
        return {name: (p.term_days_min, p.term_days_max) for name, p in self.products.items()}


def version_of(files: Mapping[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return "sha256:" + digest.hexdigest()


@dataclass(frozen=True)
class EvaluatorLimits:
    """What the rule evaluator cannot take, checked while the rules are built: a rules version
    it would refuse (or compare wrongly) is refused at load time, naming the rule, instead of
    failing at decision time. Each says why, or None when the evaluator takes it."""

    number_problem: Callable[[Any], Optional[str]]     # a number a condition compares with
    rule_count_problem: Callable[[int], Optional[str]]  # a product's count of rules


def build(documents: Mapping[str, dict], files: Mapping[str, bytes], directory: Path,
          limits: EvaluatorLimits) -> RuleBook:
    """A RuleBook from the documents of its files (name -> document as its schema loaded it;
    products.yaml and time.yaml among them) and the files themselves (what `version` hashes).

    The documents are read in the order the files are checked: products, time, then each
    rule file by name, recourse, explanations last."""
    products_doc = documents[PRODUCTS_FILE]
    time_doc = documents[TIME_FILE]
    products = {name: Product(name=name, **spec) for name, spec in products_doc["products"].items()}

    rules: list[Rule] = []
    largest_allowed, review_approval = "smallest_broken_limit", "amount_asked"
    for name in sorted(documents):
        if name in (PRODUCTS_FILE, RECOURSE_FILE, EXPLANATIONS_FILE):
            continue
        if name == TIME_FILE:
            doc = time_doc
        else:
            doc = documents[name]
            largest_allowed = doc.get("largest_allowed_amount", largest_allowed)
            review_approval = doc.get("review_approval_amount", review_approval)
        rules.extend(_build_rule(name, raw, doc["params"], products, limits.number_problem)
                     for raw in doc["rules"])
    time_rules = _time_rules(time_doc)

    _check_consistency(rules, products, limits.rule_count_problem)
    templates = [r for r in rules if r.condition is None]
    if len(templates) != 1:
        raise RulesError("rules: exactly one MISSING_DATA rule without 'when' is needed, found "
                         f"{len(templates)}")
    return RuleBook(
        version=version_of(files), directory=directory, products=products,
        apr_cap=products_doc["apr_cap"], rate_decimals=products_doc["rate_decimals"],
        time=time_rules, rules=tuple(rules),
        missing_data=templates[0], largest_allowed=largest_allowed,
        review_approval=review_approval, files=dict(files),
        recourse=_recourse(documents[RECOURSE_FILE]) if RECOURSE_FILE in documents else None,
        explanations=(_explanations(documents[EXPLANATIONS_FILE], products)
                      if EXPLANATIONS_FILE in documents else None),
    )


def _or_default(doc: Mapping[str, Any], name: str, default: int) -> int:
    return default if doc.get(name) is None else doc[name]


def _time_rules(time_doc: Mapping[str, Any]) -> TimeRules:
    return TimeRules(
        reapply_window_days=time_doc["reapply_window_days"],
        cooling_off_hours=time_doc["cooling_off_hours"],
        application_count_months=time_doc["application_count_months"],
        temporary_limit=TemporaryLimit(**time_doc["temporary_limit"]),
        grace=Grace(**time_doc["grace"]),
        state_reasons={code: (spec["rule_id"], ReasonSpec(
            code=code, outcome="rejected", starts_cooldown=False,
            **{k: v for k, v in spec.items() if k != "rule_id"}))
            for code, spec in time_doc["state_reasons"].items()},
        human_review_days=_or_default(time_doc, "human_review_days", DEFAULT_HUMAN_REVIEW_DAYS),
        review_claim_minutes=_or_default(time_doc, "review_claim_minutes", DEFAULT_REVIEW_CLAIM_MINUTES),
        review_sla_hours=_or_default(time_doc, "review_sla_hours", DEFAULT_REVIEW_SLA_HOURS),
    )


# Which action fits which kind of request field (FACT_FIELDS kinds).
_ACTION_KINDS = {"amount": ("amount",), "term": ("term_days",), "set": "bool", "today": "date",
                 "wait": "date"}


def _recourse(doc: Mapping[str, Any]) -> RecourseSpec:
    """recourse.yaml, its shape checked by its schema: each action against its field's kind."""
    # a field's own kind (not that of a fact derived from it, as real_name_verified)
    kinds = {f.source: f.kind for name, f in FACT_FIELDS.items()
             if f.source and f.source.rsplit(".", 1)[-1] == name}
    actionable, seen = [], set()
    for index, raw in enumerate(doc["actionable"]):
        field_name, action = raw["field"], raw["action"]
        fits = _ACTION_KINDS[action]
        ok = field_name in fits if isinstance(fits, tuple) else kinds.get(field_name) == fits
        if not ok:
            raise RulesError(f"{RECOURSE_FILE}: actionable[{index}]: action {action!r} does not fit "
                             f"field {field_name!r}")
        if (field_name, action) in seen:
            raise RulesError(f"{RECOURSE_FILE}: actionable[{index}]: {field_name} {action} is declared twice")
        seen.add((field_name, action))
        actionable.append(Actionable(field_name, action, raw.get("to")))
    search = doc["search"]
    return RecourseSpec(tuple(actionable), frozenset(doc["state_waits"]), search["max_evaluations"],
                        search["max_fields"], search["max_options"])


def _explanations(doc: Mapping[str, Any], products: Mapping[str, Product]) -> ExplanationTexts:
    """explanations.yaml, its shape checked by its schema: each template names only the
    placeholders its outcome fills, and the product names only known products."""
    for decided_by, outcomes in doc["summaries"].items():
        for outcome, texts in outcomes.items():
            for lang, template in texts.items():
                where = f"{EXPLANATIONS_FILE}: summaries.{decided_by}.{outcome}.{lang}"
                _check_template(where, template, SUMMARY_FIELDS[decided_by][outcome])
    for lang, names in doc["product_names"].items():
        unknown = sorted(set(names) - set(products))
        if unknown:
            raise RulesError(f"{EXPLANATIONS_FILE}: product_names.{lang}: unknown product(s) {unknown}")
    return ExplanationTexts(summaries=doc["summaries"], product_names=doc["product_names"])


def _check_template(where: str, template: str, allowed: frozenset[str]) -> None:
    """A template is filled with str.format: only plain {name}s it may name, no attribute,
    index, conversion or format spec (a rules file must not reach into the values)."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise RulesError(f"{where}: not a valid template: {exc}") from None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in allowed or spec or conversion:
            raise RulesError(f"{where}: {{{name}}} cannot be filled here; a template may name "
                             + ", ".join(f"{{{n}}}" for n in sorted(allowed)))


def _build_rule(source: str, raw: dict, file_params: Mapping[str, Any],
                products: Mapping[str, Product],
                number_problem: Callable[[Any], Optional[str]]) -> Rule:
    where = f"{source}: rule {raw['id']}.{raw['check']}"
    selector = raw["products"]
    if selector == "all":
        applies = frozenset(products)
    elif selector == "consumer":
        applies = frozenset(n for n, p in products.items() if p.consumer)
    else:
        unknown = [p for p in selector if p not in products]
        if unknown:
            raise RulesError(f"{where}: unknown product(s) {unknown}")
        applies = frozenset(selector)
    params = {**file_params, **raw["params"]}
    for product, overrides in raw["product_params"].items():
        if product not in products:
            raise RulesError(f"{where}: product_params names unknown product {product!r}")
        for key in overrides:
            if key not in params:
                raise RulesError(f"{where}: product_params.{product}.{key} overrides no parameter")

    condition = None
    fields: tuple[str, ...] = ()
    if "when" in raw:
        try:
            condition = cond.parse(raw["when"])
        except cond.ConditionError as exc:
            raise RulesError(f"{where}: {exc}") from exc
        fields = tuple(cond.fields_read(condition))
        for name in cond.params_used(condition):
            _check_param(where, name, params)
        _check_types(where, condition, params, raw["product_params"], number_problem)
    if "limit" in raw:
        _check_param(where, raw["limit"][1:], params)
    reason = ReasonSpec(**raw["reason"]) if "reason" in raw else None
    return Rule(rule_id=raw["id"], check=raw["check"], source=source, products=applies,
                condition=condition, params=params, product_params=raw["product_params"],
                reason=reason, limit=raw["limit"][1:] if "limit" in raw else None,
                flag=raw.get("flag"), pricing=raw.get("pricing"),
                cooling_off=raw.get("cooling_off", False), fields=fields)


def _check_param(where: str, name: str, params: Mapping[str, Any]) -> None:
    if name.startswith("product."):
        attr = name.split(".", 1)[1]
        if attr not in Product.__dataclass_fields__ or attr in ("name", "name_zh"):
            raise RulesError(f"{where}: ${name} is not a product attribute")
    elif name not in params:
        raise RulesError(f"{where}: ${name} is used but not defined in params")


def _kind_of_value(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, dict):
        return "date"
    return "number"


def _check_types(where: str, condition: cond.Condition, params: Mapping[str, Any],
                 product_params: Mapping[str, Mapping[str, Any]],
                 number_problem: Callable[[Any], Optional[str]]) -> None:
    if isinstance(condition, cond.Group):
        for item in condition.items:
            _check_types(where, item, params, product_params, number_problem)
        return
    field = FACT_FIELDS.get(condition.field)
    if field is None:
        raise RulesError(f"{where}: unknown field {condition.field!r}")
    rhs = condition.rhs
    if isinstance(rhs, cond.FieldRef):
        if rhs.name not in FACT_FIELDS:
            raise RulesError(f"{where}: unknown field {rhs.name!r}")
        kinds = {FACT_FIELDS[rhs.name].kind}
    elif isinstance(rhs, cond.Product):
        if rhs.field.name not in FACT_FIELDS:
            raise RulesError(f"{where}: unknown field {rhs.field.name!r}")
        kinds = {"number"}
    elif isinstance(rhs, cond.Param):
        if rhs.name.startswith("product."):
            kinds = {"number"}
        else:
            values = [params[rhs.name]] + [o[rhs.name] for o in product_params.values() if rhs.name in o]
            kinds = {_kind_of_value(v) for v in values}
    else:
        kinds = {_kind_of_value(rhs.value)}
    for literal in (rhs, getattr(rhs, "factor", None)):
        problem = number_problem(literal.value) if isinstance(literal, cond.Literal) else None
        if problem:
            raise RulesError(f"{where}: the number {literal.value!r} {problem}")
    if kinds != {field.kind}:
        raise RulesError(f"{where}: {condition.field} is a {field.kind} but is compared with "
                         f"a {'/'.join(sorted(kinds))}")
    if field.kind == "bool" and condition.op in cond.ORDERING:
        raise RulesError(f"{where}: {condition.field} is a bool: use == or !=")


def _check_consistency(rules: list[Rule], products: Mapping[str, Product],
                       rule_count_problem: Callable[[int], Optional[str]]) -> None:
    seen_keys: dict[str, str] = {}
    by_code: dict[str, tuple[str, bool, str]] = {}
    for rule in rules:
        if rule.key in seen_keys:
            raise RulesError(f"{rule.source}: rule {rule.key} is defined twice "
                             f"(also in {seen_keys[rule.key]})")
        seen_keys[rule.key] = rule.source
        if rule.reason:
            kind = (rule.reason.outcome, rule.reason.starts_cooldown, rule.key)
            earlier = by_code.setdefault(rule.reason.code, kind)
            if earlier[:2] != kind[:2]:
                raise RulesError(f"{rule.source}: rule {rule.key}: reason {rule.reason.code} has "
                                 f"outcome/starts_cooldown {kind[:2]} but rule {earlier[2]} says "
                                 f"{earlier[:2]}")
    for product in products:
        count = sum(1 for r in rules if product in r.products and r.condition is not None)
        problem = rule_count_problem(count)
        if problem:
            raise RulesError(f"rules: product {product} has {count} rules; {problem}")
