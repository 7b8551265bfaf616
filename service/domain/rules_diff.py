"""What changed between two rules versions, rule by rule: the words a reviewer of a change reads.

Two versions with different hashes may differ in a threshold, a condition, a message, a whole
rule, or only in a comment; a replay or simulation says what the change *did*, this says what
it *is*. The comparison is over two built RuleBooks (the meaning of the files, not their text),
so a reformatted file or a moved comment shows as a changed file and nothing else, and a
parameter is compared as the rule reads it (file-level parameters merged into each rule).

Pure: no file, Redis or CLI; `loan-decide rules diff` and the impact page both call `diff`
and print its `lines()` (or `to_dict()`), so the two always say the same.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional

from service.domain import conditions as cond
from service.domain.rulebook import ReasonSpec, RuleBook, Rule

MESSAGE_FIELDS = ("message_zh", "message_en", "advice_zh", "advice_en")
# What else a check says besides its condition, parameters and messages.
OTHER_FIELDS = ("products", "reason.code", "reason.outcome", "reason.starts_cooldown", "limit",
                "flag", "pricing", "cooling_off")
# time.yaml's windows belong to the T rules the rulebook names them by (T1-T5).
TIME_SETTINGS = (("T1", "window", "reapply_window_days"), ("T2", "window", "cooling_off_hours"),
                 ("T3", "window", "application_count_months"))


@dataclass(frozen=True)
class ParamChange:
    """A parameter's value, for every product (`product` None) or one product's override;
    None on a side where the parameter does not exist."""

    check: str
    name: str
    old: Any
    new: Any
    product: Optional[str] = None


@dataclass(frozen=True)
class ConditionChange:
    """The `when` of a check, written out (None on the side without it)."""

    check: str
    old: Optional[str]
    new: Optional[str]


@dataclass(frozen=True)
class MessageChange:
    check: str
    field: str       # message_zh | message_en | advice_zh | advice_en
    old: Optional[str]
    new: Optional[str]


@dataclass(frozen=True)
class OtherChange:
    """Anything else a check says: its products, reason code and outcome, limit, flag, ..."""

    check: str
    name: str
    old: Any
    new: Any


@dataclass(frozen=True)
class RuleChanges:
    """One rule id (E2, student, T1, ...): its checks added and removed, and what changed."""

    rule_id: str
    status: str                          # added | removed | changed
    checks_added: tuple[str, ...] = ()
    checks_removed: tuple[str, ...] = ()
    parameters: tuple[ParamChange, ...] = ()
    conditions: tuple[ConditionChange, ...] = ()
    messages: tuple[MessageChange, ...] = ()
    other: tuple[OtherChange, ...] = ()

    def lines(self) -> list[str]:
        """The changes as sentences, one a line: checks added and removed first."""
        out = [f"+ check {c}" for c in self.checks_added] + [f"- check {c}" for c in self.checks_removed]
        for p in self.parameters:
            where = f" ({p.product})" if p.product else ""
            out.append(f"{p.check}: parameter {p.name}{where} {show(p.old)} → {show(p.new)}")
        out += [f"{c.check}: condition {show(c.old)} → {show(c.new)}" for c in self.conditions]
        out += [f"{m.check}: {m.field} {show(m.old)} → {show(m.new)}" for m in self.messages]
        out += [f"{o.check}: {o.name} {show(o.old)} → {show(o.new)}" for o in self.other]
        return out


@dataclass(frozen=True)
class SettingChange:
    """A setting outside any rule: a product's attribute, the APR cap, a limits or recourse setting."""

    file: str
    name: str
    old: Any
    new: Any

    def line(self) -> str:
        return f"{self.file} {self.name}: {show(self.old)} → {show(self.new)}"


@dataclass(frozen=True)
class RulesDiff:
    old_version: str
    new_version: str
    rules: tuple[RuleChanges, ...] = ()
    settings: tuple[SettingChange, ...] = ()
    files_changed: tuple[str, ...] = ()   # files whose bytes differ, added or removed ones too

    @property
    def identical(self) -> bool:
        return self.old_version == self.new_version

    @property
    def changes_meaning(self) -> bool:
        """Whether anything the rules read differs (else only comments or layout did)."""
        return bool(self.rules or self.settings)

    def lines(self) -> list[str]:
        """The readable text form: a header line per rule id, its changes indented."""
        if self.identical:
            return [f"identical: both are {self.old_version}"]
        out = [f"{self.old_version} → {self.new_version}"]
        for rule in self.rules:
            out.append(rule.rule_id + ("" if rule.status == "changed" else f" ({rule.status})"))
            out += [f"  {line}" for line in rule.lines()]
        if self.settings:
            out.append("settings outside the rules")
            out += [f"  {s.line()}" for s in self.settings]
        if not self.changes_meaning:
            out.append("no rule or setting changed: the files differ in comments or layout only")
        out.append("files changed: " + (", ".join(self.files_changed) or "none"))
        return out

    def to_dict(self) -> dict:
        return {"old": self.old_version, "new": self.new_version, "identical": self.identical,
                "rules": [_rule_dict(r) for r in self.rules],
                "settings": [_plain(s) for s in self.settings],
                "files_changed": list(self.files_changed)}


def show(value: Any) -> str:
    """A value as the rule files write it (YAML's words, not Python's): true, {years: -1}, [a, b]."""
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))   # products.yaml's amounts are read as floats: 200000, not 200000.0
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple, frozenset, set)):
        items = sorted(value) if isinstance(value, (frozenset, set)) else value
        return "[" + ", ".join(v if isinstance(v, str) else show(v) for v in items) + "]"
    return str(value)


def condition_text(condition: Optional[cond.Condition]) -> Optional[str]:
    """A condition as one line: `any(age < $min_age, age > $max_age)`."""
    if condition is None:
        return None
    if isinstance(condition, cond.Group):
        return f"{condition.kind}(" + ", ".join(condition_text(c) for c in condition.items) + ")"
    return f"{condition.field} {condition.op} {_operand_text(condition.rhs)}"


def _operand_text(operand: cond.Operand) -> str:
    if isinstance(operand, cond.Param):
        return f"${operand.name}"
    if isinstance(operand, cond.FieldRef):
        return operand.name
    if isinstance(operand, cond.Product):
        return f"{operand.field.name} * {_operand_text(operand.factor)}"
    return show(operand.value)


def diff(old: RuleBook, new: RuleBook) -> RulesDiff:
    """Everything that differs between two rules versions, per rule id in reading order."""
    if old.version == new.version:
        return RulesDiff(old.version, new.version)
    old_rules, new_rules = _by_id(old), _by_id(new)
    ids = list(dict.fromkeys([*new_rules, *old_rules, *(t[0] for t in TIME_SETTINGS), "T4", "T5"]))
    rules = tuple(found for rule_id in ids
                  if (found := _rule_changes(rule_id, old_rules.get(rule_id, {}),
                                             new_rules.get(rule_id, {}), old, new)) is not None)
    files = sorted(name for name in set(old.files) | set(new.files)
                   if old.files.get(name) != new.files.get(name))
    return RulesDiff(old.version, new.version, rules, tuple(_settings(old, new)), tuple(files))


def _by_id(book: RuleBook) -> dict[str, dict[str, Rule]]:
    """rule id -> check -> rule, in the book's order (the MISSING_DATA template included)."""
    out: dict[str, dict[str, Rule]] = {}
    for rule in book.rules:
        out.setdefault(rule.rule_id, {})[rule.check] = rule
    return out


def _rule_changes(rule_id: str, old: Mapping[str, Rule], new: Mapping[str, Rule],
                  old_book: RuleBook, new_book: RuleBook) -> Optional[RuleChanges]:
    params: list[ParamChange] = []
    conditions: list[ConditionChange] = []
    messages: list[MessageChange] = []
    other: list[OtherChange] = []
    for check in dict.fromkeys([*new, *old]):
        before, after = old.get(check), new.get(check)
        params += _param_changes(check, before, after)
        if condition_text(_when(before)) != condition_text(_when(after)):
            conditions.append(ConditionChange(check, condition_text(_when(before)),
                                              condition_text(_when(after))))
        if before is not None and after is not None:
            messages += _message_changes(check, before.reason, after.reason)
            other += [OtherChange(check, name, a, b) for name in OTHER_FIELDS
                      if (a := _other(before, name)) != (b := _other(after, name))]
    params += _time_params(rule_id, old_book, new_book)
    messages += _state_messages(rule_id, old_book, new_book)
    added = tuple(c for c in new if c not in old)
    removed = tuple(c for c in old if c not in new)
    if not (added or removed or params or conditions or messages or other):
        return None
    status = "added" if not old and new else "removed" if old and not new else "changed"
    return RuleChanges(rule_id, status, added, removed, tuple(params), tuple(conditions),
                       tuple(messages), tuple(other))


def _when(rule: Optional[Rule]) -> Optional[cond.Condition]:
    return rule.condition if rule is not None else None


def _param_changes(check: str, old: Optional[Rule], new: Optional[Rule]) -> Iterator[ParamChange]:
    """Base values, then each product's overrides (a missing side is None)."""
    before = dict(old.params) if old else {}
    after = dict(new.params) if new else {}
    for name in dict.fromkeys([*before, *after]):
        if before.get(name) != after.get(name):
            yield ParamChange(check, name, before.get(name), after.get(name))
    old_products = dict(old.product_params) if old else {}
    new_products = dict(new.product_params) if new else {}
    for product in sorted(set(old_products) | set(new_products)):
        a, b = dict(old_products.get(product, {})), dict(new_products.get(product, {}))
        for name in dict.fromkeys([*a, *b]):
            if a.get(name) != b.get(name):
                yield ParamChange(check, name, a.get(name), b.get(name), product)


def _message_changes(check: str, old: Optional[ReasonSpec],
                     new: Optional[ReasonSpec]) -> list[MessageChange]:
    return [MessageChange(check, name, a, b) for name in MESSAGE_FIELDS
            if (a := getattr(old, name, None)) != (b := getattr(new, name, None))]


def _other(rule: Rule, name: str) -> Any:
    if name == "products":
        return sorted(rule.products)
    if name.startswith("reason."):
        return getattr(rule.reason, name.split(".", 1)[1], None)
    value = getattr(rule, name)
    return dict(value) if isinstance(value, Mapping) else value


def _time_params(rule_id: str, old: RuleBook, new: RuleBook) -> list[ParamChange]:
    """time.yaml's windows (T1-T3), temporary limit (T4) and grace (T5) as their rule's parameters."""
    pairs = [(check, name, getattr(old.time, name), getattr(new.time, name))
             for tid, check, name in TIME_SETTINGS if tid == rule_id]
    nested = {"T4": "temporary_limit", "T5": "grace"}.get(rule_id)
    if nested:
        a, b = getattr(old.time, nested), getattr(new.time, nested)
        pairs += [(nested, name, getattr(a, name), getattr(b, name))
                  for name in a.__dataclass_fields__]
    return [ParamChange(check, name, x, y) for check, name, x, y in pairs if x != y]


def _state_messages(rule_id: str, old: RuleBook, new: RuleBook) -> list[MessageChange]:
    """The wording of the refusals by state (time.yaml state_reasons), under T1.state / T2.state."""
    def of(book: RuleBook) -> Mapping[str, ReasonSpec]:
        return {code: spec for code, (rid, spec) in book.time.state_reasons.items() if rid == rule_id}

    before, after = of(old), of(new)
    return [change for code in dict.fromkeys([*before, *after])
            for change in _message_changes("state", before.get(code), after.get(code))]


def _settings(old: RuleBook, new: RuleBook) -> Iterator[SettingChange]:
    """Products (per attribute), the APR cap and rounding, limits.yaml's modes, recourse, and the
    explanations' words."""
    for product in dict.fromkeys([*new.products, *old.products]):
        a, b = old.products.get(product), new.products.get(product)
        if a is None or b is None:
            yield SettingChange("products.yaml", product, _plain(a), _plain(b))
            continue
        for name in a.__dataclass_fields__:
            if getattr(a, name) != getattr(b, name):
                yield SettingChange("products.yaml", f"{product}.{name}", getattr(a, name),
                                    getattr(b, name))
    for name in ("human_review_days", "review_claim_minutes", "review_sla_hours"):
        if getattr(old.time, name) != getattr(new.time, name):
            yield SettingChange("time.yaml", name, getattr(old.time, name), getattr(new.time, name))
    for file, name in (("products.yaml", "apr_cap"), ("products.yaml", "rate_decimals"),
                       ("limits.yaml", "largest_allowed"), ("limits.yaml", "review_approval")):
        if getattr(old, name) != getattr(new, name):
            yield SettingChange(file, name, getattr(old, name), getattr(new, name))
    before, after = _recourse(old), _recourse(new)
    for name in dict.fromkeys([*before, *after]):
        if before.get(name) != after.get(name):
            yield SettingChange("recourse.yaml", name, before.get(name), after.get(name))
    before, after = _explanations(old), _explanations(new)
    for name in dict.fromkeys([*before, *after]):
        if before.get(name) != after.get(name):
            yield SettingChange("explanations.yaml", name, before.get(name), after.get(name))


def _recourse(book: RuleBook) -> dict[str, Any]:
    spec = book.recourse
    if spec is None:
        return {}
    return {"actionable": [f"{a.field} {a.action}" + ("" if a.to is None else f" {show(a.to)}")
                           for a in spec.actionable],
            "state_waits": sorted(spec.state_waits), "max_evaluations": spec.max_evaluations,
            "max_fields": spec.max_fields, "max_options": spec.max_options}


def _explanations(book: RuleBook) -> dict[str, str]:
    """explanations.yaml's words, one entry per template or name: `summaries.rules.rejected.en`,
    `product_names.en.weilidai` (a version without the file has none)."""
    texts = book.explanations
    if texts is None:
        return {}
    out = {f"summaries.{by}.{outcome}.{lang}": text
           for by, outcomes in texts.summaries.items()
           for outcome, langs in outcomes.items() for lang, text in langs.items()}
    out.update({f"product_names.{lang}.{product}": name
                for lang, names in texts.product_names.items() for product, name in names.items()})
    return out


def _plain(value: Any) -> Any:
    """A dataclass as a dict of its fields (JSON's shape), anything else as it is."""
    if value is None or not hasattr(value, "__dataclass_fields__"):
        return value
    return {name: _plain(getattr(value, name)) for name in value.__dataclass_fields__}


def _rule_dict(rule: RuleChanges) -> dict:
    return {"rule_id": rule.rule_id, "status": rule.status,
            "checks_added": list(rule.checks_added), "checks_removed": list(rule.checks_removed),
            "parameters": [_plain(p) for p in rule.parameters],
            "conditions": [_plain(c) for c in rule.conditions],
            "messages": [_plain(m) for m in rule.messages],
            "other": [_plain(o) for o in rule.other]}
