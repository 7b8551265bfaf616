"""The rules in force in this process: the live policy, the challenger and the shadow.

Every worker follows the same switches (RuleSwitches: the active version and the rule-change
control) and reads them at most once a second, in one round trip, before a request
(`sync`): a reload, promote, challenger or shadow started by one worker reaches every worker
within a second, and a worker forked later syncs before it serves. If the store cannot say,
the rules this worker runs stay.

Every evaluation, live, challenger or shadow, goes through a policy built by the same engine
wrapper (`build`: one process-wide engine lock).
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from typing import Any, Callable, Mapping, Optional

from service.domain.policy import Policy
from service.domain.rulebook import RuleBook, RulesError
from service.usecases.ports import RuleChangeLog, RulesArchive, RuleSwitches, StoreUnavailable

log = logging.getLogger("loan_decide.rule_changes")
PolicyBuilder = Callable[[RuleBook], Policy]
BOOKS_KEPT = 16      # archived rule books kept in memory by book_of


class UnknownVersion(LookupError):
    """The named rules version is not archived (archive it with `loan-decide rules archive`)."""


def bucket(user_id: str) -> float:
    """A stable number in [0, 1) per user: the same user always lands in the same arm."""
    return int.from_bytes(hashlib.sha256(user_id.encode()).digest()[:8], "big") / 2 ** 64


class LiveRules:
    """The policy this process decides with, following the switches every worker shares."""

    def __init__(self, policy: Policy, build: PolicyBuilder, archive: Optional[RulesArchive] = None,
                 switches: Optional[RuleSwitches] = None, changes: Optional[RuleChangeLog] = None,
                 sync_interval: float = 1.0):
        self.policy, self.build = policy, build
        self.archive, self.switches, self.changes = archive, switches, changes
        self.sync_interval = sync_interval
        self.arms = Arms()
        self._next_sync = 0.0
        self._archived = False
        self._books: dict[str, RuleBook] = {}

    @property
    def version(self) -> str:
        return self.policy.version

    @property
    def shadowing(self) -> bool:
        return self.arms.shadow is not None

    def use(self, policy: Policy) -> None:
        self.policy = policy

    def policy_for(self, user_id: str) -> tuple[Policy, Optional[str]]:
        """The policy that decides this user, and its arm (None while no challenger runs)."""
        return self.arms.policy_for(self.policy, user_id)

    def load(self, version: str) -> Policy:
        """An archived version's policy (UnknownVersion when it is not archived)."""
        if version == self.version:
            return self.policy
        book = self.archive.load(version) if self.archive else None
        if book is None:
            raise UnknownVersion(version)
        return self.build(book)

    def book_of(self, version: str) -> RuleBook:
        """The rule book that made a decision under `version`, for what that version promised
        (a deadline told to the applicant); the live book when the version is not archived.
        Books are kept once read: a version's files never change under its hash."""
        if version == self.version:
            return self.policy.book
        book = self._books.get(version)
        if book is None:
            book = self.archive.load(version) if self.archive else None
            if book is None:
                return self.policy.book
            if len(self._books) >= BOOKS_KEPT:
                self._books.pop(next(iter(self._books)))
            self._books[version] = book
        return book

    # -- the shared switches ----------------------------------------------------------------
    def archive_own(self) -> bool:
        """Store this process's rules version by its hash, so replays can find it; False until
        it worked (readiness tries again)."""
        if self._archived or self.archive is None:
            return True
        try:
            self.archive.save(self.policy.book)
        except StoreUnavailable:
            return False
        self._archived = True
        return True

    def publish(self, version: str) -> None:
        """Make `version` the one every worker runs (it must be archived first)."""
        if self.switches is not None:
            self.switches.publish(version)

    def sync(self, force: bool = False) -> bool:
        """Follow the switches if another worker changed them. At most one read a second."""
        if self.switches is None:
            return False
        now = time.monotonic()
        if not force and now < self._next_sync:
            return False
        self._next_sync = now + self.sync_interval
        try:
            active, control = self.switches.read()
            self.follow(control)
            if not active or active == self.version:
                return False
            book = self.archive.load(active)
        except StoreUnavailable:
            return False
        if book is None:
            return False
        self.use(self.build(book))
        return True

    def follow(self, control: Mapping[str, str]) -> None:
        """Run the challenger and shadow the control names; a version that cannot be built
        leaves what runs running, and says why."""
        if dict(control) == self.arms.control:
            return
        try:
            self.arms.configure(control, self._policy_of)
        except (UnknownVersion, RulesError) as exc:
            log.error("rule change settings not applied", extra={"fields": {"error": str(exc)}})

    def _policy_of(self, version: Optional[str], current: Optional[Policy]) -> Optional[Policy]:
        if not version:
            return None
        if current is not None and current.version == version:
            return current
        return self.load(version)

    # -- the shadow ---------------------------------------------------------------------------
    def observe(self, live: Mapping[str, Any], shadow_input: tuple,
                compare: Callable[[Mapping[str, Any], Mapping[str, Any]], Counter]) -> Optional[Counter]:
        """After the response: decide again under the shadow, count, flush (never raises). The
        counts this decision added (None: no shadow runs), for the caller's metrics."""
        shadow = self.arms.shadow
        if shadow is None:
            return None
        try:
            request, state, now = shadow_input
            counts = compare(live, shadow.evaluate(request, state, now).decision.to_dict())
        except Exception as exc:   # the answer is sent; a shadow failure must not touch anything else
            counts = failure(exc)
            # the type only: a message or traceback could carry the applicant's values
            log.error("shadow evaluation failed", extra={"fields": {"error": type(exc).__name__}})
        self.arms.pending.setdefault(shadow.version, Counter()).update(counts)
        try:
            self.flush()
        except Exception as exc:   # the counts stay pending: the next flush writes them
            log.error("shadow counts not written", extra={"fields": {"error": type(exc).__name__}})
        return counts

    def flush(self) -> None:
        """Write every pending count in one step; on failure they stay pending."""
        arms = self.arms
        if self.changes is None or not arms.pending or not arms.flush_lock.acquire(blocking=False):
            return
        try:
            batch, arms.pending = arms.pending, {}
            try:
                self.changes.add_counts(batch)
            except Exception:
                for version, counts in batch.items():
                    arms.pending.setdefault(version, Counter()).update(counts)
                raise
        finally:
            arms.flush_lock.release()


def failure(exc: BaseException) -> Counter:
    """The counts of a shadow evaluation that raised: evaluated, failed, and by error type."""
    return Counter({"evaluated": 1, "failed": 1, f"f:{type(exc).__name__}": 1})


class Arms:
    """This worker's challenger and shadow, as the control names them."""

    def __init__(self):
        self.control: dict[str, str] = {}
        self.challenger: Optional[Policy] = None
        self.share = 0.0
        self.shadow: Optional[Policy] = None
        self.pending: dict[str, Counter] = {}
        self.flush_lock = threading.Lock()

    def configure(self, control: Mapping[str, str],
                  policy_of: Callable[[Optional[str], Optional[Policy]], Optional[Policy]]) -> None:
        """Build the policies the control names (from the archive, once per change)."""
        self.challenger = policy_of(control.get("challenger"), self.challenger)
        self.share = float(control.get("share") or 0.0)
        self.shadow = policy_of(control.get("shadow"), self.shadow)
        self.control = dict(control)

    def policy_for(self, champion: Policy, user_id: str) -> tuple[Policy, Optional[str]]:
        if self.challenger is None:
            return champion, None
        if bucket(user_id) < self.share:
            return self.challenger, "challenger"
        return champion, "champion"
