"""jsontext.dumps writes exactly the standard encoder's compact text (issue 15): the decision,
the application record and the log record are written with it and must not change by a byte."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.usecases import jsontext


def standard(value, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)


scalars = (st.none() | st.booleans() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
           | st.floats(allow_nan=False, allow_infinity=False)
           | st.sampled_from([1e-05, -1e-07, 1.5e16, 1e22, 5e-324, 0.0001, 0.00001, -0.0, 123.456])
           | st.text())
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=30)


@pytest.mark.slow   # a property or soak run: in `make test`, not `make unit`
@settings(max_examples=600, deadline=None)
@given(documents, st.booleans())
def test_the_text_is_the_standard_encoders(value, sort_keys):
    try:
        expected = standard(value, sort_keys)
    except (TypeError, ValueError, UnicodeEncodeError):
        with pytest.raises((TypeError, ValueError, UnicodeEncodeError)):
            jsontext.dumps(value, sort_keys).encode()
        return
    assert jsontext.dumps(value, sort_keys) == expected


def test_sorted_keys_follow_code_points_beyond_the_basic_plane():
    value = {"\uffff": 1, "\U0001f600": 2, "a": 3, "\u00e9": 4, "Z": 5}
    assert jsontext.dumps(value, sort_keys=True) == standard(value, sort_keys=True)


@pytest.mark.parametrize("value", [
    {"rate": 1e-05}, [1e-05], 1e-05, {"x": [0.00001, 2]}, {"big": 2 ** 64}, {1: "int key"},
    {"s": "\u2028\x7f\x1f\"\\"}, {"text": "dec_2e9f, [1e5"}, {"n": 1e16},
])
def test_values_the_fast_encoder_writes_differently_come_out_the_same(value):
    assert jsontext.dumps(value) == standard(value)


def test_what_the_standard_encoder_refuses_is_still_refused():
    @dataclasses.dataclass
    class Point:
        x: int

    for value in (dt.date(2026, 1, 1), Point(1), {"when": dt.datetime(2026, 1, 1)}):
        with pytest.raises(TypeError):
            jsontext.dumps(value)
