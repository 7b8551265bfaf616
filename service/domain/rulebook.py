"""Load, validate and fingerprint the rule files in `rules/`.

A bad rules directory is refused as a whole, with an error naming the file, the rule and the
problem, so a service never starts (or reloads) on half a policy. `version` is a content hash
of the rule files: two directories with the same files have the same version, and every
decision records the version that made it.
"""
from __future__ import annotations

import hashlib
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml
from marshmallow import ValidationError

from schemas.rules import (LimitsFileSchema, ProductsFileSchema, RecourseFileSchema, RuleFileSchema,
                          TimeFileSchema)
from service.domain import conditions as cond
from service.domain.facts import FACT_FIELDS

PRODUCTS_FILE = "products.yaml"
TIME_FILE = "time.yaml"
LIMITS_FILE = "limits.yaml"
RECOURSE_FILE = "recourse.yaml"
# durable_rules refuses more than 64 rules true for one fact (error 303); a product whose
# ruleset could exceed it is refused at load time instead of failing at decision time.
DURABLE_MAX_RULES = 64
# durable_rules keeps numbers as int64/double and parses its ruleset JSON itself: an integer
# past 2**53 compares wrongly (measured: x = 2**64-1 is not < 2**64) and a float that Python
# writes with an exponent but no decimal point (1e-07, 1e+16) is refused when the ruleset is built (error 204).
DURABLE_MAX_MAGNITUDE = 2 ** 53
# The whole directory is read into memory, parsed and archived in Redis on every reload: a
# rules file is a few KiB, so these caps leave ample room and refuse a runaway file early.
MAX_FILE_BYTES = 256 * 1024
MAX_DIRECTORY_BYTES = 1024 * 1024
# The bundled rule and kit files expand to at most ~500 YAML nodes each (eligibility.yaml:
# 481, about 18 bytes a node), so a file of MAX_FILE_BYTES written like them holds ~15,000;
# aliases are what goes past this (a 440-byte bomb of nine levels expands to 9**9 nodes).
MAX_YAML_NODES = 100_000


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
    # True: an active grant raises the limits without the document (RULEBOOK, issue 17).
    # Rules versions without the setting asked for the document on every application.
    applies_while_active: bool = False


@dataclass(frozen=True)
class Grace:
    max_uses: int
    max_days: int
    period_days: int


@dataclass(frozen=True)
class TimeRules:
    """time.yaml: the windows of T1-T5 and the wording of the refusals by state."""

    reapply_window_days: int
    cooling_off_hours: int
    application_count_months: int
    temporary_limit: TemporaryLimit
    grace: Grace
    state_reasons: Mapping[str, tuple[str, ReasonSpec]]   # code -> (rule id, wording)


@dataclass(frozen=True)
class Actionable:
    """recourse.yaml: one request field an applicant can act on, and how (see the file)."""

    field: str                 # request path: amount, applicant.documents.repayment_proof, ...
    action: str                # amount | term | set | today | wait
    to: Optional[bool] = None  # the value a `set` supplies


@dataclass(frozen=True)
class RecourseSpec:
    """recourse.yaml (issue 13): what the recourse search may change, and its bounds."""

    actionable: tuple[Actionable, ...]
    state_waits: frozenset[str]
    max_evaluations: int
    max_fields: int
    max_options: int


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
    # versions without the setting) or "smallest_applicable_limit" (RULEBOOK, issue 17)
    largest_allowed: str = "smallest_broken_limit"
    # limits.yaml `review_approval_amount`: "amount_asked" (rules versions without the
    # setting: an approval offers the amount whatever the limits) or "least_favourable_limit"
    # (at most the smallest limit that applies, a limit reading a missing field applying)
    review_approval: str = "amount_asked"
    # None: the rules version declares no recourse (versions before issue 13), and its
    # decisions carry no `recourse` key, so their logged records replay identical.
    recourse: Optional[RecourseSpec] = None
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


def load(directory: Path | str) -> RuleBook:
    directory = Path(directory)
    if not directory.is_dir():
        raise RulesError(f"{directory}: not a directory of rule files")
    return load_files(read_yaml_files(directory, MAX_FILE_BYTES, MAX_DIRECTORY_BYTES), directory)


def read_yaml_files(directory: Path, max_file: int, max_total: int,
                    error: type[RulesError] = RulesError, label: str = "") -> dict[str, bytes]:
    """Every `*.yaml` of a directory (name -> bytes), each read with a byte bound.

    The bound is on what is read, not on what `stat` says: a symlink to /dev/zero has size 0,
    and a mounted file may change between a stat and a read. `label` prefixes the file names
    in errors (the kit's files are `tests/<name>`)."""
    files: dict[str, bytes] = {}
    total = 0
    for path in sorted(directory.glob("*.yaml")):
        data = read_bounded(path, max_file, error, label + path.name)
        total += len(data)
        if total > max_total:
            raise error(f"{label}{path.name}: the files add up to more than {max_total} bytes")
        files[path.name] = data
    return files


def read_bounded(path: Path, limit: int, error: type[RulesError], name: str) -> bytes:
    """A regular file's bytes, at most `limit` of them (else `error`).

    Symlinks are followed (a Kubernetes ConfigMap mount is symlinks to regular files); what
    the open file turns out to be decides: a FIFO, a device or a directory is refused.
    O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise error(f"{name}: cannot be opened: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise error(f"{name}: not a regular file (a FIFO, device or directory is refused)")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise error(f"{name}: cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise error(f"{name}: more than {limit} bytes; a file here may hold at most {limit}")
    return data


def _check_size(name: str, size: int, total: int) -> None:
    """Refuse files too big to take (an archived version is checked as the directory was)."""
    if size > MAX_FILE_BYTES:
        raise RulesError(f"{name}: {size} bytes; a rules file may hold at most {MAX_FILE_BYTES}")
    if total > MAX_DIRECTORY_BYTES:
        raise RulesError(f"{name}: the rule files add up to more than {MAX_DIRECTORY_BYTES} bytes")


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


def _check_numbers(name: str, node: Any, path: str = "") -> None:
    """Walk a parsed file and refuse the first number durable_rules cannot take."""
    if isinstance(node, dict):
        for key, value in node.items():
            _check_numbers(name, value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            label = f"{path}[{index}]"
            if isinstance(value, dict) and "id" in value and "check" in value:
                label = f"{path}[{index}] (rule {value['id']}.{value['check']})"
            _check_numbers(name, value, label)
    else:
        problem = number_problem(node)
        if problem:
            raise RulesError(f"{name}: {path}: {node!r} {problem}")


def load_files(files: Mapping[str, bytes], directory: Path = Path("<memory>")) -> RuleBook:
    """Build a RuleBook from file contents (a directory read, or files kept by rules version)."""
    for required in (PRODUCTS_FILE, TIME_FILE):
        if required not in files:
            raise RulesError(f"{directory}/{required}: missing")
    total = 0
    for name, data in files.items():
        total += len(data)
        _check_size(name, len(data), total)
    documents = {name: parse_yaml(name, data) for name, data in files.items()}
    for name, document in documents.items():
        _check_numbers(name, document)
    products_doc = _validate(PRODUCTS_FILE, ProductsFileSchema(), documents[PRODUCTS_FILE])
    time_doc = _validate(TIME_FILE, TimeFileSchema(), documents[TIME_FILE])
    products = {name: Product(name=name, **spec) for name, spec in products_doc["products"].items()}

    rules: list[Rule] = []
    largest_allowed, review_approval = "smallest_broken_limit", "amount_asked"
    for name in sorted(documents):
        if name in (PRODUCTS_FILE, RECOURSE_FILE):
            continue
        if name == TIME_FILE:
            doc = time_doc
        else:
            schema = LimitsFileSchema() if name == LIMITS_FILE else RuleFileSchema()
            doc = _validate(name, schema, documents[name])
            largest_allowed = doc.get("largest_allowed_amount", largest_allowed)
            review_approval = doc.get("review_approval_amount", review_approval)
        rules.extend(_build_rule(name, raw, doc["params"], products) for raw in doc["rules"])
    time_rules = TimeRules(
        reapply_window_days=time_doc["reapply_window_days"],
        cooling_off_hours=time_doc["cooling_off_hours"],
        application_count_months=time_doc["application_count_months"],
        temporary_limit=TemporaryLimit(**time_doc["temporary_limit"]),
        grace=Grace(**time_doc["grace"]),
        state_reasons={code: (spec["rule_id"], ReasonSpec(
            code=code, outcome="rejected", starts_cooldown=False,
            **{k: v for k, v in spec.items() if k != "rule_id"}))
            for code, spec in time_doc["state_reasons"].items()},
    )

    _check_consistency(rules, products)
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
    )


# Which action fits which kind of request field (FACT_FIELDS kinds).
_ACTION_KINDS = {"amount": ("amount",), "term": ("term_days",), "set": "bool", "today": "date",
                 "wait": "date"}


def _recourse(document: Any) -> RecourseSpec:
    """recourse.yaml: shape by its schema, then each action against its field's kind."""
    doc = _validate(RECOURSE_FILE, RecourseFileSchema(), document)
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
# libyaml's parser with the same safe constructor: the same documents, ~10x faster (a reload,
# an archived version and each mutant of `loan-decide test --mutate` parse every file).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml(name: str, data: bytes, error: type[RulesError] = RulesError) -> Any:
    """One YAML document (rule file, kit file, archived version), refused when its aliases
    expand past MAX_YAML_NODES.

    PyYAML builds an alias as a second reference to one object, so parsing an alias bomb is
    quick; every walk of the result afterwards (number checks, validation) visits each
    reference again, and nine levels of nine aliases are 9**9 visits. The node graph is
    composed first and its expanded size counted before anything is built from it."""
    loader = _SAFE_LOADER(data)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_nodes(node, MAX_YAML_NODES)
        if math.isinf(size):
            raise error(f"{name}: an alias contains itself (its expansion never ends)")
        if size > MAX_YAML_NODES:
            raise error(f"{name}: its aliases expand to more than {MAX_YAML_NODES} YAML nodes; "
                        f"a file may expand to at most {MAX_YAML_NODES}")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise error(f"{name}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()


def _expanded_nodes(root: yaml.Node, limit: int) -> float:
    """The node count of the document with every alias written out, memoised per node (an
    alias is the node it names, so the count is linear in the document); it stops at the first
    node past `limit`, and a node inside itself (`&a [*a]`) counts as infinite."""
    sizes: dict[int, int] = {}
    ancestors: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            ancestors.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > limit:
                return sizes[key]
        elif key in ancestors:
            return math.inf
        elif key not in sizes:
            ancestors.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node))
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _validate(name: str, schema, document: Any) -> dict:
    if not isinstance(document, dict):
        raise RulesError(f"{name}: expected a mapping at the top level")
    try:
        return schema.load(document)
    except ValidationError as exc:
        raise RulesError(f"{name}: {_describe(document, exc.messages)}") from exc


def _describe(document: Any, messages: Any, path: str = "") -> str:
    """Flatten marshmallow's nested messages, naming rules by id.check where possible."""
    parts = []
    for key, value in messages.items():
        label = f"{path}.{key}" if path else str(key)
        if path.endswith("rules") and isinstance(key, int):
            try:
                raw = document["rules"][key]
                label = f"rule {raw.get('id')}.{raw.get('check')}"
            except (KeyError, IndexError, TypeError, AttributeError):
                pass
        if isinstance(value, dict):
            parts.append(_describe(document, value, label))
        else:
            parts.append(f"{label}: {' '.join(map(str, value))}")
    return "; ".join(parts)


def _build_rule(source: str, raw: dict, file_params: Mapping[str, Any],
                products: Mapping[str, Product]) -> Rule:
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
        _check_types(where, condition, params, applies, products, raw["product_params"])
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
                 applies: frozenset[str], products: Mapping[str, Product],
                 product_params: Mapping[str, Mapping[str, Any]]) -> None:
    if isinstance(condition, cond.Group):
        for item in condition.items:
            _check_types(where, item, params, applies, products, product_params)
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


def _check_consistency(rules: list[Rule], products: Mapping[str, Product]) -> None:
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
        if count > DURABLE_MAX_RULES:
            raise RulesError(f"rules: product {product} has {count} rules; durable_rules allows "
                             f"at most {DURABLE_MAX_RULES} true at once")
