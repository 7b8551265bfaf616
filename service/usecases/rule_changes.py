"""Safe rule changes: archive a candidate with its kit, shadow it, run it as a challenger,
promote it, and keep the history of every activation.

Settings shared by every worker live in one Redis hash (`<prefix>:rulechange:control`: shadow
version, challenger version and share). Each worker reads it in the same pipeline as the
active-version check it already does at most once a second (DecisionService.sync_rules), so
a challenger or shadow adds no Redis round trip to a request. Every evaluation of a shadow or
challenger goes through the same engine wrapper (rule_engine.policy_for, one process lock).

Shadow: after the live response is sent, the shadow version decides the same request with
the same state and time; the comparison is the replay's (replay.results_of), and the counts
are added up in process and written with one pipeline of HINCRBYs per flush, so a report
counts exactly what every worker evaluated once their flushes are done.
What goes live (reload, challenger, promote) must pass its own policy test kit (KitFailed).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Optional

from service.adapters import rules_files
from service.adapters.rule_engine import policy_for
from service.adapters.rules_archive import RulesArchive
from service.domain import rulebook
from service.domain.decision import iso_utc
from service.domain.policy import Policy
from service.usecases import policy_tests, replay
from service.usecases.decide import DecisionService

log = logging.getLogger("loan_decide.rule_changes")
HISTORY_KEEP = 1000


class KitFailed(rulebook.RulesError):
    """The rules fail their own policy test kit: they do not go live."""

    def __init__(self, version: str, result: policy_tests.KitResult):
        super().__init__(f"rules {version} fail their own policy test kit "
                         f"({len(result.failures)} of {result.cases} cases): "
                         + " | ".join(f.replace("\n", ";") for f in result.failures[:5]))
        self.result = result


class UnknownVersion(LookupError):
    """The named rules version is not archived (archive it with `loan-decide rules archive`)."""


def _keys(prefix: str) -> dict[str, str]:
    return {"control": f"{prefix}:rulechange:control", "history": f"{prefix}:rulechange:history",
            "shadow": f"{prefix}:rulechange:shadow:"}


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def bucket(user_id: str) -> float:
    """A stable number in [0, 1) per user: the same user always lands in the same arm."""
    return int.from_bytes(hashlib.sha256(user_id.encode()).digest()[:8], "big") / 2 ** 64


# -- what every worker holds ----------------------------------------------------------------------
class Arms:
    """This worker's challenger and shadow, following the control hash."""

    def __init__(self, prefix: str):
        self.keys = _keys(prefix)
        self.prefix = prefix
        self.control: dict[str, str] = {}
        self.challenger: Optional[Policy] = None
        self.share = 0.0
        self.shadow: Optional[Policy] = None
        self.pending: dict[str, Counter] = {}
        self._flush_lock = threading.Lock()

    def read(self, pipe) -> None:
        pipe.hgetall(self.keys["control"])

    def apply(self, results: list, service: DecisionService) -> None:
        control = {_text(k): _text(v) for k, v in (results[0] or {}).items()}
        if control != self.control:
            try:
                self.configure(control, service)
            except (UnknownVersion, rulebook.RulesError) as exc:   # keep what runs; say why
                log.error("rule change settings not applied", extra={"fields": {"error": str(exc)}})

    def configure(self, control: Mapping[str, str], service: DecisionService) -> None:
        """Build the policies the control names (from the archive, once per change)."""
        archive = RulesArchive(service.store.client, service.store.prefix)
        self.challenger = _policy(archive, control.get("challenger"), self.challenger)
        self.share = float(control.get("share") or 0.0)
        self.shadow = _policy(archive, control.get("shadow"), self.shadow)
        self.control = dict(control)

    def policy_for(self, champion: Policy, user_id: str) -> tuple[Policy, Optional[str]]:
        """The policy that decides this user, and its arm (None while no challenger runs)."""
        if self.challenger is None:
            return champion, None
        if bucket(user_id) < self.share:
            return self.challenger, "challenger"
        return champion, "champion"

    # -- shadow ---------------------------------------------------------------------------------
    def observe(self, service: DecisionService, live: Mapping[str, Any], shadow_input: tuple) -> None:
        """After the response: decide again under the shadow, count, flush (never raises)."""
        shadow = self.shadow
        if shadow is None:
            return
        try:
            request, state, now = shadow_input
            new = shadow.evaluate(request, state, now).decision.to_dict()
            counts = self.pending.setdefault(shadow.version, Counter())
            counts.update(compare(live, new))
            self.flush(service)
        except Exception as exc:   # the answer is sent; a shadow failure must not touch anything else
            # the type only: a message or traceback could carry the applicant's values
            log.error("shadow evaluation failed", extra={"fields": {"error": type(exc).__name__}})

    def flush(self, service: DecisionService) -> None:
        """Write every pending count in one pipeline; on failure they stay pending."""
        if not self.pending or not self._flush_lock.acquire(blocking=False):
            return
        try:
            batch, self.pending = self.pending, {}
            pipe = service.store.client.pipeline(transaction=True)
            for version, counts in batch.items():
                for field, n in counts.items():
                    pipe.hincrby(self.keys["shadow"] + version, field, n)
            try:
                pipe.execute()
            except Exception:
                for version, counts in batch.items():
                    self.pending.setdefault(version, Counter()).update(counts)
                raise
        finally:
            self._flush_lock.release()


def _policy(archive: RulesArchive, version: Optional[str], current: Optional[Policy]) -> Optional[Policy]:
    if not version:
        return None
    if current is not None and current.version == version:
        return current
    book = archive.load(version)
    if book is None:
        raise UnknownVersion(version)
    return policy_for(book)


def compare(old: Mapping[str, Any], new: Mapping[str, Any]) -> Counter:
    """The counts one decision adds to a shadow report, judged as replay judges a record."""
    before, after = replay.results_of(old), replay.results_of(new)
    counts: Counter = Counter(evaluated=1)
    if before == after:
        counts["identical"] += 1
        return counts
    counts["changed"] += 1
    if old["outcome"] != new["outcome"]:
        counts[f"t:{old['outcome']}->{new['outcome']}"] += 1
    for key in set(before["rules"]) | set(after["rules"]):
        if before["rules"].get(key) != after["rules"].get(key):
            counts[f"r:{key}"] += 1
    return counts


def arms_of(service: DecisionService) -> Arms:
    if service.arms is None:
        service.arms = Arms(service.store.prefix)
    return service.arms


# -- admin operations -----------------------------------------------------------------------------
def _archive(service: DecisionService) -> RulesArchive:
    return RulesArchive(service.store.client, service.store.prefix)


def archive(client, prefix: str, directory: Path | str) -> dict:
    """Validate a directory, run its kit (reported, not refused), store rules and kit.

    Takes a bare client: it must not start a service, which would publish its own rules as
    the active version."""
    book, result = policy_tests.run_directory(directory)
    store = RulesArchive(client, prefix)
    store.save(book)
    store.save_kit(book.version, rules_files.kit_files(directory))
    return {"rules_version": book.version, "kit": result.to_dict()}


def record_start(service: DecisionService, previous: Optional[str], rules_dir: Path) -> None:
    """History: a process started on a version other than the active one (start-up activation)."""
    if previous == service.rules_version:
        return
    try:
        files = rules_files.kit_files(rules_dir)
        kit = policy_tests.run_files(service.policy.book, files, service.policy).to_dict()
        _archive(service).save_kit(service.rules_version, files)
    except rulebook.RulesError as exc:   # a start is not refused; the history says why
        kit = {"ok": False, "error": str(exc)}
    record(service, "start-up", "service", rules_version=service.rules_version,
           previous_version=previous, kit=kit)


def load_version(service: DecisionService, version: str) -> tuple[rulebook.RuleBook, dict]:
    store = _archive(service)
    book = service.store._do(lambda: store.load(version))
    if book is None:
        raise UnknownVersion(version)
    return book, service.store._do(lambda: store.load_kit(version))


def gate(book: rulebook.RuleBook, kit: Mapping[str, bytes], policy: Optional[Policy] = None) -> dict:
    """The kit result of rules about to go live; KitFailed when a case fails."""
    result = policy_tests.run_files(book, kit, policy)
    if not result.ok:
        raise KitFailed(book.version, result)
    return result.to_dict()


def record(service: DecisionService, event: str, admin: str, **fields: Any) -> dict:
    entry = {"at": iso_utc(dt.datetime.now(dt.timezone.utc)), "event": event, "admin": admin,
             **fields}
    key = _keys(service.store.prefix)["history"]
    text = json.dumps(entry, ensure_ascii=False, default=str)

    def write():
        pipe = service.store.client.pipeline(transaction=True)
        pipe.rpush(key, text)
        pipe.ltrim(key, -HISTORY_KEEP, -1)
        pipe.execute()
    service.store._do(write)
    return entry


def history(service: DecisionService) -> list[dict]:
    key = _keys(service.store.prefix)["history"]
    return [json.loads(_text(t)) for t in service.store._do(lambda: service.store.client.lrange(key, 0, -1))]


def _set_control(service: DecisionService, **changes: Optional[str]) -> None:
    key = _keys(service.store.prefix)["control"]

    def write():
        pipe = service.store.client.pipeline(transaction=True)
        for field, value in changes.items():
            if value is None:
                pipe.hdel(key, field)
            else:
                pipe.hset(key, field, value)
        pipe.hgetall(key)
        return pipe.execute()[-1]
    control = service.store._do(write)
    arms_of(service).configure({_text(k): _text(v) for k, v in control.items()}, service)


def _sample(service: DecisionService, policy: Policy) -> dict:
    from service.usecases.reload import _Fixed, recent_decisions

    lines = ((n, text) for n, text in enumerate(recent_decisions(service, 200), 1))
    summary = replay.replay(lines, _Fixed(policy), skip_bad=True)
    return {"total": summary.total, "changed": summary.changed,
            "transitions": dict(summary.transitions), "rules": dict(summary.rules)}


def start_shadow(service: DecisionService, version: str, admin: str) -> dict:
    """Not gated (it changes no answer); the kit result is recorded all the same."""
    book, kit = load_version(service, version)
    policy = policy_for(book)
    kit_result = policy_tests.run_files(book, kit, policy).to_dict()
    prefix = _keys(service.store.prefix)["shadow"]
    service.store._do(lambda: service.store.client.delete(prefix + version))
    _set_control(service, shadow=version)
    return record(service, "shadow", admin, rules_version=version,
                  previous_version=service.rules_version, kit=kit_result, sample=_sample(service, policy))


def stop_shadow(service: DecisionService, admin: str) -> dict:
    version = arms_of(service).control.get("shadow")
    _set_control(service, shadow=None)
    return record(service, "shadow_stopped", admin, rules_version=version,
                  previous_version=service.rules_version)


def shadow_report(service: DecisionService) -> Optional[dict]:
    arms = arms_of(service)
    arms.flush(service)
    control = service.store._do(lambda: service.store.client.hgetall(arms.keys["control"]))
    version = _text(control.get(b"shadow") or control.get("shadow"))
    if not version:
        return None
    raw = service.store._do(lambda: service.store.client.hgetall(arms.keys["shadow"] + version))
    counts = {_text(k): int(v) for k, v in raw.items()}
    return {"rules_version": version, "evaluated": counts.get("evaluated", 0),
            "identical": counts.get("identical", 0), "changed": counts.get("changed", 0),
            "transitions": dict(sorted((k[2:], v) for k, v in counts.items() if k.startswith("t:"))),
            "rules": dict(sorted((k[2:], v) for k, v in counts.items() if k.startswith("r:")))}


def start_challenger(service: DecisionService, version: str, share: float, admin: str) -> dict:
    book, kit = load_version(service, version)
    policy = policy_for(book)
    kit_result = gate(book, kit, policy)
    _set_control(service, challenger=version, share=repr(share))
    return record(service, "challenger", admin, rules_version=version, share=share,
                  previous_version=service.rules_version, kit=kit_result,
                  sample=_sample(service, policy))


def stop_challenger(service: DecisionService, admin: str) -> dict:
    version = arms_of(service).control.get("challenger")
    _set_control(service, challenger=None, share=None)
    return record(service, "challenger_stopped", admin, rules_version=version,
                  previous_version=service.rules_version)


def promote(service: DecisionService, admin: str) -> dict:
    """The challenger becomes the live version for everyone (gated again by its kit)."""
    arms = arms_of(service)
    # the control hash, not this worker's copy: a worker that served no decision since the
    # challenger started has not synced it yet
    control = service.store._do(lambda: service.store.client.hgetall(arms.keys["control"]))
    version = _text(control.get(b"challenger") or control.get("challenger"))
    if not version:
        raise UnknownVersion("no challenger is running")
    book, kit = load_version(service, version)
    policy = policy_for(book)
    kit_result = gate(book, kit, policy)
    previous = service.rules_version
    sample = _sample(service, policy)
    service.publish_active(version)
    service.use_policy(policy)
    _set_control(service, challenger=None, share=None)
    return record(service, "promote", admin, rules_version=version, previous_version=previous,
                  kit=kit_result, sample=sample)
