"""RATE_LIMITS through a live `loan-decide serve` (gunicorn, 2 workers): a key sending far over
its rate for 10 s is held to it across both workers (within 10%) while another key at a moderate
rate is never refused and nothing refused reaches the log; and a limiter Redis stalled, then
dead, mid-run: every request still served, the failure logged and counted, no 5xx."""
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from service.domain.clock import FixedClock
from tests.conftest import NOW, payload, redis_services
from tests.e2e.conftest import http

pytestmark = pytest.mark.e2e

RATE, SECONDS = 20, 10.0
FLOOD, CALM = "client-flood", "client-calm"


def _send(url: str, key: str, prefix: str, until: float, pause: float, out: list, lock) -> None:
    n = 0
    while time.monotonic() < until:
        n += 1
        app_id = f"{prefix}-{n}"
        doc = dict(payload(), user_id=f"u-{app_id}", application_id=app_id)
        status, body, headers = http("POST", url + "/decide", doc, {"X-API-Key": key})
        with lock:
            out.append((app_id, status, headers.get("Retry-After")))
        if pause:
            time.sleep(pause)


def test_a_key_is_held_to_its_rate_across_workers_and_another_is_not_refused(
        live_server, real_redis_url, policy, capsys):
    server = live_server("--workers", "2", env={
        "REDIS_URL": real_redis_url, "API_KEYS": f"{FLOOD},{CALM}", "RATE_LIMITS": f"client={RATE}/second"})
    flood, calm, lock = [], [], threading.Lock()
    until = time.monotonic() + SECONDS
    threads = [threading.Thread(target=_send, args=(server.url, FLOOD, f"f{i}", until, 0, flood, lock))
               for i in range(4)]
    threads.append(threading.Thread(target=_send, args=(server.url, CALM, "c", until, 0.2, calm, lock)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    allowed = [a for a, status, _ in flood if status == 200]
    refused = [(a, retry) for a, status, retry in flood if status == 429]
    expected = RATE * SECONDS
    print(f"\nflood key: {len(flood)} sent in {SECONDS:.0f} s, {len(allowed)} allowed "
          f"(expected {expected:.0f}, at most {expected + RATE:.0f} with one burst window), "
          f"{len(refused)} refused; calm key: {len(calm)} sent, "
          f"{sum(1 for _, s, _ in calm if s == 200)} allowed")
    assert {status for _, status, _ in flood} <= {200, 429}
    assert len(flood) >= 2 * (expected + RATE)            # the flood really was over its rate
    assert 0.9 * expected <= len(allowed) <= expected + RATE
    assert all(retry is not None and int(retry) >= 1 for _, retry in refused)
    assert calm and all(status == 200 for _, status, _ in calm)

    services = redis_services(real_redis_url, policy, FixedClock(NOW))
    out = io.StringIO()
    services.stores.log.export(out)
    logged = {json.loads(line)["application_id"] for line in out.getvalue().splitlines()}
    assert logged == set(allowed) | {a for a, _, _ in calm}   # nothing refused was decided
    metrics = http("GET", server.url + "/metrics")[1]
    assert f'rate_limited_total{{role="client"}} {float(len(refused))}' in metrics


def test_a_limiter_redis_stalled_then_dead_mid_run_is_no_5xx(live_server, own_redis):
    """The reason codes read no Redis of their own (the rules sync's read fails quietly), so
    every request of a reviewer key is served while the limiter's Redis is stopped or dead."""
    server = live_server("--workers", "2", env={
        "REDIS_URL": own_redis.url, "REDIS_TIMEOUT": "0.3", "REVIEWER_API_KEYS": "reviewer-live",
        "RATE_LIMITS": "reviewer=5/second"})
    url, key = server.url + "/reviews/reason-codes", {"X-API-Key": "reviewer-live"}
    burst = [http("GET", url, headers=key)[0] for _ in range(12)]
    assert 429 in burst and burst.count(200) >= 5       # limited while the storage answers

    answers = []
    os.kill(own_redis.process.pid, signal.SIGSTOP)      # stalled: connections open, no answers
    for phase in ("stalled", "dead"):
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            started = time.monotonic()
            status = http("GET", url, headers=key)[0]
            answers.append((phase, status, time.monotonic() - started))
        if phase == "stalled":
            os.kill(own_redis.process.pid, signal.SIGCONT)
            own_redis.kill()
    metrics = http("GET", server.url + "/metrics")[1]
    output = server.stop()

    statuses = {status for _, status, _ in answers}
    assert statuses == {200}, answers                   # no 5xx, and unlimited while it fails
    assert len([a for a in answers if a[0] == "stalled"]) > 15     # well over the 5/second
    assert max(took for _, _, took in answers) < 1.5    # a timeout of 0.3 s, not a hang
    storage_errors = [line for line in metrics.splitlines() if line.startswith("rate_limit_storage_errors_total ")]
    assert storage_errors and float(storage_errors[0].split()[-1]) >= 2
    lines = [json.loads(line) for line in output.splitlines()
             if "rate limit storage unavailable" in line and line.startswith("{")]
    assert lines and all(line["level"] == "WARNING" and "reviewer-live" not in json.dumps(line) for line in lines)
    assert "Traceback" not in output and "reviewer-live" not in output


def test_the_embedded_default_counts_in_memory(live_server):
    server = live_server(env={"REDIS_URL": "", "API_KEYS": "client-mem", "RATE_LIMITS": "client=3/minute"})
    answers = [http("POST", server.url + "/decide", dict(payload(), application_id=f"m{n}"),
                    {"X-API-Key": "client-mem"}) for n in range(4)]
    assert [status for status, _, _ in answers] == [200, 200, 200, 429]
    status, body, headers = answers[-1]
    assert body["error"]["code"] == "rate_limited" and 1 <= int(headers["Retry-After"]) <= 60
    assert headers["X-RateLimit-Limit"] == "3" and headers["X-RateLimit-Remaining"] == "0"
    output = server.stop()
    assert "MonkeyPatchWarning" not in output   # `limits` (asyncio, ssl) loads after the gevent patch
    assert "Traceback" not in output


@pytest.mark.parametrize("value, message", [
    ("client=10/sec0nd", "Error: RATE_LIMITS entry 'client=10/sec0nd': couldn't parse"),
    ("clients=10/second", "Error: RATE_LIMITS entry 'clients=10/second': the role must be one of"),
    ("client=0/second", "Error: RATE_LIMITS entry 'client=0/second': a rate of 0")])
def test_a_malformed_value_stops_serve_with_a_message_not_a_traceback(value, message):
    done = subprocess.run([sys.executable, "-m", "service.entrypoints.cli", "serve", "--port", "1"],
                          env={**os.environ, "REDIS_URL": "", "RATE_LIMITS": value},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert message in done.stderr and "Traceback" not in done.stderr
