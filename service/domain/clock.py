"""The one clock a decision reads. Injected, so tests move time instead of sleeping."""
from __future__ import annotations

import datetime as dt
from typing import Protocol


class Clock(Protocol):
    def now(self) -> dt.datetime: ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)


class FixedClock:
    """A clock that stands still until moved: for tests and for replaying recorded decisions."""

    def __init__(self, moment: dt.datetime):
        if moment.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self._moment = moment

    def now(self) -> dt.datetime:
        return self._moment

    def set(self, moment: dt.datetime) -> None:
        self._moment = moment

    def advance(self, **delta: float) -> dt.datetime:
        self._moment += dt.timedelta(**delta)
        return self._moment
