"""Rule conditions: the small expression language of `rules/*.yaml`, compiled for durable_rules.

A condition is a comparison string (`age < $min_age`) or a tree of them under `all:` / `any:`.
The left side is always a fact field; the right side a literal, a `$parameter`, a
`$product.<attribute>`, another field, or `field * number`. Parsing happens once at load time
(so a bad rule file is refused at start-up); compiling resolves the parameters for one product
and emits the JSON durable_rules evaluates. No condition is ever evaluated in Python.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Union

OPERATORS = {"==": None, "!=": "$neq", "<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}
ORDERING = {"<", "<=", ">", ">="}

# Whole-text matches (fullmatch: `$` would let a trailing newline through) of ASCII only: `\d`
# also matches other scripts' digits, which int() reads, so "１８" would pass as 18.
_COMPARISON = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(==|!=|<=|>=|<|>)\s*(.+?)\s*", re.ASCII)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


class ConditionError(ValueError):
    """A condition that cannot be parsed or does not fit the fact's fields."""


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Param:
    """`$name` (a rule/file parameter) or `$product.attr` (a products.yaml attribute)."""

    name: str


@dataclass(frozen=True)
class FieldRef:
    name: str


@dataclass(frozen=True)
class Product:
    """`field * operand`: durable_rules' `$mul` expression."""

    field: FieldRef
    factor: Union[Literal, Param]


Operand = Union[Literal, Param, FieldRef, Product]


@dataclass(frozen=True)
class Comparison:
    field: str
    op: str
    rhs: Operand


@dataclass(frozen=True)
class Group:
    kind: str  # "all" | "any"
    items: tuple["Condition", ...]


Condition = Union[Comparison, Group]


def parse(node: Any) -> Condition:
    """Parse the YAML `when:` value into a condition tree."""
    if isinstance(node, str):
        return _parse_comparison(node)
    if isinstance(node, dict) and len(node) == 1:
        (kind, items), = node.items()
        if kind not in ("all", "any"):
            raise ConditionError(f"unknown group {kind!r}: use 'all' or 'any'")
        if not isinstance(items, list) or not items:
            raise ConditionError(f"'{kind}' needs a non-empty list of conditions")
        return Group(kind, tuple(parse(item) for item in items))
    raise ConditionError(f"a condition is a comparison string or {{all|any: [...]}}, got {node!r}")


def _parse_comparison(text: str) -> Comparison:
    match = _COMPARISON.fullmatch(text)
    if not match:
        raise ConditionError(f"cannot read {text!r}: expected 'field OP value' with OP one of "
                             + " ".join(OPERATORS))
    field, op, rhs = match.groups()
    return Comparison(field, op, _parse_operand(rhs, text))


def _parse_operand(text: str, whole: str) -> Operand:
    if "*" in text:
        left, right = (part.strip() for part in text.split("*", 1))
        if _IDENT.fullmatch(left) and left not in ("true", "false"):
            return Product(FieldRef(left), _parse_factor(right, whole))
        if _IDENT.fullmatch(right) and right not in ("true", "false"):
            return Product(FieldRef(right), _parse_factor(left, whole))
        raise ConditionError(f"in {whole!r}: a product needs a field on one side")
    if text == "true":
        return Literal(True)
    if text == "false":
        return Literal(False)
    if _NUMBER.fullmatch(text):
        return Literal(float(text) if "." in text else int(text))
    param = _PARAM.fullmatch(text)
    if param:
        return Param(param.group(1))
    if _IDENT.fullmatch(text):
        return FieldRef(text)
    raise ConditionError(f"in {whole!r}: cannot read the value {text!r}")


def _parse_factor(text: str, whole: str) -> Union[Literal, Param]:
    operand = _parse_operand(text, whole)
    if not isinstance(operand, (Literal, Param)):
        raise ConditionError(f"in {whole!r}: a factor must be a number or a $parameter")
    return operand


def _comparisons(cond: Condition):
    """The comparisons of a condition tree, in order."""
    if isinstance(cond, Group):
        for item in cond.items:
            yield from _comparisons(item)
    else:
        yield cond


def fields_read(cond: Condition) -> list[str]:
    """Every fact field the condition reads, in order of appearance, without repeats."""
    names = (name for c in _comparisons(cond) for name in [c.field] + _operand_fields(c.rhs))
    return list(dict.fromkeys(names))


def params_used(cond: Condition) -> list[str]:
    """Every `$parameter` name the condition uses (including `product.x`)."""
    operands = (o for c in _comparisons(cond) for o in (c.rhs, getattr(c.rhs, "factor", None)))
    return list(dict.fromkeys(o.name for o in operands if isinstance(o, Param)))


def _operand_fields(operand: Operand) -> list[str]:
    if isinstance(operand, FieldRef):
        return [operand.name]
    if isinstance(operand, Product):
        return [operand.field.name]
    return []


Resolver = Callable[[str], Operand]


def compile_condition(cond: Condition, resolve: Resolver) -> dict:
    """Emit durable_rules JSON; `resolve` turns a parameter name into a Literal or FieldRef."""
    if isinstance(cond, Group):
        return {"$and" if cond.kind == "all" else "$or": [compile_condition(i, resolve) for i in cond.items]}
    value = _compile_operand(cond.rhs, resolve)
    if cond.op == "==":
        return {cond.field: value}
    return {OPERATORS[cond.op]: {cond.field: value}}


def _compile_operand(operand: Operand, resolve: Resolver) -> Any:
    if isinstance(operand, Param):
        operand = resolve(operand.name)
    if isinstance(operand, Literal):
        return operand.value
    if isinstance(operand, FieldRef):
        return {"$m": operand.name}
    factor = _compile_operand(operand.factor, resolve)
    return {"$mul": {"$l": {"$m": operand.field.name}, "$r": factor}}
