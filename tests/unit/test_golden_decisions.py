"""Every byte the service answers and logs for the golden stream (tests/golden/decisions.py) is
the recorded one: the response body with its trace, and each decision-log record."""
import gzip
import json

import pytest

from tests.golden.decisions import GOLDEN, normalised, stream



def test_the_golden_stream_is_answered_and_logged_byte_for_byte():
    with gzip.open(GOLDEN, "rt", encoding="utf-8") as recorded:
        expected = [line.rstrip("\n") for line in recorded]
    got = list(normalised(stream()))
    assert len(got) == len(expected)
    for n, (line, want) in enumerate(zip(got, expected)):
        if line != want:
            a, b = json.loads(line), json.loads(want)
            assert a == b, f"request {n} of the golden stream differs"
            pytest.fail(f"request {n}: the same content, other bytes")
    outcomes = {json.loads(json.loads(line)["response"])["outcome"] for line in got}
    assert outcomes == {"approved", "rejected", "review", "cooling_off"}
