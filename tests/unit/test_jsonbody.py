"""jsonbody.parse: the raw-text fast path skips the tree walk only when the walk could not fail,
so every error (depth, lone surrogate, duplicate key) stays what the full walk says."""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.entrypoints.http import jsonbody
from tests.conftest import payload


def outcome(raw: bytes):
    """What parse answers: the document, or the error's message and field."""
    try:
        return "ok", jsonbody.parse(raw)
    except jsonbody.BodyError as exc:
        return "error", exc.message, exc.field


@pytest.fixture
def walks(monkeypatch):
    """The documents _check_tree is asked to walk."""
    seen = []
    real = jsonbody._check_tree
    monkeypatch.setattr(jsonbody, "_check_tree", lambda doc: (seen.append(doc), real(doc)))
    return seen


DEEP = ("error", "The body is nested too deeply (at most 32 levels).", "_request")


def test_an_ordinary_body_is_not_walked(walks):
    doc = payload()
    assert jsonbody.parse(json.dumps(doc).encode()) == doc
    assert jsonbody.parse(json.dumps(doc, ensure_ascii=True).encode()) == doc
    chinese = dict(doc, user_id="张三")   # \u5f20\u4e09 escapes are not surrogates
    assert jsonbody.parse(json.dumps(chinese, ensure_ascii=True).encode()) == chinese
    assert walks == []


def nested(containers: int, inner: str, kind: str) -> bytes:
    """`containers` lists or objects one inside the other, the innermost holding `inner`."""
    if kind == "list":
        return ("[" * containers + inner + "]" * containers).encode()
    innermost = "{" + (f'"a":{inner}' if inner else "") + "}"
    return ('{"a":' * (containers - 1) + innermost + "}" * (containers - 1)).encode()


# The root is level 0: a value inside 33 containers is at level 33, one too deep.
@pytest.mark.parametrize("kind", ["list", "object"])
@pytest.mark.parametrize("containers, inner, refused", [
    (32, "1", False), (33, "", False), (33, "1", True), (34, "", True), (100, "", True),
    (10_000, "", True)])
def test_nesting_is_refused_beyond_max_depth(kind, containers, inner, refused):
    result = outcome(nested(containers, inner, kind))
    assert (result == DEEP) if refused else result[0] == "ok"


def test_only_a_body_with_many_brackets_is_walked(walks):
    outcome(nested(32, "1", "object"))
    assert walks == []
    outcome(nested(33, "", "list"))
    assert len(walks) == 1


def test_brackets_inside_strings_only_cost_the_walk(walks):
    doc = {"note": "{[" * 40}
    assert outcome(json.dumps(doc).encode()) == ("ok", doc) and len(walks) == 1


@pytest.mark.parametrize("text, field", [
    ('{"user_id": "u\\ud800"}', "user_id"),
    ('{"user_id": "u\\uDFFF"}', "user_id"),
    ('{"applicant": {"groups": ["a", "\\udc00b"]}}', "applicant.groups.1"),
    ('{"k\\uD83D": 1}', "k\\ud83d"),
    ('{"a": {"x\\ud800y": {"b": 1}}}', "a.x\\ud800y"),
    ('"\\ude00"', "_request"),
])
def test_lone_surrogates_are_refused_naming_the_member(text, field):
    assert outcome(text.encode()) == (
        "error", "Not valid Unicode: a lone UTF-16 surrogate (\\ud800-\\udfff) is not a character.",
        field)


@pytest.mark.parametrize("text, value", [
    ('{"face": "\\ud83d\\ude00"}', {"face": "\U0001F600"}),     # an escaped pair is one character
    ('{"face": "\\uD83D\\uDE00"}', {"face": "\U0001F600"}),
    ('{"path": "\\\\ud800"}', {"path": "\\ud800"}),             # an escaped backslash, then text
])
def test_valid_escapes_pass(text, value):
    assert outcome(text.encode()) == ("ok", value)


def test_the_first_repeated_key_is_named():
    assert outcome(b'{"a": 1, "b": 1, "b": 2, "a": 2}')[2] == "b"
    assert outcome(b'{"x": {"c": 1, "d": 2, "c": 3}}')[1] == "The key 'c' appears more than once."
    assert outcome(b'{"a": 1, "b": {"a": 2}}') == ("ok", {"a": 1, "b": {"a": 2}})


# Any document, however deep or wherever its surrogates: the same answer as the full walk.
TEXT = st.text(st.sampled_from(["a", "张", "{", "[", "\\", "\ud83d", "\ude00", "\U0001F600"]),
               max_size=6)
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), TEXT)
TREES = st.recursive(LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)), max_leaves=12)


@st.composite
def documents(draw):
    doc = draw(TREES)
    for _ in range(draw(st.integers(0, 40))):
        doc = [doc] if draw(st.booleans()) else {draw(TEXT): doc}
    return doc


@pytest.mark.slow   # a property or soak run: in `make test`, not `make unit`
@settings(max_examples=300, deadline=None)
@given(documents(), st.booleans())
def test_the_fast_path_answers_as_the_full_walk(doc, ascii_only):
    raw = json.dumps(doc, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    fast = outcome(raw)
    original = jsonbody._may_be_deep_or_invalid
    jsonbody._may_be_deep_or_invalid = lambda text: True
    try:
        assert fast == outcome(raw)
    finally:
        jsonbody._may_be_deep_or_invalid = original
