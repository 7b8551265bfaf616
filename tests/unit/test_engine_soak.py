"""durable_rules traps: 5,000 evaluations in one process, no error, flat memory.

A ruleset holds 1,024 live sessions; a leaked session per evaluation would raise MemoryError
after 1,024 evaluations, and a leaked fact would grow memory. Neither may happen.
"""
import itertools
import random

import pytest

from schemas.request import DecideRequestSchema
from service.domain.userstate import UserState
from tests.conftest import NOW, PRODUCT_BASE, payload


def rss_kib() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4


def varied_requests(book, count):
    rng = random.Random(7)
    schema = DecideRequestSchema(term_ranges=book.term_ranges())
    docs = []
    for product in PRODUCT_BASE:
        docs.append(payload(product))
        docs.append(payload(product, age=rng.choice([17, 61]), bank_card_bound=False,
                            health_score=rng.randint(0, 59), bureau_major_adverse=True))
        docs.append(payload(product, drop=("pay_score",)))
        docs.append(payload(product, groups=["student"], amount=9000))
        docs.append(payload(product, monthly_income=4000))      # T2 cooling-off
    loaded = [schema.load(d) for d in docs]
    return list(itertools.islice(itertools.cycle(loaded), count))


@pytest.mark.slow   # a property or soak run: in `make test`, not `make unit`
def test_5000_evaluations_run_without_error_and_with_flat_memory(policy, book):
    requests = varied_requests(book, 5000)
    outcomes = set()
    for request in requests[:1000]:                 # warm-up: caches, allocator pools
        outcomes.add(policy.decide(request, UserState(), NOW).outcome)
    before = rss_kib()
    for request in requests:
        outcomes.add(policy.decide(request, UserState(), NOW).outcome)
    after = rss_kib()
    assert outcomes == {"approved", "cooling_off", "rejected", "review"}
    growth = (after - before) / before
    assert growth <= 0.05, f"RSS grew {before} -> {after} KiB ({growth:.1%})"


def test_sessions_are_deleted(policy, book):
    """More evaluations than durable_rules' 1,024 live sessions on one product ruleset."""
    (request,) = varied_requests(book, 1)
    first = policy.decide(request, UserState(), NOW)
    for _ in range(1100):
        assert policy.decide(request, UserState(), NOW) == first


def test_without_deleting_sessions_the_engine_fails(book, monkeypatch):
    """The trap the `finally: delete_state` guards against is real."""
    import pytest

    from service.adapters.rule_engine import EngineError, policy_for

    leaky = policy_for(book)
    monkeypatch.setattr(leaky.engine._host, "delete_state", lambda *args: None)
    (request,) = varied_requests(book, 1)
    with pytest.raises((EngineError, MemoryError)):
        for _ in range(1100):
            leaky.decide(request, UserState(), NOW)


def test_two_rule_engines_coexist(book):
    """A reload builds a second engine on the same process-global durable_rules."""
    from service.adapters.rule_engine import policy_for

    first, second = policy_for(book), policy_for(book)
    (request,) = varied_requests(book, 1)
    assert first.decide(request, UserState(), NOW) == second.decide(request, UserState(), NOW)
