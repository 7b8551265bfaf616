"""The composition root: settings in, a wired decision service out.

The one place that chooses the adapters (durable_rules, real Redis or the embedded fakeredis)
and hands them to the use cases; the HTTP app, the CLI and the benchmarks all build through it,
so they run the same service.
"""
from __future__ import annotations

import logging

from service.adapters import redis_connection, rules_files
from service.adapters.rule_engine import policy_for
from service.adapters.state_store import RedisStateStore, StoreUnavailable
from service.domain.clock import Clock
from service.entrypoints.settings import Settings
from service.usecases import rule_changes
from service.usecases.decide import DecisionService

log = logging.getLogger("loan_decide.api")


def build_service(settings: Settings, clock: Clock | None = None, *,
                  publish: bool = True) -> DecisionService:
    """The decision service the settings describe: rules, Redis (or the embedded default), clock.

    `publish`: a server starting up makes its rules the active version (an activation, in the
    history). A CLI command that only reads or repairs (log export, reviews repair, state diff)
    passes False: it must not switch every worker back from a promoted version."""
    policy = policy_for(rules_files.load(settings.rules_dir))
    if redis_connection.is_embedded(settings.redis_url):
        log.warning("REDIS_URL is not set: using the embedded in-process store (fakeredis). "
                    "State lives in this one process and is lost when it stops; "
                    "set REDIS_URL for production or several workers.")
    client = redis_connection.connect(settings.redis_url, timeout=settings.redis_timeout)
    store = RedisStateStore(client, prefix=settings.key_prefix, lock_ttl_ms=settings.lock_ttl_ms,
                            lock_wait_s=settings.lock_wait_s, retention_days=settings.retention_days)
    service = DecisionService(policy, store, clock=clock)
    service.erasure_secret = settings.erasure_secret
    if service.archive_rules() and publish:
        try:   # the rules this process starts with are the ones every worker runs
            previous = store._do(lambda: store.client.get(f"{store.prefix}:rules:active"))
            service.publish_active(policy.version)
            if not redis_connection.is_embedded(settings.redis_url):   # history of a shared store
                rule_changes.record_start(service, previous.decode() if previous else None,
                                          settings.rules_dir)
        except StoreUnavailable:
            pass
    return service
