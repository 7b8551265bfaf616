"""Serving fairly under gevent: requests through the app first come first served, at most a few
at a time, and connections spread evenly over the workers.

Left alone, a gevent worker runs every request it has read at once, switching at each Redis
round trip, so its 8 requests in flight are all answered late instead of one by one; a greenlet
whose next request is already in its socket runs again before the others are even read; and the
worker awake first takes a whole burst of new connections (16 of wrk's 16 were seen on one of
two workers, the other idle for the connections' life). The tail was 3 to 7 times a sync
worker's. Three parts answer it, each in the gevent worker (gunicorn_worker.JsonGeventWorker):

- `AppGate`: at most `APP_CONCURRENCY` requests (default 2: one runs while the other waits on
  Redis) inside the app, let in in the order they were read (`FifoGate`); each connection yields
  once before it queues, so every request already sent is read first. A request's whole body is
  read before it queues and its answer is written after it leaves: a client that sends or reads
  slowly never holds the gate, and every other connection is still read concurrently.
- `ConnectionTable` + `BalancedServer`: a worker takes a new connection only while it holds no
  more connections than any other, as nginx's workers take turns with their accept mutex.
- A worker holding 2 more connections than another closes one after its answer (`AppGate.shed`),
  so the connections spread again after a worker is recycled.
"""
from __future__ import annotations

import collections
import io
import os
import struct
import mmap
import time
from typing import Callable, Optional

import gevent
from gunicorn.http import errors as http_errors
from gunicorn.workers import ggevent

# What reading a request body raises under gunicorn when the client framed it wrongly (a chunk
# size that is not hex, a chunk without its CRLF, bad trailers, the body cut short): gunicorn's
# parse errors, raised inside the app from wsgi.input.
BODY_ERRORS: tuple[type[Exception], ...] = (http_errors.ParseException, http_errors.NoMoreData)


class _BufferedInput(io.BytesIO):
    """A body read ahead of the gate: its bytes, then the error reading the rest raised, if any
    (a bad chunk), so the app answers it as if it had read the socket itself."""

    def __init__(self, data: bytes, error: Optional[Exception]):
        super().__init__(data)
        self._error = error

    def _checked(self, piece: bytes, size: Optional[int]) -> bytes:
        if self._error is not None and (not piece or size is None or size < 0):
            raise self._error
        return piece

    def read(self, size: Optional[int] = -1) -> bytes:
        return self._checked(super().read(size), size)

    def readline(self, size: Optional[int] = -1) -> bytes:
        return self._checked(super().readline(size), size)


def read_ahead(environ: dict, limit: Optional[int]) -> None:
    """Read the request's body now, at most `limit` + 1 bytes (the app answers 413 past
    `limit`). A declared length over the limit is left unread: the app refuses it unread."""
    length = environ.get("CONTENT_LENGTH")
    if length and limit is not None and length.isdigit() and int(length) > limit:
        return
    stream, chunks, size, error = environ["wsgi.input"], [], 0, None
    cap = None if limit is None else limit + 1
    while cap is None or size < cap:
        try:
            chunk = stream.read(65536 if cap is None else min(65536, cap - size))
        except BODY_ERRORS as exc:
            error = exc
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    environ["wsgi.input"] = _BufferedInput(b"".join(chunks), error)


class FifoGate:
    """At most `size` holders at once, first come first served. gevent's Semaphore lets a
    greenlet that releases take the slot straight back while others wait (it only schedules
    the wake-up), so one connection whose next request is already read could starve the rest.
    Here a released slot is handed to the oldest waiter.
    The gate knows which greenlets hold a slot, so one that gave its slot up (`step_aside`) and
    was killed before it got one back releases nothing on its way out."""

    def __init__(self, size: int):
        from gevent.event import Event

        self._event, self.size, self.free = Event, size, size
        self.waiters: collections.deque = collections.deque()   # (greenlet, its Event)
        self.holders: set = set()

    def holds(self) -> bool:
        return gevent.getcurrent() in self.holders

    def acquire(self) -> None:
        me = gevent.getcurrent()
        if self.free and not self.waiters:
            self.free -= 1
            self.holders.add(me)
            return
        waiting = (me, self._event())
        self.waiters.append(waiting)
        try:
            waiting[1].wait()
        except BaseException:
            if waiting[1].is_set():
                self.release()          # handed a slot while being killed: pass it on
            else:
                self.waiters.remove(waiting)
            raise

    def release(self) -> None:
        me = gevent.getcurrent()
        if me not in self.holders:
            return
        self.holders.discard(me)
        if self.waiters:
            heir, handed = self.waiters.popleft()
            self.holders.add(heir)
            handed.set()
            return
        self.free += 1

    def step_aside(self, seconds: float) -> None:
        """Sleep without a slot: a request waiting for its user's lock (held by a request in
        another slot, or another worker) lets the requests queued behind it run meanwhile,
        then queues again. Without it, two such waiters held both slots of a worker and 30
        requests behind them waited (p99 1.1 s at 64 connections)."""
        if not self.holds():
            gevent.sleep(seconds)
            return
        self.release()
        try:
            gevent.sleep(seconds)
        finally:
            self.acquire()

    def __enter__(self) -> "FifoGate":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class AppGate:
    """The app behind a FifoGate: each request's body is read before it queues and its answer
    is written after it leaves (see the module docstring for why)."""

    def __init__(self, app, size: int):
        self.app = app
        self.gate = FifoGate(size)
        self.shed: Callable[[], bool] = lambda: False   # close this connection after the answer?
        config = getattr(app, "config", None)
        self._limit = config.get("MAX_CONTENT_LENGTH") if config is not None else None

    def __call__(self, environ: dict, start_response):
        read_ahead(environ, self._limit)
        gevent.sleep(0)     # every other connection whose request is ready is read first
        with self.gate:
            result = self.app(environ, start_response)
            try:
                body = b"".join(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
        if self.shed():          # gunicorn's Response: the client reconnects, to another worker
            getattr(start_response, "__self__", None).force_close()
        return [body]


class ConnectionTable:
    """How many connections each worker of this server holds, in memory shared by the master
    and its workers (made at import, in the master, before the fork).

    The workers share one listening socket, and whichever is awake first takes a new
    connection: 16 of wrk's 16 were seen on one of two workers, the other idle for the
    connections' whole life. A worker takes a connection only while it holds no more than any
    other live worker, as nginx's workers take turns with their accept mutex. A worker leaves
    the table when it exits (and the master clears the row of one that died); a row not
    refreshed for `STALE_S` (a worker stuck in a long call) does not count, so nobody waits on it.
    """

    SLOTS = 64
    ROW = struct.Struct("qqd")    # pid, connections held, last refresh (monotonic seconds)
    STALE_S = 0.5
    REFRESH_S = 0.1

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, self.SLOTS * self.ROW.size)
        self.slot = -1

    def _row(self, n: int) -> tuple[int, int, float]:
        return self.ROW.unpack_from(self._memory, n * self.ROW.size)

    def _write(self, n: int, pid: int, held: int) -> None:
        self.ROW.pack_into(self._memory, n * self.ROW.size, pid, held, time.monotonic())

    def join(self, slot: int, pid: int) -> None:
        self.slot = slot % self.SLOTS
        self._write(self.slot, pid, 0)

    def leave(self) -> None:
        self._write(self.slot, 0, 0)

    def forget(self, pid: int) -> None:
        """The master's: clear the row of a worker that exited without leaving."""
        for n in range(self.SLOTS):
            if self._row(n)[0] == pid:
                self._write(n, 0, 0)

    def change(self, by: int) -> None:
        pid, held, _ = self._row(self.slot)
        self._write(self.slot, pid, held + by)

    def refresh(self) -> None:
        pid, held, _ = self._row(self.slot)
        self._write(self.slot, pid, held)

    def excess(self) -> int:
        """How many more connections this worker holds than the live one holding the fewest
        (0 when it holds the fewest itself)."""
        mine, now, fewest = self._row(self.slot)[1], time.monotonic(), None
        for n in range(self.SLOTS):
            pid, held, at = self._row(n)
            if pid and n != self.slot and now - at < self.STALE_S:
                fewest = held if fewest is None else min(fewest, held)
        return 0 if fewest is None else max(0, mine - fewest)

    def least(self) -> bool:
        return self.excess() == 0


CONNECTIONS = ConnectionTable()


def app_concurrency() -> int:
    """APP_CONCURRENCY: requests a gevent worker runs in the app at once (a positive integer)."""
    raw = os.environ.get("APP_CONCURRENCY", "2")
    if not (raw.isascii() and raw.isdigit() and int(raw) >= 1):
        raise RuntimeError(f"APP_CONCURRENCY={raw!r}: a positive integer is needed")
    return int(raw)


class BalancedServer(ggevent.StreamServer):
    """gevent's server, taking a connection only while CONNECTIONS says this worker holds the
    fewest. Otherwise it stops accepting and looks again after a pause that doubles up to
    `MAX_PAUSE_S` (the worker holding the fewest is accepting meanwhile), or at once when one
    of its own connections closes."""

    FIRST_PAUSE_S, MAX_PAUSE_S = 0.001, 0.02

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._recheck, self._pause = None, self.FIRST_PAUSE_S

    def _do_read(self) -> None:
        if CONNECTIONS.least():
            self._pause = self.FIRST_PAUSE_S
            super()._do_read()
            return
        self.stop_accepting()
        if self._recheck is None:
            self._recheck = self.loop.timer(self._pause)
            self._recheck.start(self._rechecked)
            self._pause = min(self.MAX_PAUSE_S, self._pause * 2)

    def _rechecked(self) -> None:
        self._recheck.close()
        self._recheck = None
        self._start_accepting_if_started()

    def do_handle(self, *args) -> None:
        CONNECTIONS.change(+1)
        super().do_handle(*args)

    def do_close(self, *args) -> None:
        CONNECTIONS.change(-1)
        super().do_close(*args)
        self._start_accepting_if_started()

    def stop(self, timeout=None) -> None:
        if self._recheck is not None:
            self._recheck.close()
            self._recheck = None
        super().stop(timeout)
