"""Redis pausing again and again (DEBUG SLEEP 0.5-0.9 s, past REDIS_TIMEOUT) under load, on a
Redis the test starts itself (AOF, fsync always): a 503 means nothing was written, every 200 is
written and logged once, and `state diff` is 0 afterwards (issue 9.3)."""
import io
import json
import random
import time

import pytest
import redis

from tests.e2e.load import Load, check_log_and_state
from tests.e2e.test_fault_injection import serve

pytestmark = pytest.mark.e2e


def stored(redis_url, sent) -> bool:
    """Whether the application's record or a log entry for it is in Redis."""
    from service.adapters import decision_log, redis_connection
    from service.adapters.state_store import RedisStateStore

    client = redis_connection.connect(redis_url, timeout=5)
    store = RedisStateStore(client)
    if store.application(sent.user_id, sent.application_id) is not None:
        return True
    out = io.StringIO()
    decision_log.export(client, "ld", out)
    return any(json.loads(line).get("application_id") == sent.application_id
               for line in out.getvalue().splitlines())


def test_redis_pausing_repeatedly_under_load(live_server, own_redis, policy, capsys):
    server = serve(live_server, own_redis)
    admin = redis.Redis(port=own_redis.port, socket_timeout=10)
    rng = random.Random(9)
    with Load(server.url) as load:
        started = time.monotonic()
        for _ in range(10):
            admin.execute_command("DEBUG", "SLEEP", f"{rng.uniform(0.5, 0.9):.2f}")
            time.sleep(0.1)
        elapsed = time.monotonic() - started
    ok = [s for s in load.results if s.status == 200]
    refused = [s for s in load.results if s.status == 503]
    unknown = [s for s in refused if s.body["error"]["code"] == "outcome_unknown"]
    with capsys.disabled():
        print(f"\nDEBUG SLEEP loop: {len(ok) / elapsed:.1f} decisions/s over {elapsed:.1f} s, "
              f"{len(refused)} 503 ({len(unknown)} outcome unknown) of {len(load.results)}")
    assert ok and refused
    written = [s.application_id for s in refused if s not in unknown and stored(own_redis.url, s)]
    assert written == [], f"answered 503 'nothing was written' but stored: {written}"
    load.retry_unanswered()
    figures = check_log_and_state(load, own_redis.url, policy)
    assert figures["answered"] == figures["sent"]
