"""The Redis decision log's export: a window of the log, sorted in bounded memory (sorted runs
spilled to files, then merged), agrees with the export sorted at once.

(Moved from tests/unit/test_decision_log.py: the spilled sort is the Redis adapter's, so it runs
on the real Redis; the unit test keeps the window on the in-memory log.)
"""
import io
import json

import pytest

from service.adapters import decision_log
from service.domain.clock import FixedClock
from tests.conftest import NOW, redis_services
from tests.loggen import generate

pytestmark = pytest.mark.integration


def test_export_window_and_spilled_sort_agree(policy, real_redis_url):
    service = redis_services(real_redis_url, policy, FixedClock(NOW))
    written = generate(service, 1500, users=200)
    whole = io.StringIO()
    assert service.stores.log.export(whole) == written
    records = [json.loads(line) for line in whole.getvalue().splitlines()]
    since, until = records[150]["at"], records[1200]["at"]
    small_runs = io.StringIO()
    users = service.stores.users
    count = decision_log.export(users.client, users.prefix, small_runs, since, until, run_size=250)
    expected = [r for r in records if since <= r["at"] < until]
    got = [json.loads(line) for line in small_runs.getvalue().splitlines()]
    assert count == len(expected) > 1000 and [r["at"] for r in got] == [r["at"] for r in expected]
