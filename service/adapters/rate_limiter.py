"""Counting a caller's requests against its rates, with the `limits` library, in Redis or memory.

Why `limits` (the library flask-limiter is built on) and not flask-limiter's own hooks: the
service decides when a request is counted (after its key is accepted, so a refused key spends no
one's budget, and before the rules sync and the route, so a refused request runs nothing), and
a storage failure must end as "no limit" with a log line and a metric, never a 5xx. This module
only counts; the door (service/entrypoints/http/rate_limits.py) decides who and when.

The moving window: at most N requests in any window of the rate's length (no double burst at a
fixed window's edge). A request costs two short scripts: one takes a slot, one reads the window
for the X-RateLimit headers. The timestamps are the caller's clock: replicas whose clocks differ
count a little apart.

Storage: the Redis REDIS_URL names (a server, or a cluster as `redis+cluster://`), with the
service's socket timeouts (REDIS_TIMEOUT) and no retries, so a stalled server costs a request
one timeout at most; keys under `<REDIS_KEY_PREFIX>-ratelimit:`, never under the service's
`<REDIS_KEY_PREFIX>:`. In a Redis Cluster each counter is one key and each script touches only
that key, so no hash tag is needed: without one the counters spread over the slots (a tag would
put every key's counter on one node). Without REDIS_URL: memory, one process's, as the embedded
store is.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable, Sequence

from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

_UNIX = "unix://"


class LimiterUnavailable(Exception):
    """The limiter's storage failed (down, stalled past the timeout, refusing): not counted."""


@dataclass(frozen=True)
class Allowance:
    """What one counted request found: allowed or not, and the window of the rate reported."""

    allowed: bool
    limit: int            # requests the rate allows in its window
    remaining: int        # left in the window, after this request
    reset_at: float       # epoch seconds: when the window next has room
    rate: str             # the rate, as `limits` writes it ("20 per 1 second")


def parse_rates(text: str) -> tuple[RateLimitItem, ...]:
    """A role's rates (`100/second`, `10 per minute`, `5/2 seconds`; several joined by ';' or
    '|'), the shortest window first; ValueError when `limits` cannot read them or one allows
    nothing (a rate of 0)."""
    rates = tuple(sorted(parse_many(text), key=lambda rate: rate.get_expiry()))
    if any(rate.amount < 1 for rate in rates):
        raise ValueError("a rate of 0 would refuse every request (remove the role's keys instead)")
    return rates


class RateCounter:
    """Takes a slot of each rate for a caller; says whether all had room, and how much is left.

    The storage is made in the process that counts, at its first request: the app is built in
    gunicorn's master before the fork, and the memory storage starts a timer thread when made,
    which a forked gevent worker inherits half-dead (a KeyError traceback as it ends)."""

    def __init__(self, storage: Callable[[], Storage], now: Callable[[], float] = time.time):
        self._make_storage = storage
        self._now = now
        self._pid: int | None = None
        self._made: MovingWindowRateLimiter | None = None

    @property
    def _strategy(self) -> MovingWindowRateLimiter:
        if self._made is None or self._pid != os.getpid():
            self._made, self._pid = MovingWindowRateLimiter(self._make_storage()), os.getpid()
        return self._made

    def hit(self, rates: Sequence[RateLimitItem], *identity: str) -> Allowance:
        """Count one request of `identity` against every rate, stopping at the first that is
        full (that one is reported; otherwise the shortest window)."""
        try:
            for rate in rates:
                if not self._strategy.hit(rate, *identity):
                    return self._allowance(rate, identity, allowed=False)
            return self._allowance(rates[0], identity, allowed=True)
        except Exception as exc:   # StorageError around redis' error, or anything else
            cause = exc.__cause__ if isinstance(exc, StorageError) and exc.__cause__ else exc
            raise LimiterUnavailable(f"{type(cause).__name__}: {cause}") from exc

    def retry_after(self, allowance: Allowance) -> int:
        """Whole seconds until the window has room, at least 1 (Retry-After)."""
        return max(1, math.ceil(allowance.reset_at - self._now()))

    def _allowance(self, rate: RateLimitItem, identity: Sequence[str], allowed: bool) -> Allowance:
        reset_at, remaining = self._strategy.get_window_stats(rate, *identity)
        return Allowance(allowed, rate.amount, max(remaining, 0), reset_at, str(rate))


def rate_counter(redis_url: str | None, *, timeout: float, key_prefix: str) -> RateCounter:
    """The counter on the service's Redis (REDIS_URL), or in memory without one."""
    if not redis_url:
        return RateCounter(partial(storage_from_string, "memory://"))
    return RateCounter(partial(redis_storage, redis_url, timeout=timeout, key_prefix=key_prefix))


def redis_storage(redis_url: str, *, timeout: float, key_prefix: str) -> Storage:
    """`limits`' Redis storage for a REDIS_URL (`limits` spells a socket `redis+unix://`; a
    cluster is `redis+cluster://` in both): keys `<key_prefix>-ratelimit:...`, timeouts of
    `timeout` seconds, no retry (one failure and the request goes on unlimited)."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    uri = "redis+unix://" + redis_url[len(_UNIX):] if redis_url.startswith(_UNIX) else redis_url
    return storage_from_string(uri, key_prefix=f"{key_prefix}-ratelimit", wrap_exceptions=True,
                               socket_timeout=timeout, socket_connect_timeout=timeout,
                               retry=Retry(NoBackoff(), 0))
