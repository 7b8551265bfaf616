"""A fast `Schema.load` for ordinary valid documents, compiled from the declared fields.

marshmallow spends most of a load in its per-field machinery (`Field.deserialize`, an `And` of
the validators built per call, error stores), about 250 us for a POST /decide body. The loader
here is compiled once per schema instance by walking the schema's own `load_fields` (field
class, required / allow_none / load_default, validators, nested schemas) and its
`@validates_schema` hooks, so the contract is written once, in the schema. It checks a
document with plain Python and builds the dict marshmallow would return (same keys in the same
order, same types). At the first thing it does not recognise or that is not valid it gives up
(GIVE_UP) and marshmallow's own load runs from the start, so every error, message and field
name is marshmallow's. tests/unit/test_fastload.py checks that both loads agree.
"""
from __future__ import annotations

import datetime as dt
import math
from typing import Any, Callable, Mapping, NamedTuple

from marshmallow import Schema, ValidationError, fields, missing, validate
from marshmallow.decorators import POST_LOAD, PRE_LOAD, VALIDATES, VALIDATES_SCHEMA

from schemas.fields import StrictBoolean, StrictDate, StrictNumber

# What a loader returns when it does not vouch for the document: run marshmallow instead.
GIVE_UP: Any = object()
# An optional field's marker for "absent stays absent" (no load_default).
_OMIT: Any = object()

Loader = Callable[[Any], Any]
Predicate = Callable[[Any], bool]


def _give_up(value: Any) -> Any:
    """The loader of a field the compiler does not know: any value of it goes to marshmallow."""
    return GIVE_UP


def _boolean(field: StrictBoolean) -> Loader:
    def load(value: Any) -> Any:
        return value if type(value) is bool else GIVE_UP
    return load


def _number(field: StrictNumber) -> Loader:
    """StrictNumber: an int, or a finite float (an integral one becomes an int when the field
    is `integer`); bool, str and anything else give up."""
    integer, isfinite = field.integer, math.isfinite

    def load(value: Any) -> Any:
        kind = type(value)
        if kind is int:
            return value
        if kind is not float or not isfinite(value):
            return GIVE_UP
        if integer:
            return int(value) if value.is_integer() else GIVE_UP
        return value
    return load


def _date(field: StrictDate) -> Loader:
    """StrictDate: a 10-character ISO date string."""
    fromisoformat = dt.date.fromisoformat

    def load(value: Any) -> Any:
        if type(value) is not str or len(value) != 10:
            return GIVE_UP
        try:
            return fromisoformat(value)
        except ValueError:
            return GIVE_UP
    return load


def _string(field: fields.String) -> Loader:
    def load(value: Any) -> Any:
        return value if type(value) is str else GIVE_UP
    return load


def _list(field: fields.List) -> Loader:
    """A JSON array, each item through the inner field's loader."""
    item_loader = field_loader(field.inner)

    def load(value: Any) -> Any:
        if type(value) is not list:
            return GIVE_UP
        out = []
        for item in value:
            item = item_loader(item)
            if item is GIVE_UP:
                return GIVE_UP
            out.append(item)
        return out
    return load


def _nested(field: fields.Nested) -> Loader:
    """A nested schema's own compiled loader, with the `unknown` Nested passes to it."""
    if field.many:
        return _give_up
    nested = field.schema
    return schema_loader(nested, field.unknown if field.unknown is not None else nested.unknown) or _give_up


# Exact classes only: a subclass may deserialize differently.
_CONVERTERS: dict[type, Callable[[Any], Loader]] = {
    StrictBoolean: _boolean, StrictNumber: _number, StrictDate: _date,
    fields.String: _string, fields.List: _list, fields.Nested: _nested,
}


def _range(rule: validate.Range) -> Predicate:
    low, high, low_inclusive, high_inclusive = rule.min, rule.max, rule.min_inclusive, rule.max_inclusive

    def ok(value: Any) -> bool:
        if low is not None and (value < low if low_inclusive else value <= low):
            return False
        return high is None or not (value > high if high_inclusive else value >= high)
    return ok


def _length(rule: validate.Length) -> Predicate:
    low, high, equal = rule.min, rule.max, rule.equal

    def ok(value: Any) -> bool:
        size = len(value)
        if equal is not None:
            return size == equal
        return (low is None or size >= low) and (high is None or size <= high)
    return ok


def _one_of(rule: validate.OneOf) -> Predicate:
    """Set membership, when every choice is a string (then `in` a set and `in` the tuple agree
    for a string value); otherwise the validator itself."""
    if not all(type(choice) is str for choice in rule.choices):
        return _calling(rule)
    choices = frozenset(rule.choices)
    return lambda value: type(value) is str and value in choices


def _calling(rule: Callable[[Any], Any]) -> Predicate:
    """Any other validator is called: it passes unless it raises ValidationError (marshmallow 4
    ignores what a validator returns)."""
    def ok(value: Any) -> bool:
        try:
            rule(value)
        except ValidationError:
            return False
        return True
    return ok


_PREDICATES: dict[type, Callable[[Any], Predicate]] = {
    validate.Range: _range, validate.Length: _length, validate.OneOf: _one_of,
}


class FieldPlan(NamedTuple):
    """How `Field.deserialize` loads a present value of one field: null per allow_none, else
    the value converted by the field's class, then every validator must pass."""

    allow_none: bool
    convert: Loader
    predicates: tuple[Predicate, ...]


def field_plan(field: fields.Field) -> FieldPlan:
    """A field of a class the compiler does not know (or with its own pre/post-load functions)
    gives up on any value, null included."""
    converter = _CONVERTERS.get(type(field))
    if converter is None or field.pre_load or field.post_load:
        return FieldPlan(False, _give_up, ())
    predicates = tuple(_PREDICATES.get(type(rule), _calling)(rule) for rule in field.validators)
    return FieldPlan(field.allow_none, converter(field), predicates)


def field_loader(field: fields.Field) -> Loader:
    """A field's FieldPlan as one function (a list's items; schema_loader inlines the plan)."""
    allow_none, convert, predicates = field_plan(field)

    def load(value: Any) -> Any:
        if value is None:
            return None if allow_none else GIVE_UP
        value = convert(value)
        if value is GIVE_UP:
            return GIVE_UP
        for ok in predicates:
            if not ok(value):
                return GIVE_UP
        return value
    return load


def _when_absent(field: fields.Field) -> Any:
    """What an absent field becomes: GIVE_UP (required, or a class with its own handling of
    missing values), _OMIT (no default) or a factory of its load_default, which marshmallow
    returns as is (not deserialized, not validated)."""
    kind = type(field)
    if (field.required or kind.deserialize is not fields.Field.deserialize
            or kind._validate_missing is not fields.Field._validate_missing):
        return GIVE_UP
    default = field.load_default
    if default is missing:
        return _OMIT
    return default if callable(default) else (lambda: default)


def _schema_validators(schema: Schema, unknown: Any) -> list[Callable[[dict, Mapping], None]]:
    """The schema's @validates_schema methods in marshmallow's order (pass_collection ones
    first), each called the way `Schema._run_validator` calls it for a single document."""
    hooks = schema._hooks[VALIDATES_SCHEMA]
    calls = []
    for attr_name, _, options in [h for h in hooks if h[1]] + [h for h in hooks if not h[1]]:
        method = getattr(schema, attr_name)
        kwargs = {"partial": schema.partial, "many": False, "unknown": unknown}
        if options.get("pass_original", False):
            calls.append(lambda out, data, m=method, k=kwargs: m(out, data, **k))
        else:
            calls.append(lambda out, data, m=method, k=kwargs: m(out, **k))
    return calls


def schema_loader(schema: Schema, unknown: Any) -> Loader | None:
    """The compiled loader of one document of `schema`, or None when the schema uses something
    this compiler does not reproduce (many, partial, load hooks, @validates, dotted attributes,
    another dict class): then its load is always marshmallow's."""
    hooks = schema._hooks
    if (schema.many or schema.partial or schema.dict_class is not dict
            or hooks[PRE_LOAD] or hooks[POST_LOAD] or hooks[VALIDATES]):
        return None
    entries = []
    for name, field in schema.load_fields.items():
        attribute = field.attribute or name
        if "." in attribute:
            return None
        key = field.data_key if field.data_key is not None else name
        entries.append((key, attribute, *field_plan(field), _when_absent(field)))
    validators = _schema_validators(schema, unknown)

    def load(data: Any) -> Any:
        if type(data) is not dict:
            return GIVE_UP
        out: dict[str, Any] = {}
        seen = 0
        get = data.get
        for key, attribute, allow_none, convert, predicates, absent in entries:
            value = get(key, missing)
            if value is missing:
                if absent is _OMIT:
                    continue
                if absent is GIVE_UP:
                    return GIVE_UP
                out[attribute] = absent()
                continue
            seen += 1
            if value is None:  # field_loader's steps, inlined: a call less per field
                if not allow_none:
                    return GIVE_UP
            else:
                value = convert(value)
                if value is GIVE_UP:
                    return GIVE_UP
                for ok in predicates:
                    if not ok(value):
                        return GIVE_UP
            out[attribute] = value
        if seen != len(data):  # a key no field reads: unknown (or a `missing` value)
            return GIVE_UP
        for check in validators:
            try:
                check(out, data)
            except ValidationError:
                return GIVE_UP
        return out
    return load


class FastLoadSchema(Schema):
    """A schema whose `load` of one whole document tries the compiled loader first; any other
    call (many, partial, unknown given), and any document the loader gives up on, is
    marshmallow's load. `load_plain` is marshmallow's load always (the reference in tests)."""

    def load(self, data: Any, *, many: bool | None = None, partial: Any = None,
             unknown: Any = None) -> Any:
        if many is None and partial is None and unknown is None:
            loader = self._fast_loader()
            if loader is not None:
                result = loader(data)
                if result is not GIVE_UP:
                    return result
        return super().load(data, many=many, partial=partial, unknown=unknown)

    def load_plain(self, data: Any, **kwargs: Any) -> Any:
        """marshmallow's own load, field by field."""
        return super().load(data, **kwargs)

    def _fast_loader(self) -> Loader | None:
        """Compiled on the first load, when the instance is complete (subclasses set their own
        attributes after Schema.__init__), and again for a copy (Nested copies its schema and
        may narrow its fields)."""
        cached = self.__dict__.get("_fast_cache")
        if cached is None or cached[0] is not self:
            cached = (self, schema_loader(self, self.unknown))
            self._fast_cache = cached
        return cached[1]
