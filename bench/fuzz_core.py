"""The core fuzz tests of tests/unit/test_fuzz_core.py with more examples and a chosen seed, for
bench/fuzz.sh (CI runs them with 400 derandomized examples, fixed in their @settings, which a
hypothesis profile cannot override; this module reuses their strategies and checks unchanged).

    FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest -q -p no:cacheprovider bench/fuzz_core.py --hypothesis-seed=1

FUZZ_EXAMPLES (default 5000) examples per test, not derandomized: the seed comes from
--hypothesis-seed (bench/fuzz.sh passes one and prints it, so a failure can be re-run).
"""
import os

from hypothesis import HealthCheck, given, settings

from service.adapters import rules_files
from service.adapters.rule_engine import policy_for
from tests.conftest import RULES_DIR
from tests.unit.test_fuzz_core import _decide_or_reject, json_values, mutated

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "5000"))
POLICY = policy_for(rules_files.load(RULES_DIR))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=False, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(json_values)
def test_arbitrary_json_is_rejected_cleanly_more(value):
    assert _decide_or_reject(POLICY, value if isinstance(value, dict) else {"x": value}) is None


@FUZZ
@given(mutated())
def test_mutated_applicants_are_decided_or_rejected_cleanly_more(doc):
    decision = _decide_or_reject(POLICY, doc)
    if decision is not None:
        assert decision.outcome in ("approved", "cooling_off", "rejected", "review")
