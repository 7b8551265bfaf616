"""The per-user unit of work: take the user, read a snapshot, commit one write or release.

Every use case that changes a user runs one step through `UserWork.run`: under the user's lock
it reads the state and the application's record, decides, and commits one UserWrite (the
application record, the state change and the log record) together, or writes nothing. One
user's requests are therefore serialised across workers and machines, and a request that fails
half-way leaves no trace.
"""
from __future__ import annotations

import datetime as dt
import time
from typing import Callable, Optional, TypeVar

from service.domain.clock import Clock
from service.domain.policy import Policy
from service.usecases.ports import StoreBusy, StoreUnavailable, UserSnapshot, UserStore, UserWrite, Windows

T = TypeVar("T")
Step = Callable[[UserSnapshot, dt.datetime], "tuple[T, Optional[UserWrite]]"]


def windows_at(policy: Policy, now: dt.datetime) -> Windows:
    """The look-back windows of T3 and T5 at `now`, as the policy's rules set them."""
    return Windows(now, policy.count_window_start(now),
                   now - dt.timedelta(days=policy.book.time.grace.period_days))


class UserWork:
    """Runs steps under one user's lock against a UserStore, reading the clock and the live
    policy (`policy` is a callable: the rules in force may change between two requests)."""

    def __init__(self, store: UserStore, clock: Clock, policy: Callable[[], Policy],
                 wait: Callable[[float], None] = time.sleep):
        # `wait` pauses while another request holds the user's lock: a server that admits a few
        # requests at a time gives the waiter's place to others meanwhile
        self.store, self.clock, self.policy, self.wait = store, clock, policy, wait

    def run(self, user_id: str, application_id: Optional[str], step: Step,
            now: Optional[dt.datetime] = None,
            then: Optional[Callable[[T, UserSnapshot], None]] = None) -> T:
        """Take the user's lock (waiting for it), run `step`, commit its write or write nothing.

        `now` fixes the time (a rebuild applies records at their own times); by default the
        clock is read at each attempt, so the holder's time is after the previous holder's.
        `then` runs after the commit of a write that keeps the lock, and must release it: work
        outside the user's keys that the user's next request must find done.
        """
        snapshot, now = self._take(user_id, application_id, now)
        released = False
        try:
            result, write = step(snapshot, now)
            if write is not None:
                self.store.commit(snapshot, write)
                released = not write.keep_lock
                if then is not None and not released:
                    released = True
                    then(result, snapshot)
            return result
        finally:
            if not released:
                self.store.release(snapshot)

    def _take(self, user_id: str, application_id: Optional[str],
              fixed: Optional[dt.datetime]) -> tuple[UserSnapshot, dt.datetime]:
        deadline = time.monotonic() + self.store.lock_wait_s
        pause = 0.001
        while True:
            now = (fixed or self.clock.now()).replace(microsecond=0)
            snapshot = self.store.begin(user_id, application_id, windows_at(self.policy(), now))
            if snapshot is not None:
                return snapshot, now
            if time.monotonic() > deadline:
                raise StoreBusy("another request for this user is in progress; try again")  # no id: it may be personal data
            self.wait(pause)
            pause = min(pause * 2, 0.02)


def finish(work: Callable[[], T], seconds: float) -> T:
    """Run `work` (safe to run again) until it succeeds, for up to `seconds`, through the store's
    refusals and silences alike: what is left of a job whose first step applied is finished,
    not refused. Still failing: StoreUnavailable with `outcome_unknown`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return work()
        except StoreUnavailable as exc:   # StoreRefused included
            if time.monotonic() >= deadline:
                raise StoreUnavailable(f"not finished: {exc}", outcome_unknown=True) from exc
            time.sleep(0.05)
