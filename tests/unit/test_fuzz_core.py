import pytest
"""Fuzzing the core with arbitrary JSON: the request schema and the policy never fail in any way
other than a ValidationError (a 400), and whatever validates gets a decision."""
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from schemas.request import APPLICANT_FIELDS, DecideRequestSchema
from service.domain.userstate import UserState
from tests.conftest import NOW, payload

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12)

applicant_keys = st.sampled_from(sorted(APPLICANT_FIELDS) + ["groups", "documents", "unknown"])


@st.composite
def mutated(draw):
    """The example applicant with a few of its fields (or the top level) replaced by arbitrary JSON."""
    doc = payload(draw(st.sampled_from(["weilidai", "partner", "we2000", "zhouzhuanjin"])))
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()) and isinstance(doc["applicant"], dict):
            doc["applicant"][draw(applicant_keys)] = draw(json_values)
        else:
            doc[draw(st.sampled_from(["amount", "term_days", "product", "user_id", "applicant"]))] = draw(json_values)
    return doc


def _decide_or_reject(policy, doc):
    schema = DecideRequestSchema(term_ranges=policy.book.term_ranges())
    try:
        request = schema.load(doc)
    except ValidationError:
        return None
    return policy.decide(request, UserState(), NOW)


@pytest.mark.slow   # a property or soak run: in `make test`, not `make unit`
@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_is_rejected_cleanly(policy, value):
    assert _decide_or_reject(policy, value if isinstance(value, dict) else {"x": value}) is None


@pytest.mark.slow   # a property or soak run: in `make test`, not `make unit`
@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_applicants_are_decided_or_rejected_cleanly(policy, doc):
    decision = _decide_or_reject(policy, doc)
    if decision is not None:
        assert decision.outcome in ("approved", "cooling_off", "rejected", "review")
