"""The composition root: settings in, the wired use cases out.

The one place that chooses the adapters: durable_rules behind the policy, and Redis (a server
or a cluster) or the in-memory adapters (the embedded default) behind every port, then hands
each use case what it needs. The HTTP app, the CLI and the benchmarks all build through here,
so they run the same service.

Tracing is chosen here too: with OTEL_EXPORTER_OTLP_ENDPOINT set and the `otel` extra
installed, OpenTelemetry (service.adapters.otel_tracing, imported only then) gets the request's
span from the HTTP app and a span hook in the Redis stores and the rule engine; otherwise
`tracing` is None and nothing of OpenTelemetry is imported.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Optional

from service.adapters import memory, redis_connection, rules_files
from service.adapters.decision_log import RedisDecisionLog
from service.adapters.review_store import (
    RedisErasedWindows,
    RedisOverrideIndex,
    RedisReceipts,
    RedisReviewQueue,
)
from service.adapters.rules_control import RedisRuleChangeLog, RedisRuleSwitches
from service.adapters.rule_engine import EngineError, policy_for
from service.adapters.rules_archive import RulesArchive
from service.adapters.span_hook import SpanHook
from service.adapters.state_store import RedisStateStore
from service.domain.clock import Clock, SystemClock
from service.domain.policy import Policy
from service.domain.rulebook import RuleBook, RulesError
from service.entrypoints.settings import Settings
from service.usecases import ports
from service.usecases.audit import Audit
from service.usecases.decide import Decisions
from service.usecases.live_rules import LiveRules
from service.usecases.policy_tests import Kits
from service.usecases.replay import PolicySource
from service.usecases.review import Reviews
from service.usecases.review_desk import ReviewDesk
from service.usecases.reviews_index import CaseIndex
from service.usecases.rights import ApplicantRights
from service.usecases.rule_changes import RuleChanges
from service.usecases.unit_of_work import UserWork

if TYPE_CHECKING:
    from service.adapters.otel_tracing import OtelTracing

log = logging.getLogger("loan_decide.api")


def build_policy(book: RuleBook, spans: Optional[SpanHook] = None) -> Policy:
    """The policy of a rules book on durable_rules; what the engine refuses is a RulesError."""
    try:
        return policy_for(book, spans)
    except EngineError as exc:
        raise RulesError(f"{book.directory}: {exc}") from exc


KITS = Kits(build=build_policy, parse=rules_files.parse_kit, load_files=rules_files.load_files)


@dataclass(frozen=True)
class Services:
    """The use cases the doors call, over one set of stores."""

    settings: Settings
    clock: Clock
    stores: ports.Stores
    rules: LiveRules
    work: UserWork
    cases: CaseIndex
    decisions: Decisions
    reviews: Reviews
    desk: ReviewDesk
    rights: ApplicantRights
    audit: Audit
    changes: RuleChanges
    tracing: Optional["OtelTracing"] = None   # OpenTelemetry, when asked for and installed

    def ready(self) -> bool:
        """The store takes writes and this process's rules are archived."""
        return self.stores.users.ping() and self.rules.archive_own()


def tracing_from(environ: Mapping[str, str]) -> Optional["OtelTracing"]:
    """OpenTelemetry to the OTLP endpoint the environment names, or None: no endpoint, the SDK
    disabled (OTEL_SDK_DISABLED), or the `otel` extra not installed (said once, at start-up)."""
    if not environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    try:
        from service.adapters.otel_tracing import OtelTracing
    except ImportError as exc:
        log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed "
                    "(pip install 'loan-decision-engine[otel]'): no spans are exported",
                    extra={"fields": {"error": f"{type(exc).__name__}: {exc}"}})
        return None
    return OtelTracing.to_collector(environ)


def redis_stores(settings: Settings, spans: Optional[SpanHook] = None) -> ports.Stores:
    """Every port on the Redis that REDIS_URL names (each round trip a span of `spans`, if given)."""
    client = redis_connection.connect(settings.redis_url, timeout=settings.redis_timeout)
    users = RedisStateStore(client, prefix=settings.key_prefix, lock_ttl_ms=settings.lock_ttl_ms,
                            lock_wait_s=settings.lock_wait_s, retention_days=settings.retention_days,
                            spans=spans)
    return ports.Stores(users=users, queue=RedisReviewQueue(users), erased=RedisErasedWindows(users),
                        receipts=RedisReceipts(users), log=RedisDecisionLog(client, settings.key_prefix),
                        archive=RulesArchive(users), switches=RedisRuleSwitches(users),
                        changes=RedisRuleChangeLog(users), overrides=RedisOverrideIndex(users))


def memory_stores(settings: Settings, clock: Clock) -> ports.Stores:
    return memory.memory_stores(clock, load_files=rules_files.load_files,
                                lock_ttl_ms=settings.lock_ttl_ms, lock_wait_s=settings.lock_wait_s,
                                retention_days=settings.retention_days)


def simulation_stores(clock: Clock) -> ports.Stores:
    """One simulation partition's stores: in memory, on the partition's clock."""
    return memory.memory_stores(clock, load_files=rules_files.load_files)


def build_services(settings: Settings, clock: Optional[Clock] = None, *, publish: bool = True,
                   stores: Optional[ports.Stores] = None,
                   tracing: Optional["OtelTracing"] = None) -> Services:
    """The use cases the settings describe: rules, Redis (or the embedded default), clock.

    `publish`: a server starting up makes its rules the active version (an activation, in the
    history). A CLI command that only reads or repairs (log export, reviews repair, state diff)
    passes False: it must not switch every worker back from a promoted version. `tracing`:
    OpenTelemetry's hooks (tracing_from), wired into the Redis stores built here and the rules."""
    clock = clock or SystemClock()
    book = rules_files.load(settings.rules_dir)
    if stores is None:
        if redis_connection.is_embedded(settings.redis_url):
            log.warning("REDIS_URL is not set: using the embedded in-process store (in memory). "
                        "State lives in this one process and is lost when it stops; "
                        "set REDIS_URL for production or several workers.")
            stores = memory_stores(settings, clock)
        else:
            stores = redis_stores(settings, tracing)
    services = wire(settings, clock, stores, build_policy(book, tracing), tracing)
    if publish:
        _activate(services, shared=not redis_connection.is_embedded(settings.redis_url))
    return services


def wire(settings: Settings, clock: Clock, stores: ports.Stores, policy: Policy,
         tracing: Optional["OtelTracing"] = None) -> Services:
    """The use cases on `stores`; with `tracing`, the rules a reload builds are traced as
    `policy` is (the caller built it with the same hook)."""
    build = partial(build_policy, spans=tracing) if tracing is not None else build_policy
    rules = LiveRules(policy, build, stores.archive, stores.switches, stores.changes)
    work = UserWork(stores.users, clock, lambda: rules.policy)
    cases = CaseIndex(stores.queue, stores.users)
    decisions = Decisions(work, rules, cases, stores.erased, settings.erasure_secret)
    return Services(
        settings=settings, clock=clock, stores=stores, rules=rules, work=work, cases=cases,
        decisions=decisions, reviews=Reviews(work, rules, cases), desk=ReviewDesk(work, rules),
        rights=ApplicantRights(work, rules, cases, stores.receipts, settings.erasure_secret),
        audit=Audit(decisions, stores.erased, stores.receipts, cases, settings.erasure_secret,
                    stores.overrides),
        changes=RuleChanges(rules, KITS, stores.archive, stores.switches, stores.changes,
                            stores.log, settings.reload_sample),
        tracing=tracing)


def _activate(services: Services, shared: bool) -> None:
    """The rules this process starts with become the ones every worker runs (a start-up
    activation in the history of a shared store). If the store cannot say, the next
    readiness check archives them."""
    if not services.rules.archive_own():
        return
    try:
        previous, _ = services.stores.switches.read()
        services.rules.publish(services.rules.version)
        if shared:
            services.changes.record_start(previous, lambda: rules_files.kit_files(services.settings.rules_dir))
    except ports.StoreUnavailable:
        pass


def policy_source(settings: Settings, rules_dir: Optional[Path] = None,
                  version: Optional[str] = None) -> PolicySource:
    """Which rules a replay runs: a directory, an archived version, or each record's own (the
    bundled rules, or the archive of the Redis REDIS_URL names)."""
    archive = partial(_archive_of, settings) if settings.redis_url else None
    return PolicySource(build=build_policy,
                        fixed=rules_files.load(rules_dir) if rules_dir else None, version=version,
                        default=_default_rules(settings.rules_dir), archive=archive)


def _default_rules(directory: Path) -> Optional[RuleBook]:
    try:
        return rules_files.load(directory)
    except RulesError:
        return None


def _archive_of(settings: Settings) -> ports.RulesArchive:
    """The archive of the service's Redis, opened in the process that replays."""
    client = redis_connection.connect(settings.redis_url, timeout=5)
    return RulesArchive(RedisStateStore(client, prefix=settings.key_prefix))
