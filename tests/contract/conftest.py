"""The ports' contract: one suite, the same assertions, against every adapter.

`stores` is parametrized over the in-memory adapters (in `make unit`), the Redis adapters on the
real server and on a 3-master Redis Cluster (marked `redis`, in `make test`). `harness` holds
what only differs in how a test makes time pass: the in-memory adapters keep the injected
clock's time, Redis its own (a lock's expiry is waited for, polling; a TTL is read).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import pytest

from service.adapters import redis_connection
from service.domain.clock import FixedClock
from service.entrypoints.bootstrap import memory_stores, redis_stores
from service.entrypoints.settings import Settings
from service.usecases import ports
from tests.conftest import NOW

LOCK_TTL_MS = 300
RETENTION_DAYS = 400


@dataclass
class Harness:
    kind: str
    clock: FixedClock
    stores: ports.Stores
    let_lock_expire: Callable[[], None]
    expires_within: Callable[[str, str, float], bool]   # (user, application, seconds)


def _settings(url=None) -> Settings:
    return Settings(redis_url=url, lock_ttl_ms=LOCK_TTL_MS, lock_wait_s=0.5,
                    retention_days=RETENTION_DAYS, redis_timeout=2.0)


def _memory() -> Harness:
    clock = FixedClock(NOW)
    stores = memory_stores(_settings(), clock)

    def let_lock_expire():
        clock.advance(milliseconds=LOCK_TTL_MS + 1)

    def expires_within(user_id, app_id, seconds):
        """Past the retention the record is gone; just before, it is held."""
        before = clock.now()
        clock.advance(seconds=seconds - 1)
        held = stores.users.application(user_id, app_id) is not None
        clock.advance(seconds=2)
        gone = stores.users.application(user_id, app_id) is None
        clock.set(before)
        return held and gone

    return Harness("memory", clock, stores, let_lock_expire, expires_within)


def _redis(url: str) -> Harness:
    stores = redis_stores(_settings(url))
    users = stores.users

    def let_lock_expire():
        deadline = time.monotonic() + 5
        while any(users.client.exists(k) for k in users.client.scan_iter(match=f"{users.prefix}:{{*}}:lock")):
            assert time.monotonic() < deadline, "a lock did not expire"
            time.sleep(0.02)

    def expires_within(user_id, app_id, seconds):
        ttl = users.client.ttl(users.keys(user_id, app_id)[3])
        return 0 < ttl <= seconds

    return Harness("redis", FixedClock(NOW), stores, let_lock_expire, expires_within)


@pytest.fixture(params=["memory", pytest.param("server", marks=pytest.mark.redis),
                        pytest.param("cluster", marks=pytest.mark.redis)])
def harness(request) -> Harness:
    if request.param == "memory":
        return _memory()
    if request.param == "server":
        return _redis(request.getfixturevalue("real_redis_url"))
    cluster = request.getfixturevalue("cluster")
    redis_connection.connect(cluster.url).flushall()
    return _redis(cluster.url)


@pytest.fixture
def stores(harness) -> ports.Stores:
    return harness.stores
