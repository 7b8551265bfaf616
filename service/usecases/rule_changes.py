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
counts exactly what every worker evaluated once their flushes are done. A shadow evaluation
that raises is counted as failed, by error type: it decided nothing, so it is neither identical
nor changed.

What goes live (reload, challenger, promote) must pass its own policy test kit, the one it was
archived with, which must hold cases (KitFailed), and must decide every product the live rules
decide (ProductsDropped). Stops and promotes take the challenger off the control hash with one
conditional script (rules_control), so of racing calls exactly one ends a challenger, and a
promote publishes only over the version it read as live.
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

from service.adapters import rules_control
from service.adapters.rule_engine import policy_for
from service.adapters.rules_archive import RulesArchive
from service.adapters.rules_control import RulesControl
from service.adapters.state_store import StoreRefused, StoreUnavailable
from service.domain import rulebook
from service.domain.decision import iso_utc
from service.domain.policy import Policy
from service.usecases import policy_tests, replay
from service.usecases.decide import Conflict, DecisionService

log = logging.getLogger("loan_decide.rule_changes")
HISTORY_KEEP = 1000


class KitFailed(rulebook.RulesError):
    """The rules fail their own policy test kit: they do not go live."""

    def __init__(self, version: str, result: policy_tests.KitResult):
        if not result.cases:   # a kit that holds no case proves nothing
            message = (f"rules {version} have no policy test kit (0 cases): what goes live must "
                       f"pass its own kit, archived with it ({policy_tests.KIT_DIR}/*.yaml)")
        else:
            message = (f"rules {version} fail their own policy test kit "
                       f"({len(result.failures)} of {result.cases} cases): "
                       + " | ".join(f.replace("\n", ";") for f in result.failures[:5]))
        super().__init__(message)
        self.result = result


class ProductsDropped(rulebook.RulesError):
    """The rules cannot decide a product the live rules decide: its requests would fail."""


class UnknownVersion(LookupError):
    """The named rules version is not archived (archive it with `loan-decide rules archive`)."""


def _keys(prefix: str) -> dict[str, str]:
    return {"control": rules_control.control_key(prefix), "history": f"{prefix}:rulechange:history",
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
            counts = compare(live, shadow.evaluate(request, state, now).decision.to_dict())
        except Exception as exc:   # the answer is sent; a shadow failure must not touch anything else
            counts = failure(exc)
            # the type only: a message or traceback could carry the applicant's values
            log.error("shadow evaluation failed", extra={"fields": {"error": type(exc).__name__}})
        self.pending.setdefault(shadow.version, Counter()).update(counts)
        try:
            self.flush(service)
        except Exception as exc:   # the counts stay pending: the next flush writes them
            log.error("shadow counts not written", extra={"fields": {"error": type(exc).__name__}})

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


def failure(exc: BaseException) -> Counter:
    """The counts of a shadow evaluation that raised: evaluated, failed, and by error type."""
    return Counter({"evaluated": 1, "failed": 1, f"f:{type(exc).__name__}": 1})


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
    RulesArchive(client, prefix).save(book, policy_tests.kit_files(directory))
    return {"rules_version": book.version, "kit": result.to_dict()}


def record_start(service: DecisionService, previous: Optional[str], rules_dir: Path) -> None:
    """History: a process started on a version other than the active one (start-up activation)."""
    if previous == service.rules_version:
        return
    try:
        files = policy_tests.kit_files(rules_dir)
        kit = policy_tests.run_files(service.policy.book, files, service.policy).to_dict()
        if files:   # none here: the version may still be archived with its kit, once
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


def live_book(service: DecisionService) -> tuple[Optional[str], rulebook.RuleBook]:
    """The active version and its rules: what every worker runs now (this one may lag a second)."""
    key = rules_control.active_key(service.store.prefix)
    active = _text(service.store._do(lambda: service.store.client.get(key)))
    if active and active != service.rules_version:
        book = service.store._do(lambda: _archive(service).load(active))
        if book is not None:
            return active, book
    return active, service.policy.book


def gate(book: rulebook.RuleBook, kit: Mapping[str, bytes], live: rulebook.RuleBook,
         policy: Optional[Policy] = None) -> dict:
    """The kit result of rules about to go live in place of `live`. ProductsDropped when they
    cannot decide a product `live` decides; KitFailed when the kit has no case or one fails."""
    dropped = sorted(set(live.products) - set(book.products))
    if dropped:
        raise ProductsDropped(f"rules {book.version} cannot decide product(s) the live rules decide: "
                              f"{', '.join(dropped)} (missing from {rulebook.PRODUCTS_FILE})")
    result = policy_tests.run_files(book, kit, policy)
    if not result.ok or not result.cases:
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


def record_done(service: DecisionService, event: str, admin: str, **fields: Any) -> dict:
    """The history entry of a change already made: if it cannot be written, the answer must
    not say that nothing was written."""
    try:
        return record(service, event, admin, **fields)
    except StoreUnavailable as exc:
        raise StoreUnavailable(f"{event} done, but its history entry was not written: {exc}",
                               outcome_unknown=True) from exc


def history(service: DecisionService) -> list[dict]:
    key = _keys(service.store.prefix)["history"]
    return [json.loads(_text(t)) for t in service.store._do(lambda: service.store.client.lrange(key, 0, -1))]


def _control(service: DecisionService) -> RulesControl:
    return RulesControl(service.store.client, service.store.prefix)


def _read_control(service: DecisionService) -> dict[str, str]:
    """The control hash itself, not this worker's copy (which follows it once a second)."""
    key = _keys(service.store.prefix)["control"]
    return {_text(k): _text(v) for k, v in service.store._do(lambda: service.store.client.hgetall(key)).items()}


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


def _take(service: DecisionService, fields: tuple[str, ...], holding: str = "") -> Optional[list]:
    """Take `fields` off the control hash (if the first holds `holding`), then follow it here."""
    try:
        taken = service.store._do(lambda: _control(service).take(fields, holding))
    except StoreRefused:   # refused before it ran: nothing changed
        raise
    except StoreUnavailable as exc:   # sent, never answered: it may have run (and a second try
        # would find nothing to take, and say so)
        raise StoreUnavailable(f"taking the {fields[0]} off: Redis did not answer, it may have "
                               f"been taken off: {exc}", outcome_unknown=True) from exc
    if taken is not None:
        _follow_control(service)
    return taken


def _follow_control(service: DecisionService) -> None:
    """This worker follows the control hash now; if Redis cannot say, its next sync does."""
    try:
        arms_of(service).apply([_read_control(service)], service)
    except StoreUnavailable:
        pass


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
    return record_done(service, "shadow", admin, rules_version=version,
                        previous_version=service.rules_version, kit=kit_result,
                        sample=_sample(service, policy))


def stop_shadow(service: DecisionService, admin: str) -> dict:
    """Conflict when no shadow runs (nothing changes, nothing is recorded)."""
    taken = _take(service, ("shadow",))
    if taken is None:
        raise Conflict("no shadow is running: nothing to stop")
    return record_done(service, "shadow_stopped", admin, rules_version=taken[0],
                        previous_version=service.rules_version)


def shadow_report(service: DecisionService) -> Optional[dict]:
    arms = arms_of(service)
    arms.flush(service)
    version = _read_control(service).get("shadow")
    if not version:
        return None
    raw = service.store._do(lambda: service.store.client.hgetall(arms.keys["shadow"] + version))
    counts = {_text(k): int(v) for k, v in raw.items()}

    def by(tag: str) -> dict[str, int]:
        return dict(sorted((k[2:], v) for k, v in counts.items() if k.startswith(tag)))
    return {"rules_version": version, "evaluated": counts.get("evaluated", 0),
            "identical": counts.get("identical", 0), "changed": counts.get("changed", 0),
            "failed": counts.get("failed", 0), "failures": by("f:"),
            "transitions": by("t:"), "rules": by("r:")}


def start_challenger(service: DecisionService, version: str, share: float, admin: str) -> dict:
    book, kit = load_version(service, version)
    policy = policy_for(book)
    live_version, live = live_book(service)
    kit_result = gate(book, kit, live, policy)
    _set_control(service, challenger=version, share=repr(share))
    return record_done(service, "challenger", admin, rules_version=version, share=share,
                        previous_version=live_version or live.version, kit=kit_result,
                        sample=_sample(service, policy))


def stop_challenger(service: DecisionService, admin: str) -> dict:
    """Conflict when no challenger runs, or a racing stop or promote ended it first."""
    taken = _take(service, ("challenger", "share"))
    if taken is None:
        raise Conflict("no challenger is running: nothing to stop")
    return record_done(service, "challenger_stopped", admin, rules_version=taken[0],
                        previous_version=service.rules_version)


def promote(service: DecisionService, admin: str) -> dict:
    """The challenger becomes the live version for everyone (gated again by its kit).

    Reading, gating and publishing are separate steps, and a stop, a start or another promote
    may come between them. So the challenger is taken off the control hash only if it is still
    the one gated here (else Conflict: nothing changes), then published only over the version
    read as live (else it is put back, Conflict); of racing calls, exactly one wins."""
    version = _read_control(service).get("challenger")
    if not version:
        raise UnknownVersion("no challenger is running")
    previous, live = live_book(service)
    book, kit = load_version(service, version)
    policy = policy_for(book)
    kit_result = gate(book, kit, live, policy)
    sample = _sample(service, policy)
    taken = _take(service, ("challenger", "share"), holding=version)
    if taken is None:
        raise Conflict(f"the challenger {version} was stopped, replaced or promoted while this "
                       "promote checked it: nothing was promoted")
    _publish_taken(service, version, previous, {"challenger": version, "share": taken[1]})
    service.use_policy(policy)
    # no active version yet: every worker ran the rules it started with, this one's among them
    return record_done(service, "promote", admin, rules_version=version,
                        previous_version=previous or live.version, kit=kit_result, sample=sample)


def _publish_taken(service: DecisionService, version: str, previous: Optional[str],
                   taken: Mapping[str, Optional[str]]) -> None:
    """Publish a challenger already taken off the control hash; put it back if that fails
    surely (refused, or another version was published since it was read)."""
    try:
        published = service.store._do(lambda: _control(service).publish_if(version, previous))
    except StoreRefused:
        _put_back(service, taken)
        raise
    except StoreUnavailable as exc:   # it may have run: the challenger stays taken off
        raise StoreUnavailable(f"promote of {version}: the challenger was taken off; whether it was "
                               f"published is unknown (GET /readyz, /admin/rules/history): {exc}",
                               outcome_unknown=True) from exc
    if not published:
        runs_on = ("the challenger runs on" if _put_back(service, taken)
                   else "another challenger started since runs")
        raise Conflict(f"the live version changed while {version} was being promoted (a reload or "
                       f"another promote): nothing was promoted, {runs_on}")


def _put_back(service: DecisionService, taken: Mapping[str, Optional[str]]) -> bool:
    """The taken challenger back on the control hash (False: another was started since)."""
    try:
        restored = service.store._do(lambda: _control(service).put_back(taken))
    except StoreUnavailable as exc:
        raise StoreUnavailable(f"the challenger {taken['challenger']} was taken off and could not be "
                               f"put back; nothing was published: {exc}", outcome_unknown=True) from exc
    _follow_control(service)
    return restored
