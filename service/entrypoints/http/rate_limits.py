"""RATE_LIMITS at the door (API.md "Operations"): each accepted key counted on its own against
its role's rates, across every worker and replica (the service's Redis), before anything runs.

Where it sits: app.py's `_begin` checks the key first (a wrong key is a 401/403 and spends no
one's budget), then asks `refusal()`, then syncs the rules; a 429 returns from there, so no use
case runs and nothing is written. The open operational paths and the console's files never get
here. Unset, there is no limiter at all: `_begin` sees None and no header hook is registered.

Who is counted: a fingerprint of the key (a SHA-256 prefix), never the key, and its role; the
Redis keys read `<prefix>-ratelimit:LIMITER/<role>/<fingerprint>/<amount>/<multiples>/<unit>`.

A limiter storage failure (Redis down or stalled past REDIS_TIMEOUT) is not the client's
problem: the request goes on unlimited, one JSON log line and `rate_limit_storage_errors_total`
say so, and this process skips the limiter for STORAGE_PAUSE_S so that a stalled Redis costs one
timeout a second, not one per request.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
from typing import TYPE_CHECKING, Callable, Mapping, Optional

from flask import Response, g

from service.entrypoints.http import errors, metrics, roles
from service.entrypoints.settings import Settings

if TYPE_CHECKING:   # `limits` is imported only when RATE_LIMITS is set (see `build`)
    from limits import RateLimitItem

    from service.adapters.rate_limiter import Allowance, RateCounter

log = logging.getLogger("loan_decide.api")
STORAGE_PAUSE_S = 1.0
LIMIT, REMAINING, RESET = "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"


def fingerprint(key: str) -> str:
    """Who a key is to the limiter: 64 bits of its SHA-256, enough to tell keys apart, and
    never the key (an admin key's log fingerprint is another hash: the two do not match)."""
    return hashlib.sha256(b"rate-limit\0" + key.encode()).hexdigest()[:16]


class RateLimits:
    """The rates of each role and the counter they are counted on."""

    def __init__(self, rates: Mapping[str, tuple["RateLimitItem", ...]], counter: "RateCounter",
                 monotonic: Callable[[], float] = time.monotonic):
        self._rates = dict(rates)
        self._counter = counter
        self._monotonic = monotonic
        self._paused_until = 0.0

    def refusal(self) -> Optional[Response]:
        """The 429 for this request, or None: counted (or not limited, or the storage failed)."""
        found = roles.caller()
        if found is None or self._monotonic() < self._paused_until:
            return None
        role, key = found
        rates = self._rates.get(role)
        if not rates:
            return None
        try:
            allowance = self._counter.hit(rates, role, fingerprint(key))
        except Exception as exc:   # LimiterUnavailable, or anything else: never the client's 5xx
            self._storage_failed(exc)
            return None
        if allowance.allowed:
            g.rate_limit_headers = _headers(allowance)
            return None
        metrics.child(metrics.RATE_LIMITED, role).inc()
        return self._too_many(role, allowance)

    def _too_many(self, role: str, allowance: "Allowance") -> Response:
        retry = self._counter.retry_after(allowance)
        return errors.error_response(
            429, "rate_limited", f"Too many requests for this key: the {role} role's limit is "
            f"{allowance.rate}. Nothing was done; retry after {retry} s.",
            headers={**_headers(allowance), "Retry-After": str(retry)})

    def _storage_failed(self, exc: Exception) -> None:
        self._paused_until = self._monotonic() + STORAGE_PAUSE_S
        metrics.RATE_LIMIT_STORAGE_ERRORS.inc()
        log.warning("rate limit storage unavailable: requests are not limited", extra={"fields": {
            "error": str(exc)[:300], "unlimited_for_s": STORAGE_PAUSE_S}})


def add_headers(response: Response) -> Response:
    """The X-RateLimit headers of a counted request that was let through (after_request)."""
    headers = g.get("rate_limit_headers")
    if headers:
        response.headers.update(headers)
    return response


def _headers(allowance: "Allowance") -> dict[str, str]:
    return {LIMIT: str(allowance.limit), REMAINING: str(allowance.remaining),
            RESET: str(math.ceil(allowance.reset_at))}


def build(settings: Settings) -> Optional[RateLimits]:
    """The limiter RATE_LIMITS asks for, on the service's Redis or in memory; None when unset.
    A rate `limits` cannot read stops the start-up (ValueError naming RATE_LIMITS and the entry)."""
    if not settings.rate_limits:
        return None
    # imported here: `limits` pulls in asyncio and ssl, which an unset RATE_LIMITS never needs
    from service.adapters.rate_limiter import parse_rates, rate_counter

    rates = {}
    for role, text in settings.rate_limits:
        try:
            rates[role] = parse_rates(text)
        except ValueError as exc:
            raise ValueError(f"RATE_LIMITS entry '{role}={text}': {exc} "
                             "(a rate is e.g. 100/second, 10 per minute, 5/2 seconds)") from None
    for role in rates:   # the refusal counts of every limited role exist from the start, at 0
        metrics.child(metrics.RATE_LIMITED, role)
    counter = rate_counter(settings.redis_url, timeout=settings.redis_timeout,
                           key_prefix=settings.key_prefix)
    return RateLimits(rates, counter)
