"""RATE_LIMITS in one process, on the limiter's in-memory storage: the setting, the 429 and its
headers, each key on its own, nothing run or written after a 429, refused keys and open paths
not counted, and a limiter storage that fails letting requests through (API.md "Operations")."""
import io
import logging
import os
import subprocess
import sys
import time

import pytest

from service.domain.clock import FixedClock
from service.entrypoints.http import rate_limits
from service.entrypoints.http.app import create_app
from service.entrypoints.settings import Settings, read_rate_limits
from tests.conftest import NOW, ROOT, memory_services, payload
from tests.servers import free_port

CLIENT, OTHER, REVIEWER, ADMIN = "client-key-1", "client-key-2", "reviewer-key-1", "admin-key-1"


def limited_app(policy, rates: str, **settings):
    """The app with RATE_LIMITS=`rates` on fresh in-memory stores; (test client, services)."""
    keys = dict(api_keys=(CLIENT, OTHER), reviewer_keys=(REVIEWER,), admin_keys=(ADMIN,))
    config = Settings(**{**keys, **settings, "rate_limits": read_rate_limits(rates)})
    services = memory_services(policy, FixedClock(NOW), **{**keys, **settings})
    return create_app(config, services=services).test_client(), services


def decide(client, key: str, n: int, user: str = "u-rl"):
    doc = dict(payload(), user_id=user, application_id=f"{user}-{key}-{n}")
    return client.post("/decide", json=doc, headers={"X-API-Key": key})


def metric(client, line_start: str) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    found = [line for line in text.splitlines() if line.startswith(line_start + " ")]
    return float(found[0].split()[-1]) if found else 0.0


# -- the setting ------------------------------------------------------------------------------------
def test_the_setting_names_roles_and_rates():
    assert read_rate_limits(None) == read_rate_limits("") == read_rate_limits(" , ") == ()
    assert read_rate_limits("client=100/second, reviewer = 10/second,admin=5 per minute") == (
        ("client", "100/second"), ("reviewer", "10/second"), ("admin", "5 per minute"))
    assert read_rate_limits("client=100/second;2000/hour") == (("client", "100/second;2000/hour"),)
    assert Settings.from_env({"RATE_LIMITS": "admin=5/second"}).rate_limits == (("admin", "5/second"),)


@pytest.mark.parametrize("value, names", [
    ("client", "'client'"), ("client=", "'client='"), ("=10/second", "'=10/second'"),
    ("clients=10/second", "'clients=10/second'"),
    ("client=1/second,client=2/second", "'client' twice")])
def test_a_malformed_entry_stops_the_start_up_naming_it(value, names):
    with pytest.raises(ValueError, match="RATE_LIMITS") as raised:
        Settings.from_env({"RATE_LIMITS": value})
    assert names in str(raised.value)


@pytest.mark.parametrize("rate", ["10/sec0nd", "ten/second", "10/fortnight", "0/second", "10"])
def test_a_rate_the_library_cannot_read_stops_the_app_naming_it(policy, rate):
    with pytest.raises(ValueError, match="RATE_LIMITS") as raised:
        limited_app(policy, f"reviewer=5/second,client={rate}")
    assert f"'client={rate}'" in str(raised.value)


def test_unset_there_is_no_limiter_and_no_header(policy):
    client, _ = limited_app(policy, "")
    assert client.application.extensions["rate_limits"] is None
    assert rate_limits.add_headers not in client.application.after_request_funcs[None]
    for n in range(30):
        response = decide(client, CLIENT, n)
        assert response.status_code == 200
        assert not [h for h in response.headers.keys() if h.startswith(("X-RateLimit", "Retry-After"))]


def test_unset_the_limiter_library_is_not_even_imported():
    """`limits` pulls in asyncio and ssl: an app without RATE_LIMITS never loads it."""
    code = ("import sys; from service.entrypoints.http.app import create_app; "
            "from service.entrypoints.settings import Settings; create_app(Settings()); "
            "print(sorted(m for m in sys.modules if m == 'limits' or m.startswith('limits.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env={**os.environ, "RATE_LIMITS": ""})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- what a client sees -----------------------------------------------------------------------------
def test_over_the_limit_a_429_with_retry_after_and_the_limit_headers(policy):
    client, _ = limited_app(policy, "client=3/minute")
    remaining = []
    for n in range(3):
        response = decide(client, CLIENT, n)
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit"] == "3" and "Retry-After" not in response.headers
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
    assert remaining == [2, 1, 0]
    started = time.time()
    refused = decide(client, CLIENT, 3)
    assert refused.status_code == 429
    error = refused.get_json()["error"]
    assert error["code"] == "rate_limited" and "3 per 1 minute" in error["message"]
    assert CLIENT not in refused.get_data(as_text=True)
    assert 55 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Limit"] == "3" and refused.headers["X-RateLimit-Remaining"] == "0"
    assert started + 50 <= int(refused.headers["X-RateLimit-Reset"]) <= started + 62
    assert refused.headers["X-Request-ID"]    # the service's own headers as on any answer


def test_each_key_is_counted_on_its_own(policy):
    client, _ = limited_app(policy, "client=2/minute")
    assert [decide(client, CLIENT, n).status_code for n in range(3)] == [200, 200, 429]
    assert [decide(client, OTHER, n).status_code for n in range(3)] == [200, 200, 429]


def test_the_window_moves_on(policy):
    client, _ = limited_app(policy, "client=2/second")
    assert [decide(client, CLIENT, n).status_code for n in range(3)] == [200, 200, 429]
    time.sleep(1.1)
    assert [decide(client, CLIENT, n).status_code for n in range(3, 6)] == [200, 200, 429]


def test_several_rates_of_a_role_the_fullest_refuses(policy):
    client, _ = limited_app(policy, "client=100/second;3/hour")
    codes = [decide(client, CLIENT, n) for n in range(4)]
    assert [r.status_code for r in codes] == [200, 200, 200, 429]
    assert codes[0].headers["X-RateLimit-Limit"] == "100"      # the shortest window, while it has room
    assert codes[3].headers["X-RateLimit-Limit"] == "3" and "3 per 1 hour" in codes[3].get_json()["error"]["message"]


def test_nothing_runs_and_nothing_is_written_after_a_429(policy, caplog):
    client, services = limited_app(policy, "client=1/minute")
    assert decide(client, CLIENT, 0, user="u-one").status_code == 200
    synced = []
    services.rules.sync = lambda *a, **k: synced.append(1)
    logged, applications = services.stores.log.export(io.StringIO()), list(services.stores.users.all_applications())
    with caplog.at_level(logging.INFO, logger="loan_decide"):
        refused = decide(client, CLIENT, 1, user="u-two")
    assert refused.status_code == 429
    assert services.stores.log.export(io.StringIO()) == logged == 1
    assert list(services.stores.users.all_applications()) == applications
    assert synced == []                      # not even the rules sync ran
    assert [r.getMessage() for r in caplog.records] == ["request"]   # the request's own line, 429
    assert caplog.records[0].fields["status"] == 429
    reviewer = {"X-API-Key": REVIEWER}   # a role without a limit here
    assert client.get("/users/u-two/state", headers=reviewer).status_code == 404
    assert client.get(f"/applications/u-two-{CLIENT}-1?user_id=u-two", headers=reviewer).status_code == 404


def test_refused_keys_spend_no_budget(policy):
    client, _ = limited_app(policy, "client=2/minute,reviewer=2/minute,admin=2/minute")
    for _ in range(5):
        assert decide(client, "not-a-key", 0).status_code == 401
        assert client.post("/decide", json=payload(), headers={"X-API-Key": REVIEWER}).status_code == 403
        assert client.get("/reviews", headers={"X-API-Key": CLIENT}).status_code == 403
        assert client.get("/admin/rules/history", headers={"X-Admin-Key": "wrong"}).status_code == 401
        assert client.get("/admin/rules/history", headers={"X-API-Key": ADMIN}).status_code == 403
    assert [decide(client, CLIENT, n).status_code for n in range(3)] == [200, 200, 429]
    reviewer = [client.get("/reviews", headers={"X-API-Key": REVIEWER}) for _ in range(3)]
    assert [r.status_code for r in reviewer] == [200, 200, 429]
    assert reviewer[0].headers["X-RateLimit-Remaining"] == "1"
    admin = [client.get("/admin/rules/history", headers={"X-Admin-Key": ADMIN}) for _ in range(3)]
    assert [r.status_code for r in admin] == [200, 200, 429]
    audited = client.get("/users/u-x/export?operator_id=op&reason=r", headers={"X-Admin-Key": ADMIN})
    assert audited.status_code == 429      # the audited admin routes count against the same key


def test_open_paths_and_the_console_are_not_limited(policy):
    client, _ = limited_app(policy, "client=1/minute,reviewer=1/minute,admin=1/minute")
    decide(client, CLIENT, 0)
    assert decide(client, CLIENT, 1).status_code == 429
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/console/", "/console/console.js"):
        for _ in range(3):
            response = client.get(path, headers={"X-API-Key": CLIENT})
            assert response.status_code == 200, path
            assert "X-RateLimit-Limit" not in response.headers
    assert client.get("/nowhere", headers={"X-API-Key": CLIENT}).status_code == 404


def test_a_role_left_out_has_no_limit(policy):
    client, _ = limited_app(policy, "client=1/minute")
    for _ in range(20):
        response = client.get("/reviews", headers={"X-API-Key": REVIEWER})
        assert response.status_code == 200 and "X-RateLimit-Limit" not in response.headers


def test_without_client_keys_every_keyless_caller_is_one_client(policy):
    client, _ = limited_app(policy, "client=2/minute", api_keys=())
    assert decide(client, "", 0).status_code == 200
    assert decide(client, "any-made-up-key", 1).status_code == 200
    assert decide(client, "another-one", 2).status_code == 429


def test_refusals_are_counted_by_role(policy):
    client, _ = limited_app(policy, "client=1/minute,admin=1/minute")
    assert 'rate_limited_total{role="admin"}' in client.get("/metrics").get_data(as_text=True)   # from the start
    before = metric(client, 'rate_limited_total{role="client"}')
    decide(client, CLIENT, 0)
    assert [decide(client, CLIENT, n).status_code for n in (1, 2)] == [429, 429]
    assert metric(client, 'rate_limited_total{role="client"}') == before + 2


def test_the_limiter_stores_a_fingerprint_never_the_key(policy):
    client, _ = limited_app(policy, "client=5/minute")
    decide(client, CLIENT, 0)
    storage = client.application.extensions["rate_limits"]._counter._strategy.storage
    keys = list(storage.events)
    assert keys and all(CLIENT not in k and rate_limits.fingerprint(CLIENT) in k for k in keys)
    assert rate_limits.fingerprint(CLIENT) != rate_limits.fingerprint(OTHER)


# -- a limiter storage that fails -------------------------------------------------------------------
def test_a_storage_that_fails_lets_the_request_through_once_logged_and_counted(policy, caplog):
    """The limiter's Redis on a closed port: the request is served (the use cases are in memory),
    one log line without the key, the counter, and the limiter rests STORAGE_PAUSE_S."""
    client, _ = limited_app(policy, "client=1/minute", redis_url=f"redis://127.0.0.1:{free_port()}/0",
                            redis_timeout=0.3)
    before = metric(client, "rate_limit_storage_errors_total")
    with caplog.at_level(logging.INFO, logger="loan_decide"):
        started = time.monotonic()
        answers = [decide(client, CLIENT, n) for n in range(3)]
        elapsed = time.monotonic() - started
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert not [h for a in answers for h in a.headers.keys() if h.startswith("X-RateLimit")]
    assert elapsed < 1.0
    lines = [r for r in caplog.records if r.getMessage().startswith("rate limit storage unavailable")]
    assert len(lines) == 1 and lines[0].levelname == "WARNING"   # then it rests: one line, not three
    assert "ConnectionError" in lines[0].fields["error"] and CLIENT not in str(lines[0].fields)
    assert metric(client, "rate_limit_storage_errors_total") == before + 1


def test_after_the_pause_the_storage_is_tried_again(policy, monkeypatch):
    client, _ = limited_app(policy, "client=1/minute", redis_url=f"redis://127.0.0.1:{free_port()}/0",
                            redis_timeout=0.3)
    limiter = client.application.extensions["rate_limits"]
    before = metric(client, "rate_limit_storage_errors_total")
    decide(client, CLIENT, 0)
    limiter._paused_until = 0.0              # as if STORAGE_PAUSE_S had gone by
    decide(client, CLIENT, 1)
    assert metric(client, "rate_limit_storage_errors_total") == before + 2


def test_any_error_of_the_limiter_is_no_5xx(policy, caplog):
    client, _ = limited_app(policy, "client=1/minute")

    class Broken:
        def hit(self, *args):
            raise RuntimeError("a bug in the counter")

    client.application.extensions["rate_limits"]._counter = Broken()
    with caplog.at_level(logging.WARNING, logger="loan_decide"):
        assert decide(client, CLIENT, 0).status_code == 200
    assert any("a bug in the counter" in r.fields.get("error", "") for r in caplog.records)


# -- the contract's document ------------------------------------------------------------------------
def test_openapi_lists_429_on_every_route_with_a_key(policy):
    client, _ = limited_app(policy, "")
    doc = client.get("/openapi.json").get_json()
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            limited = "429" in operation["responses"]
            assert limited == (path not in ("/healthz", "/readyz", "/metrics")), (method, path)
            if limited:
                answer = operation["responses"]["429"]
                assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
                assert set(answer["headers"]) == {
                    "Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"}
