"""Mutants of a rules directory: every numeric threshold and date offset moved one step each way.

A kit that pins each rule's boundary notices when any threshold moves: each mutant is the rule
files with ONE value changed, and a mutant no kit case tells apart from the original
"survives". The thresholds are the values the decision compares against:
- each rule file's `params` (file-wide), each rule's `params` and `product_params`;
- each product's `min_amount` and `max_amount` (read by RANGE as `$product.*`);
- time.yaml's decision windows: reapply_window_days, cooling_off_hours,
  application_count_months and temporary_limit increase/days/max_grants. (Grace is an
  endpoint of its own, not a decision, and prices are not thresholds: neither is mutated.)
One step: 1 for an integer, one unit of the second significant decimal for a fraction
(0.85 -> 0.84/0.86, 0.0003 -> 0.00029/0.00031), one calendar day for a date offset
({years: -1} -> {years: -1, days: 1}). Pure: files in, files out.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import yaml

PRODUCTS_FILE = "products.yaml"
TIME_FILE = "time.yaml"
PRODUCT_THRESHOLDS = ("min_amount", "max_amount")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
TIME_THRESHOLDS = (("reapply_window_days",), ("cooling_off_hours",), ("application_count_months",),
                   ("temporary_limit", "increase"), ("temporary_limit", "days"),
                   ("temporary_limit", "max_grants"))


@dataclass(frozen=True)
class Mutant:
    name: str                      # e.g. "eligibility.yaml E2.age max_age 60 -> 61"
    files: Mapping[str, bytes]


def step(value: Any) -> Any:
    """The one step a threshold moves by (None: not a number this module moves)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 1:
        return 1
    return 10 ** (math.floor(math.log10(abs(value))) - 1) if value else 0.01


def moved(value: Any, direction: int) -> Any:
    """The value one step up (+1) or down (-1); a date offset moves by a day."""
    if isinstance(value, dict):
        return {**value, "days": value.get("days", 0) + direction}
    if isinstance(value, int) and not isinstance(value, bool):
        return value + direction
    return round(value + direction * step(value), 12)


def _sites(name: str, doc: dict) -> Iterator[tuple[str, list]]:
    """(label, path into the document) of every threshold a file holds."""
    if name == PRODUCTS_FILE:
        for product in doc.get("products") or {}:
            for key in PRODUCT_THRESHOLDS:
                yield f"{product}.{key}", ["products", product, key]
        return
    if name == TIME_FILE:
        for path in TIME_THRESHOLDS:
            yield ".".join(path), list(path)
    for key in doc.get("params") or {}:
        yield f"params.{key}", ["params", key]
    for index, rule in enumerate(doc.get("rules") or ()):
        label = f"{rule.get('id')}.{rule.get('check')}"
        for key in rule.get("params") or {}:
            yield f"{label} {key}", ["rules", index, "params", key]
        for product, overrides in (rule.get("product_params") or {}).items():
            for key in overrides:
                yield f"{label} {product}.{key}", ["rules", index, "product_params", product, key]


def _get(doc: Any, path: list) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _set(doc: Any, path: list, value: Any) -> None:
    _get(doc, path[:-1])[path[-1]] = value


def _movable(value: Any) -> bool:
    if isinstance(value, dict):
        return bool(value) and set(value) <= {"years", "months", "days"}
    return step(value) is not None


def mutants(files: Mapping[str, bytes]) -> Iterator[Mutant]:
    """Every one-step mutant of the rules, in file order; the other files are left as they are."""
    for name in sorted(files):
        doc = yaml.load(files[name], Loader=_LOADER)
        if not isinstance(doc, dict):
            continue
        for label, path in _sites(name, doc):
            try:
                value = _get(doc, path)
            except (KeyError, IndexError, TypeError):
                continue
            if not _movable(value):
                continue
            for direction in (-1, 1):
                changed = copy.deepcopy(doc)
                new = moved(value, direction)
                _set(changed, path, new)
                text = yaml.dump(changed, Dumper=_DUMPER, allow_unicode=True, sort_keys=False).encode()
                yield Mutant(f"{name} {label}: {_show(value)} -> {_show(new)}", {**files, name: text})


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    return repr(value)
