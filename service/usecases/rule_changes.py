"""Safe rule changes: archive a candidate with its kit, reload, shadow it, run it as a challenger,
promote it, and keep the history of every activation.

Settings shared by every worker are the rule switches (RuleSwitches: the active version, and
the control: shadow version, challenger version and share). Each worker reads them in one round
trip at most once a second (LiveRules.sync), so a challenger or shadow adds no round trip to a
request. Every evaluation of a shadow or challenger goes through the same engine wrapper.

Shadow: after the live response is sent, the shadow version decides the same request with the
same state and time; the comparison is the replay's (replay.results_of), and the counts are
added up in process and written in one step per flush (LiveRules.flush), so a report counts
exactly what every worker evaluated once their flushes are done. A shadow evaluation that
raises is counted as failed, by error type: it decided nothing, so it is neither identical nor
changed.

What goes live (reload, challenger, promote) must pass its own policy test kit, the one it was
archived with, which must hold cases (KitFailed), and must decide every product the live rules
decide (ProductsDropped). Stops and promotes take the challenger off the control with one
conditional step (RuleSwitches.take), so of racing calls exactly one ends a challenger, and a
promote publishes only over the version it read as live.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any, Callable, Mapping, Optional

from service.domain import rulebook
from service.domain.decision import iso_utc
from service.domain.policy import Policy
from service.usecases import replay
from service.usecases.errors import Conflict
from service.usecases.live_rules import LiveRules, UnknownVersion
from service.usecases.policy_tests import KIT_DIR, KitResult, Kits
from service.usecases.ports import (
    DecisionLog,
    Files,
    RuleChangeLog,
    RulesArchive,
    RuleSwitches,
    StoreRefused,
    StoreUnavailable,
)

HISTORY_KEEP = 1000
__all__ = ["RuleChanges", "KitFailed", "ProductsDropped", "UnknownVersion", "compare"]


class KitFailed(rulebook.RulesError):
    """The rules fail their own policy test kit: they do not go live."""

    def __init__(self, version: str, result: KitResult):
        if not result.cases:   # a kit that holds no case proves nothing
            message = (f"rules {version} have no policy test kit (0 cases): what goes live must "
                       f"pass its own kit, archived with it ({KIT_DIR}/*.yaml)")
        else:
            message = (f"rules {version} fail their own policy test kit "
                       f"({len(result.failures)} of {result.cases} cases): "
                       + " | ".join(f.replace("\n", ";") for f in result.failures[:5]))
        super().__init__(message)
        self.result = result


class ProductsDropped(rulebook.RulesError):
    """The rules cannot decide a product the live rules decide: its requests would fail."""


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


def gate(kits: Kits, book: rulebook.RuleBook, kit: Files, live: rulebook.RuleBook,
         policy: Optional[Policy] = None) -> dict:
    """The kit result of rules about to go live in place of `live`. ProductsDropped when they
    cannot decide a product `live` decides; KitFailed when the kit has no case or one fails."""
    dropped = sorted(set(live.products) - set(book.products))
    if dropped:
        raise ProductsDropped(f"rules {book.version} cannot decide product(s) the live rules decide: "
                              f"{', '.join(dropped)} (missing from {rulebook.PRODUCTS_FILE})")
    result = kits.run_files(book, kit, policy)
    if not result.ok or not result.cases:
        raise KitFailed(book.version, result)
    return result.to_dict()


def archive_version(kits: Kits, archive: RulesArchive, book: rulebook.RuleBook,
                    kit_files: Files) -> dict:
    """Store rules and kit as a version; the kit is run (reported, not refused). Needs no live
    rules: archiving must not publish anything (`loan-decide rules archive`)."""
    result = kits.run_files(book, kit_files)
    archive.save(book, kit_files)
    return {"rules_version": book.version, "kit": result.to_dict()}


class _Fixed(replay.PolicySource):
    """Every record under one policy (a sample replayed under a candidate)."""

    def __init__(self, policy: Policy):
        super().__init__(build=lambda book: policy)
        self._policy = policy

    def for_version(self, version: str) -> Policy:
        return self._policy


class RuleChanges:
    """The admin's rule changes, over the live rules and the shared rule stores."""

    def __init__(self, rules: LiveRules, kits: Kits, archive: RulesArchive, switches: RuleSwitches,
                 changes: RuleChangeLog, log: DecisionLog, sample_size: int = 200):
        self.rules, self.kits, self.archive = rules, kits, archive
        self.switches, self.changes, self.log = switches, changes, log
        self.sample_size = sample_size

    # -- reading ------------------------------------------------------------------------------
    def load_version(self, version: str) -> tuple[rulebook.RuleBook, dict]:
        book = self.archive.load(version)
        if book is None:
            raise UnknownVersion(version)
        return book, self.archive.load_kit(version)

    def live_book(self) -> tuple[Optional[str], rulebook.RuleBook]:
        """The active version and its rules: what every worker runs now (this one may lag a second)."""
        active, _ = self.switches.read()
        if active and active != self.rules.version:
            book = self.archive.load(active)
            if book is not None:
                return active, book
        return active, self.rules.policy.book

    def history(self) -> list[dict]:
        return self.changes.entries()

    def sample(self, policy: Policy, size: Optional[int] = None) -> dict:
        """Recent logged decisions replayed under `policy`: how many would change, and how."""
        lines = ((n, text) for n, text in
                 enumerate(self.log.recent_decisions(size or self.sample_size), 1))
        summary = replay.replay(lines, _Fixed(policy), skip_bad=True)
        return {"total": summary.total, "changed": summary.changed,
                "transitions": dict(summary.transitions), "rules": dict(summary.rules)}

    # -- the history -----------------------------------------------------------------------------
    def record(self, event: str, admin: str, **fields: Any) -> dict:
        entry = {"at": iso_utc(dt.datetime.now(dt.timezone.utc)), "event": event, "admin": admin,
                 **fields}
        self.changes.append(entry, HISTORY_KEEP)
        return entry

    def record_done(self, event: str, admin: str, **fields: Any) -> dict:
        """The history entry of a change already made: if it cannot be written, the answer must
        not say that nothing was written."""
        try:
            return self.record(event, admin, **fields)
        except StoreUnavailable as exc:
            raise StoreUnavailable(f"{event} done, but its history entry was not written: {exc}",
                                   outcome_unknown=True) from exc

    def record_start(self, previous: Optional[str], read_kit: Callable[[], Files]) -> None:
        """History: a process started on a version other than the active one (start-up
        activation), with its kit's result (`read_kit` reads the directory's kit)."""
        if previous == self.rules.version:
            return
        policy = self.rules.policy
        try:
            kit_files = read_kit()
            kit = self.kits.run_files(policy.book, kit_files, policy).to_dict()
            if kit_files:   # none here: the version may still be archived with its kit, once
                self.archive.save_kit(self.rules.version, kit_files)
        except rulebook.RulesError as exc:   # a start is not refused; the history says why
            kit = {"ok": False, "error": str(exc)}
        self.record("start-up", "service", rules_version=self.rules.version,
                    previous_version=previous, kit=kit)

    # -- reload ---------------------------------------------------------------------------------
    def reload(self, book: rulebook.RuleBook, kit_files: Files, dry_run: bool = False) -> dict:
        """Rules read from the mounted directory go live (unless `dry_run`): gated by their kit
        and the live products, a sample replayed under them, then archived with their kit
        (KitConflict: archived before with another) and published to every worker."""
        candidate = self.kits.policy(book)
        kit = gate(self.kits, book, kit_files, self.live_book()[1], candidate)
        previous = self.rules.version
        result = {"rules_version": book.version, "previous_version": previous,
                  "dry_run": dry_run, "changed_version": book.version != previous,
                  "sample": self.sample(candidate), "kit": kit}
        if not dry_run:
            self.archive.save(book, kit_files)
            self.rules.publish(book.version)
            self.rules.use(candidate)
        return result

    # -- shadow ----------------------------------------------------------------------------------
    def start_shadow(self, version: str, admin: str) -> dict:
        """Not gated (it changes no answer); the kit result is recorded all the same."""
        book, kit = self.load_version(version)
        policy = self.kits.policy(book)
        kit_result = self.kits.run_files(book, kit, policy).to_dict()
        self.changes.reset_counts(version)
        self._set_control(shadow=version)
        return self.record_done("shadow", admin, rules_version=version,
                                previous_version=self.rules.version, kit=kit_result,
                                sample=self.sample(policy))

    def stop_shadow(self, admin: str) -> dict:
        """Conflict when no shadow runs (nothing changes, nothing is recorded)."""
        taken = self._take(("shadow",))
        if taken is None:
            raise Conflict("no shadow is running: nothing to stop")
        return self.record_done("shadow_stopped", admin, rules_version=taken[0],
                                previous_version=self.rules.version)

    def shadow_report(self) -> Optional[dict]:
        self.rules.flush()
        version = self.switches.read()[1].get("shadow")
        if not version:
            return None
        counts = self.changes.counts(version)

        def by(tag: str) -> dict[str, int]:
            return dict(sorted((k[2:], v) for k, v in counts.items() if k.startswith(tag)))
        return {"rules_version": version, "evaluated": counts.get("evaluated", 0),
                "identical": counts.get("identical", 0), "changed": counts.get("changed", 0),
                "failed": counts.get("failed", 0), "failures": by("f:"),
                "transitions": by("t:"), "rules": by("r:")}

    # -- challenger and promote ----------------------------------------------------------------
    def start_challenger(self, version: str, share: float, admin: str) -> dict:
        book, kit = self.load_version(version)
        policy = self.kits.policy(book)
        live_version, live = self.live_book()
        kit_result = gate(self.kits, book, kit, live, policy)
        self._set_control(challenger=version, share=repr(share))
        return self.record_done("challenger", admin, rules_version=version, share=share,
                                previous_version=live_version or live.version, kit=kit_result,
                                sample=self.sample(policy))

    def stop_challenger(self, admin: str) -> dict:
        """Conflict when no challenger runs, or a racing stop or promote ended it first."""
        taken = self._take(("challenger", "share"))
        if taken is None:
            raise Conflict("no challenger is running: nothing to stop")
        return self.record_done("challenger_stopped", admin, rules_version=taken[0],
                                previous_version=self.rules.version)

    def promote(self, admin: str) -> dict:
        """The challenger becomes the live version for everyone (gated again by its kit).

        Reading, gating and publishing are separate steps, and a stop, a start or another
        promote may come between them. So the challenger is taken off the control only if it is
        still the one gated here (else Conflict: nothing changes), then published only over the
        version read as live (else it is put back, Conflict); of racing calls, exactly one wins."""
        version = self.switches.read()[1].get("challenger")
        if not version:
            raise UnknownVersion("no challenger is running")
        previous, live = self.live_book()
        book, kit = self.load_version(version)
        policy = self.kits.policy(book)
        kit_result = gate(self.kits, book, kit, live, policy)
        sample = self.sample(policy)
        taken = self._take(("challenger", "share"), holding=version)
        if taken is None:
            raise Conflict(f"the challenger {version} was stopped, replaced or promoted while this "
                           "promote checked it: nothing was promoted")
        self._publish_taken(version, previous, {"challenger": version, "share": taken[1]})
        self.rules.use(policy)
        # no active version yet: every worker ran the rules it started with, this one's among them
        return self.record_done("promote", admin, rules_version=version,
                                previous_version=previous or live.version, kit=kit_result, sample=sample)

    # -- the control -----------------------------------------------------------------------------
    def _set_control(self, **changes: Optional[str]) -> None:
        self.rules.follow(self.switches.set_control(changes))

    def _follow_control(self) -> None:
        """This worker follows the control now; if the store cannot say, its next sync does."""
        try:
            self.rules.follow(self.switches.read()[1])
        except StoreUnavailable:
            pass

    def _take(self, fields: tuple[str, ...], holding: str = "") -> Optional[list]:
        """Take `fields` off the control (if the first holds `holding`), then follow it here."""
        try:
            taken = self.switches.take(fields, holding)
        except StoreRefused:   # refused before it ran: nothing changed
            raise
        except StoreUnavailable as exc:   # sent, never answered: it may have run (and a second
            # try would find nothing to take, and say so)
            raise StoreUnavailable(f"taking the {fields[0]} off: the store did not answer, it may "
                                   f"have been taken off: {exc}", outcome_unknown=True) from exc
        if taken is not None:
            self._follow_control()
        return taken

    def _publish_taken(self, version: str, previous: Optional[str],
                       taken: Mapping[str, Optional[str]]) -> None:
        """Publish a challenger already taken off the control; put it back if that fails
        surely (refused, or another version was published since it was read)."""
        try:
            published = self.switches.publish_if(version, previous)
        except StoreRefused:
            self._put_back(taken)
            raise
        except StoreUnavailable as exc:   # it may have run: the challenger stays taken off
            raise StoreUnavailable(f"promote of {version}: the challenger was taken off; whether it "
                                   f"was published is unknown (GET /readyz, /admin/rules/history): {exc}",
                                   outcome_unknown=True) from exc
        if not published:
            runs_on = ("the challenger runs on" if self._put_back(taken)
                       else "another challenger started since runs")
            raise Conflict(f"the live version changed while {version} was being promoted (a reload "
                           f"or another promote): nothing was promoted, {runs_on}")

    def _put_back(self, taken: Mapping[str, Optional[str]]) -> bool:
        """The taken challenger back on the control (False: another was started since)."""
        try:
            restored = self.switches.put_back(taken)
        except StoreUnavailable as exc:
            raise StoreUnavailable(f"the challenger {taken['challenger']} was taken off and could "
                                   f"not be put back; nothing was published: {exc}",
                                   outcome_unknown=True) from exc
        self._follow_control()
        return restored
