"""DecideRequestSchema.load (the loader compiled from the fields, schemas/fastload.py) against
marshmallow's own load of the same schema (`load_plain`): for valid and invalid documents, the
same result, value types and key order included, or the same ValidationError."""
from __future__ import annotations

import copy
import datetime as dt
import fractions
import math
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError, fields, validate, validates_schema

from schemas.fastload import GIVE_UP, FastLoadSchema, schema_loader
from schemas.fields import StrictBoolean, StrictDate, StrictNumber
from schemas.request import DOCUMENTS, GROUPS, PRODUCTS, DecideRequestSchema
from service.adapters import rules_files
from tests.conftest import PRODUCT_BASE, RULES_DIR, payload
from tests.unit.test_properties import requests

SCHEMA = DecideRequestSchema(term_ranges=rules_files.load(RULES_DIR).term_ranges())
LOADER = schema_loader(SCHEMA, SCHEMA.unknown)  # what SCHEMA.load tries first

APPLICANT = SCHEMA.fields["applicant"].schema
HOLDERS = {"top": SCHEMA, "applicant": APPLICANT, "documents": APPLICANT.fields["documents"].schema}

# JSON values near the contract's edges, per field class: integral floats, non-finite floats,
# bool for number, dates valid and not, ids with '/', control characters, surrogates and
# length limits, groups repeated or null, documents empty or partial.
NUMBER_VALUES = [0, -1, 1, 7, 30, 150, 151, 1000, 1001, 100_000, 100_001, 1_000_000_000,
                 1_000_000_001, 10**30, 0.0, -0.0, 0.5, 1.0, 1.5, 7.0, 150.0, 4000.0, 4000.5, 1e9,
                 1e9 + 0.5, 1e300, math.nan, math.inf, -math.inf]
DATE_VALUES = ["2024-01-15", "2024-02-29", "2023-02-29", "2024-1-15", "20240115", "2024-W03-1",
               "2024-01-15T00:00", " 2024-01-1", "2024-01-15 ", "0000-01-01", "2024-01-15\n"]
STRING_VALUES = ["", "x", "4000", "true", "a/b", "a\x00b", "a\x85", "a\ud800", "a\u200bb", "\u2028",
                 "é", "a" * 128, "a" * 129, *PRODUCTS, *GROUPS, *DOCUMENTS]
LIST_VALUES = [[], ["student"], ["student", "student"], [None], ["student", None], [1], ["pilot"],
               list(GROUPS), [*GROUPS, "student"], [{}], [["student"]]]
DICT_VALUES = [{}, {"chsi_verified": True}, {"chsi_verified": None}, {"chsi_verified": 1},
               {"x": 1}, {"age": 30}, {name: True for name in DOCUMENTS}]
ANY_VALUES = [None, True, False, 0, 1.5, "x", [], {}]
# What each field class takes, to try often: the test's palette, not the compiled loader's.
PALETTES = {StrictNumber: NUMBER_VALUES, StrictDate: DATE_VALUES, StrictBoolean: [True, False],
            fields.String: STRING_VALUES, fields.List: LIST_VALUES, fields.Nested: DICT_VALUES}

SCALARS = st.one_of(st.sampled_from(NUMBER_VALUES + DATE_VALUES + STRING_VALUES), st.booleans(),
                    st.none(), st.floats(), st.integers())
JSON_VALUES = st.one_of(
    SCALARS,
    st.lists(st.one_of(st.sampled_from(GROUPS), SCALARS), max_size=6),
    st.dictionaries(st.sampled_from([*DOCUMENTS, "age", "x"]), SCALARS, max_size=4),
)


def edges(field: fields.Field) -> list:
    """Numbers on, just inside and just outside each Range bound of the field."""
    out: list = []
    for rule in field.validators:
        if isinstance(rule, validate.Range):
            for bound in (b for b in (rule.min, rule.max) if b is not None):
                out += [bound, bound - 1, bound + 1, bound - 0.5, bound + 0.5, float(bound),
                        math.nextafter(bound, math.inf), math.nextafter(bound, -math.inf)]
    return out


@st.composite
def values_for(draw, holder: str, key: str, current: Any) -> Any:
    """A new value for `key`, from one of these, chosen evenly: its field's palette, its bounds'
    edges, the current number moved a little, any JSON value."""
    field = HOLDERS[holder].fields.get(key)
    choices = [JSON_VALUES]
    if field is not None:
        choices.append(st.sampled_from(PALETTES.get(type(field), ANY_VALUES)))
        if edges(field):
            choices.append(st.sampled_from(edges(field)))
    if type(current) in (int, float):
        choices.append(st.sampled_from([current + 0.5, current - 1, current + 1, float(current),
                                        -current, current * 1e9]))
    return draw(draw(st.sampled_from(choices)))


@st.composite
def bases(draw) -> dict:
    """A valid-looking request: the product examples of the rule tests, or a random one."""
    if draw(st.booleans()):
        return payload(draw(st.sampled_from(list(PRODUCT_BASE))))
    return draw(requests())


@st.composite
def documents(draw) -> dict:
    """A request with 0-4 changes: a value replaced (see values_for, or an int made a float),
    a key deleted or added, at the top, in the applicant or in its documents."""
    doc = draw(bases())
    for _ in range(draw(st.integers(0, 4))):
        target = draw(st.sampled_from(list(HOLDERS)))
        holder: Any = doc
        if target != "top":
            holder = doc.get("applicant")
            if target == "documents" and isinstance(holder, dict):
                holder = holder.setdefault("documents", {})
        if not isinstance(holder, dict):
            continue
        key = draw(st.sampled_from([*HOLDERS[target].fields, "unknown_field"]))
        action = draw(st.sampled_from(["set", "set", "set", "delete", "floatify"]))
        if action == "delete":
            holder.pop(key, None)
        elif action == "floatify":
            if type(holder.get(key)) is int:
                holder[key] = float(holder[key])
        else:
            # a copy: later changes must not reach the palettes' shared lists and dicts
            holder[key] = copy.deepcopy(draw(values_for(target, key, holder.get(key))))
    return doc


def typed(value: Any) -> Any:
    """The value with every type spelt out (1 and 1.0 and True differ; dict key order counts;
    floats by repr, so nan equals nan and -0.0 differs from 0.0)."""
    if isinstance(value, dict):
        return (type(value), [(k, typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return (type(value), [typed(v) for v in value])
    if isinstance(value, float):
        return (float, repr(value))
    return (type(value), value)


def outcome(load, doc: dict) -> tuple:
    try:
        return ("loaded", typed(load(doc)))
    except ValidationError as error:
        return ("invalid", error.messages, typed(error.valid_data))


def assert_same_and_vouched_iff_valid(doc: dict) -> None:
    """Both loads agree, and the compiled loader vouches exactly for the valid documents (a
    JSON document never needs marshmallow, an invalid one is always marshmallow's to report)."""
    fast = assert_same(doc)
    try:
        SCHEMA.load_plain(doc)
    except ValidationError:
        assert fast is GIVE_UP
    else:
        assert fast is not GIVE_UP


def assert_same(doc: dict) -> Any:
    """Both loads agree, neither changes the document; returns what the compiled loader gave."""
    before = copy.deepcopy(doc)
    assert outcome(SCHEMA.load, doc) == outcome(SCHEMA.load_plain, doc)
    assert typed(doc) == typed(before)
    return LOADER(doc)


@pytest.mark.slow   # a property or soak run: in `make test`, not `make unit`
@settings(max_examples=1500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(documents())
@example(payload("zhouzhuanjin"))
@example(payload(amount=4000.0, age=30.0, concurrent_lenders=2.0, credit_card_utilization=1.0))
@example(payload(term_days=1_000_000))
@example(payload(age=True))
@example(payload(amount=math.nan))
@example(payload(debt_to_income=math.inf))
def test_the_compiled_load_equals_marshmallows_load(doc):
    assert_same_and_vouched_iff_valid(doc)


ABSENT = object()


def holder_in(doc: dict, holder: str) -> dict:
    return {"top": doc, "applicant": doc["applicant"], "documents": doc["applicant"]["documents"]}[holder]


@pytest.mark.parametrize("product", ["weilidai", "zhouzhuanjin"])
def test_every_field_with_every_value_of_its_palette(product):
    """One change to a valid request at a time, for every field (and an unknown one) of the
    request, the applicant and its documents: absent, each value of its class's palette, each
    edge of its ranges, and a value of each JSON type."""
    base, tried = payload(product), 0
    for holder, schema in HOLDERS.items():
        for key in [*schema.fields, "unknown_field"]:
            field = schema.fields.get(key)
            values = ANY_VALUES if field is None else PALETTES[type(field)] + edges(field) + ANY_VALUES
            for value in [ABSENT, *values]:
                doc = copy.deepcopy(base)
                if value is ABSENT:
                    holder_in(doc, holder).pop(key, None)
                else:
                    holder_in(doc, holder)[key] = copy.deepcopy(value)
                assert_same_and_vouched_iff_valid(doc)
                tried += 1
    assert tried > 1000


def without(doc: dict, *path: str) -> dict:
    doc = copy.deepcopy(doc)
    holder = doc
    for key in path[:-1]:
        holder = holder[key]
    del holder[path[-1]]
    return doc


def changed(doc: dict, value: Any, *path: str) -> dict:
    doc = copy.deepcopy(doc)
    holder = doc
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value
    return doc


BASE = payload()


@pytest.mark.parametrize("doc", [
    without(BASE, "applicant", "documents"),
    changed(BASE, {}, "applicant", "documents"),
    changed(BASE, {"chsi_verified": True}, "applicant", "documents"),
    changed(BASE, {"chsi_verified": None}, "applicant", "documents"),
    without(BASE, "applicant", "groups"),
    changed(BASE, [], "applicant", "groups"),
    changed(BASE, list(GROUPS), "applicant", "groups"),
    changed(BASE, None, "applicant", "real_name_verified_at"),
    without(BASE, "applicant", "real_name_verified_at"),
    without(BASE, "term_days"),
    changed(BASE, None, "term_days"),
    changed(BASE, 4000.0, "amount"),
    changed(BASE, 30.0, "applicant", "age"),
    changed(BASE, 2.0, "applicant", "concurrent_lenders"),
    changed(BASE, 1, "applicant", "credit_card_utilization"),
    changed(BASE, "a" * 128, "user_id"),
    changed(BASE, "é-\u4e2d", "application_id"),
], ids=lambda doc: "")
def test_the_compiled_loader_loads_these_like_marshmallow(doc):
    assert assert_same(doc) is not GIVE_UP


@pytest.mark.parametrize("doc", [
    changed(BASE, 0, "amount"), changed(BASE, True, "amount"), changed(BASE, math.nan, "amount"),
    changed(BASE, math.inf, "amount"), changed(BASE, "5000", "amount"),
    changed(BASE, 1_000_000_001, "amount"), changed(BASE, 30.5, "applicant", "age"),
    changed(BASE, 151, "applicant", "age"), changed(BASE, 1.01, "applicant", "debt_to_income"),
    changed(BASE, 1, "applicant", "bank_card_bound"), changed(BASE, "2024-02-30", "applicant", "id_card_expiry"),
    changed(BASE, None, "applicant", "age"), without(BASE, "applicant", "age"), without(BASE, "product"),
    changed(BASE, "loan", "product"), changed(BASE, 100_000, "term_days"), changed(BASE, 1, "term_days"),
    changed(BASE, ["student", "student"], "applicant", "groups"), changed(BASE, None, "applicant", "groups"),
    changed(BASE, [*GROUPS, "student"], "applicant", "groups"), changed(BASE, ["pilot"], "applicant", "groups"),
    changed(BASE, None, "applicant", "documents"), changed(BASE, [], "applicant", "documents"),
    changed(BASE, {"x": True}, "applicant", "documents"), changed(BASE, [], "applicant"),
    changed(BASE, None, "applicant"), changed(BASE, 1, "unknown_field"), changed(BASE, 1, "applicant", "x"),
    changed(BASE, "", "user_id"), changed(BASE, "a" * 129, "user_id"), changed(BASE, "a/b", "user_id"),
    changed(BASE, "a\x7f", "application_id"), changed(BASE, "a\ud800", "application_id"),
], ids=lambda doc: "")
def test_the_compiled_loader_leaves_invalid_documents_to_marshmallow(doc):
    with pytest.raises(ValidationError):
        SCHEMA.load_plain(doc)
    assert assert_same(doc) is GIVE_UP


@pytest.mark.parametrize("doc", [
    changed(BASE, fractions.Fraction(1, 2), "applicant", "debt_to_income"),
    changed(BASE, ("student",), "applicant", "groups"),
    changed(BASE, OrderedDict(BASE["applicant"]), "applicant"),
    OrderedDict(BASE),
])
def test_values_json_does_not_produce_go_to_marshmallow(doc):
    """marshmallow accepts these (a Fraction is a Real, a tuple a collection, an OrderedDict a
    Mapping); the compiled loader does not vouch for them."""
    SCHEMA.load_plain(doc)
    assert assert_same(doc) is GIVE_UP


def test_other_ways_of_calling_load_are_marshmallows():
    doc = changed(BASE, 1, "unknown_field")
    assert SCHEMA.load(doc, unknown="exclude") == SCHEMA.load(BASE)
    assert SCHEMA.load([BASE], many=True) == [SCHEMA.load(BASE)]
    # partial: an absent field stays absent, its load_default is not applied
    assert SCHEMA.load({"applicant": {"age": 30}}, partial=True) == {"applicant": {"age": 30}}


def test_a_copy_compiles_its_own_loader():
    """Nested copies its schema (copy.copy) and may narrow the copy's fields: the copy must not
    use its original's loader."""
    narrowed = copy.copy(SCHEMA)
    SCHEMA.load(BASE)
    narrowed.exclude = {"term_days"}
    narrowed._init_fields()
    with pytest.raises(ValidationError) as error:
        narrowed.load(BASE)
    assert error.value.messages == {"term_days": ["Unknown field."]}


def test_the_loaded_request_has_marshmallows_types():
    loaded = SCHEMA.load(changed(BASE, 4000.0, "amount"))
    assert type(loaded["amount"]) is float  # amount is not an integer field
    loaded = SCHEMA.load(changed(BASE, 30.0, "applicant", "age"))
    assert type(loaded["applicant"]["age"]) is int
    assert loaded["applicant"]["real_name_verified_at"] == dt.date(2024, 1, 15)
    assert SCHEMA.load(without(BASE, "applicant", "documents"))["applicant"]["documents"] == {}
    assert SCHEMA.load(changed(BASE, {}, "applicant", "documents"))["applicant"]["documents"] == {
        name: False for name in DOCUMENTS}


class Toy(FastLoadSchema):
    """The compiler's other paths, which DecideRequestSchema does not use: data_key and
    attribute, exclusive bounds, exact and minimum lengths, non-string choices, a nullable
    list item, a callable default, a field class it does not know, an original-data validator."""

    name = fields.String(data_key="Name", validate=validate.Length(min=2, max=3))
    n = StrictNumber(attribute="count", validate=validate.Range(min=0, max=10, min_inclusive=False,
                                                                max_inclusive=False))
    tags = fields.List(fields.String(allow_none=True), validate=validate.Length(equal=2),
                       load_default=lambda: ["a", "b"])
    code = StrictNumber(integer=True, validate=validate.OneOf([1, 2.5]))
    other = fields.Integer(allow_none=True)

    @validates_schema(pass_original=True)
    def _no_zz(self, data, original, **kwargs):
        if original.get("Name") == "zz":
            raise ValidationError("No zz.", "Name")


@pytest.mark.parametrize(("doc", "vouched"), [
    ({}, True), ({"Name": "ab", "n": 5, "tags": ["x", None], "code": 1.0}, True),
    ({"Name": "abc", "n": 9.5, "code": 1}, True), ({"name": "ab"}, False), ({"Name": "a"}, False),
    ({"Name": "abcd"}, False), ({"Name": "zz"}, False), ({"n": 0}, False), ({"n": 10}, False),
    ({"n": 0.0}, False), ({"tags": ["x"]}, False), ({"tags": ["x", 1]}, False), ({"code": 2}, False),
    ({"code": 2.5}, False), ({"other": 1}, False), ({"other": None}, False), ({"count": 1}, False),
])
def test_the_compiler_follows_other_fields_and_validators(doc, vouched):
    toy = Toy()
    assert outcome(toy.load, doc) == outcome(toy.load_plain, doc)
    assert (schema_loader(toy, toy.unknown)(doc) is not GIVE_UP) == vouched


class Constant(FastLoadSchema):
    """fields.Constant handles a missing value itself: absent, it loads its constant."""

    kind = fields.Constant("loan")


def test_a_field_class_with_its_own_missing_handling_goes_to_marshmallow():
    assert Constant().load({}) == Constant().load_plain({}) == {"kind": "loan"}
    assert schema_loader(Constant(), "raise")({}) is GIVE_UP
