"""The ports: what the use cases need from outside, in the domain's words.

The use cases are written against these abstract classes only. Which adapter stands behind each
is chosen in one place, `service.entrypoints.bootstrap`: Redis (a server or a cluster) in
production, the in-memory adapters (`service.adapters.memory`) for the embedded default, the
simulation and the fast tests. Each port's promises are one test suite run against every
adapter (tests/contract/), so a use case tested in memory behaves the same on Redis.

A port raises StoreUnavailable when its store cannot answer (the request gets a 503 whose
claim is true: nothing was written, unless `outcome_unknown` says a write may have applied)
and StoreBusy when the user's lock cannot be had in time.
"""
from __future__ import annotations

import abc
import datetime as dt
from dataclasses import dataclass
from typing import IO, Iterator, Mapping, Optional

from service.domain.application import StoredApplication
from service.domain.overrides import PendingOverride
from service.domain.rulebook import RuleBook
from service.domain.userstate import StateChange, UserState


# -- errors ----------------------------------------------------------------------------------------
Files = Mapping[str, bytes]   # file name -> content: a rules directory or a kit, as archived


class StoreUnavailable(RuntimeError):
    """The store cannot be reached or did not answer in time: the request gets a 503.

    `outcome_unknown`: a write was sent and never confirmed nor refused within the retry
    bound, so it may have been applied (a retry of the same application gets its decision).
    """

    def __init__(self, message: str, outcome_unknown: bool = False):
        super().__init__(message)
        self.outcome_unknown = outcome_unknown


class StoreRefused(StoreUnavailable):
    """The store answered "not now" (memory full, disk failing, a read-only replica, loading):
    the command was refused before it wrote anything."""


class StoreBusy(RuntimeError):
    """The user's lock could not be had in time: the request gets a 503 with Retry-After."""


# -- one user's state: the unit of work -----------------------------------------------------------
@dataclass(frozen=True)
class Windows:
    """The look-back windows a read of the state needs: T3 counts the applications after
    `count_from`, T5 the grace uses after `grace_from`; both include `now`."""

    now: dt.datetime
    count_from: dt.datetime
    grace_from: dt.datetime


@dataclass(frozen=True)
class UserSnapshot:
    """What `begin` read under the user's lock: the state, and the application's record."""

    user_id: str
    application_id: Optional[str]
    token: str                                # the lock's holder: a commit needs it
    state: UserState
    known: bool                               # the store holds some state of the user
    application: Optional[StoredApplication]


@dataclass(frozen=True)
class GraceUse:
    """T5: one use of `days` grace days at `at`; `use_id` tells two uses in one second apart
    (records written before it existed have none)."""

    at: dt.datetime
    days: int
    use_id: Optional[str]


@dataclass(frozen=True)
class UserWrite:
    """What one step of the unit of work writes, all of it or nothing: the application's record
    as it now stands, the change to the user's state, and the decision-log record.

    `decision_text` is the record's decision already encoded (it was, once, for the response
    and the log): an adapter that stores text writes it as it is. `count_from` / `grace_from`
    are the windows' starts at `at`: what falls out of them is no longer kept.
    """

    at: dt.datetime
    application: Optional[StoredApplication] = None
    decision_text: Optional[str] = None
    change: StateChange = StateChange()
    count_from: Optional[dt.datetime] = None
    grace_use: Optional[GraceUse] = None
    grace_from: Optional[dt.datetime] = None
    ends_hold: bool = False          # a cancel: this application's T2 hold ends (if it is the held one)
    lifts_cooldown: bool = False     # an override: the 90-day window ends now
    override: Optional[PendingOverride] = None   # a four-eyes override as it now stands (asked, applied)
    log: Optional[str] = None
    keep_lock: bool = False          # the lock stays ours after the commit: release() ends it


@dataclass(frozen=True)
class UserInventory:
    """Everything a store holds of one user, as an erasure counts it."""

    applications: tuple[StoredApplication, ...]
    log_records: int
    state_items: int                 # the state's parts held (window/hold/grant, counts, grace uses)


class UserStore(abc.ABC):
    """Per-user state behind a lock: read and write one user atomically, across processes.

    `begin` takes the user's lock and reads in one step; `commit` applies one UserWrite and
    frees the lock in one step, only while the lock is still ours (else StoreBusy, nothing
    written); `release` frees it without writing. A holder that dies stops blocking the user
    when the lock expires (`lock_ttl_ms`), and cannot write afterwards.
    """

    lock_wait_s: float = 5.0      # how long a request waits for the user's lock
    lock_ttl_ms: int = 5000       # a dead holder's lock frees itself after this

    @abc.abstractmethod
    def begin(self, user_id: str, application_id: Optional[str],
              windows: Windows) -> Optional[UserSnapshot]:
        """One attempt to take the lock and read; None while another holder has it."""

    @abc.abstractmethod
    def commit(self, snapshot: UserSnapshot, write: UserWrite) -> None:
        """Apply `write`; safe to retry (a commit applies once)."""

    @abc.abstractmethod
    def release(self, snapshot: UserSnapshot) -> bool:
        """Free the lock if it is still ours; False only when it was known not to be."""

    @abc.abstractmethod
    def application(self, user_id: str, application_id: str) -> Optional[StoredApplication]:
        """The application's record, read without the lock."""

    @abc.abstractmethod
    def applications(self, refs: list[tuple[str, str]]) -> list[Optional[StoredApplication]]:
        """The records of (user id, application id) pairs, in order (None: gone)."""

    @abc.abstractmethod
    def state(self, user_id: str, windows: Windows) -> Optional[UserState]:
        """The user's state read without the lock; None when the store holds none."""

    @abc.abstractmethod
    def all_applications(self) -> Iterator[StoredApplication]:
        """Every application record (a full scan: repair and audit tools, never a request)."""

    @abc.abstractmethod
    def log_records(self, user_id: str) -> list[str]:
        """The user's decision-log records (each its JSON text, as written), oldest first: what an
        applicant's copy of their data holds, and where a decision's request is found again."""

    @abc.abstractmethod
    def pending_override(self, user_id: str, override_id: str) -> Optional[PendingOverride]:
        """A four-eyes override of the user (UserWrite.override), until its `kept_until`; read
        under the user's lock, it is the one the next commit sees."""

    @abc.abstractmethod
    def inventory(self, user_id: str) -> Optional[UserInventory]:
        """What is held of the user (None: nothing, an erasure in progress excepted)."""

    @abc.abstractmethod
    def begin_erasure(self, snapshot: UserSnapshot, pending: dict) -> dict:
        """Replace everything held of the user by `pending` (the erasure's receipt to write),
        in one step, while the lock is ours; returns the pending erasure stored (this one, or
        the one an earlier try left)."""

    @abc.abstractmethod
    def pending_erasure(self, user_id: str) -> Optional[dict]:
        """An erasure of the user begun and not finished."""

    @abc.abstractmethod
    def end_erasure(self, user_id: str) -> None:
        """The erasure is finished: nothing of the user is left."""

    @abc.abstractmethod
    def forget(self, user_id: str) -> None:
        """Drop everything held of the user at once (a rebuild replaying an erasure)."""

    @abc.abstractmethod
    def view(self, user_id: str, application_ids: set[str]) -> dict:
        """The user's stored state and records as comparable values (`state diff`)."""

    @abc.abstractmethod
    def ping(self) -> bool:
        """Whether the store takes a write now."""


# -- the review queue --------------------------------------------------------------------------------
class ReviewQueue(abc.ABC):
    """The pending-review index: entries ordered oldest first (service.domain.review.case_entry),
    written after the per-user commits; the application records stay the source of truth."""

    @abc.abstractmethod
    def add(self, entry: str) -> None: ...

    @abc.abstractmethod
    def remove(self, entries: list[str]) -> None: ...

    @abc.abstractmethod
    def page(self, after: Optional[str], count: int) -> list[str]:
        """Up to `count` entries after `after` (exclusive), in order."""

    @abc.abstractmethod
    def contains(self, entry: str) -> bool: ...

    @abc.abstractmethod
    def stats(self) -> tuple[int, Optional[str]]:
        """(entries, the oldest entry) for the metrics."""

    @abc.abstractmethod
    def count_before(self, prefix: str) -> int:
        """Entries that sort before `prefix`."""


# -- erasure ---------------------------------------------------------------------------------------
class ErasedWindows(abc.ABC):
    """An erased user's active 90-day window, kept only as its end time under a keyed hash of
    the user id (`subject`): no key or value holds the user id."""

    @abc.abstractmethod
    def until(self, subject: str, now: dt.datetime) -> Optional[dt.datetime]: ...

    @abc.abstractmethod
    def keep(self, subject: str, until: dt.datetime) -> None: ...

    @abc.abstractmethod
    def drop(self, subject: str) -> None: ...


class Receipts(abc.ABC):
    """Erasure receipts (who, when, why, counts; no personal data) and their log records."""

    @abc.abstractmethod
    def save(self, receipt: dict, log_record: str) -> None:
        """The receipt and its log record together, once (a receipt written stays as it is)."""

    @abc.abstractmethod
    def load(self, receipt_id: str) -> Optional[dict]: ...


# -- four-eyes overrides -------------------------------------------------------------------------
class OverrideIndex(abc.ABC):
    """Which user an override id belongs to: the approval names only the override, and the
    override itself lives under its user's keys. A pointer alone is harmless (an override its
    user does not hold is unknown), so it is written before the user's commit and outlives
    nothing: it expires with the override (kept for `keep` from now), and an erased user's is a
    dead end."""

    @abc.abstractmethod
    def point(self, override_id: str, user_id: str, keep: dt.timedelta) -> None: ...

    @abc.abstractmethod
    def user_of(self, override_id: str) -> Optional[str]: ...


# -- the decision log --------------------------------------------------------------------------------
class DecisionLog(abc.ABC):
    """The log records the unit of work appended (UserWrite.log) and the receipts' records."""

    @abc.abstractmethod
    def export(self, out: IO[str], since: Optional[str] = None, until: Optional[str] = None) -> int:
        """Write the records with since <= at < until as JSON Lines, ordered by (at, user)."""

    @abc.abstractmethod
    def recent_decisions(self, limit: int, per_user: int = 5) -> Iterator[str]:
        """Up to `limit` recent decision records (their JSON text), a few of each user."""


# -- rules versions and rule changes ---------------------------------------------------------------
class RulesArchive(abc.ABC):
    """Every rules version that made a logged decision, by its hash, with the policy test kit it
    was archived with (a version's kit is its own for good: KitConflict for another one)."""

    @abc.abstractmethod
    def save(self, book: RuleBook, kit: Optional[Files] = None) -> None: ...

    @abc.abstractmethod
    def save_kit(self, version: str, files: Files) -> None: ...

    @abc.abstractmethod
    def load(self, version: str) -> Optional[RuleBook]: ...

    @abc.abstractmethod
    def load_kit(self, version: str) -> dict[str, bytes]: ...


class RuleSwitches(abc.ABC):
    """What every worker follows: the active rules version, and the rule-change control
    (shadow version, challenger version and share). Changes that must not race are conditional:
    `take` ends a setting only if it still holds what was checked, `publish_if` publishes only
    over the version read as active."""

    @abc.abstractmethod
    def read(self) -> tuple[Optional[str], dict[str, str]]:
        """(the active version, the control), in one round trip."""

    @abc.abstractmethod
    def publish(self, version: str) -> None: ...

    @abc.abstractmethod
    def publish_if(self, version: str, replacing: Optional[str]) -> bool: ...

    @abc.abstractmethod
    def set_control(self, changes: Mapping[str, Optional[str]]) -> dict[str, str]:
        """Set (None: remove) control fields together; the control after."""

    @abc.abstractmethod
    def take(self, fields: tuple[str, ...], holding: str = "") -> Optional[list[Optional[str]]]:
        """Remove `fields` if the first is set (to `holding`, when given): what they held, or
        None when nothing was taken."""

    @abc.abstractmethod
    def put_back(self, values: Mapping[str, Optional[str]]) -> bool:
        """Restore what `take` took, unless its first field was set again since (False)."""


class RuleChangeLog(abc.ABC):
    """The history of activations, and the shadow's counts per version (added up by every worker)."""

    @abc.abstractmethod
    def append(self, entry: dict, keep: int) -> None: ...

    @abc.abstractmethod
    def entries(self) -> list[dict]: ...

    @abc.abstractmethod
    def add_counts(self, batch: Mapping[str, Mapping[str, int]]) -> None:
        """Add each version's counts, all in one step."""

    @abc.abstractmethod
    def counts(self, version: str) -> dict[str, int]: ...

    @abc.abstractmethod
    def reset_counts(self, version: str) -> None: ...


@dataclass(frozen=True)
class Stores:
    """One adapter of every port, over one store (a Redis, or one process's memory)."""

    users: UserStore
    queue: ReviewQueue
    erased: ErasedWindows
    receipts: Receipts
    log: DecisionLog
    archive: RulesArchive
    switches: RuleSwitches
    changes: RuleChangeLog
    overrides: OverrideIndex
