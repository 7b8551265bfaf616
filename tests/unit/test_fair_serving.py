"""The gevent worker's fairness parts on their own: the gate lets requests in first come first
served and hands a freed slot on, a body read ahead of it is the body the app would have read
(errors included), and the connection table says which worker should take the next connection."""
import io

import gevent
import pytest
from gunicorn.http import errors as http_errors

from service.entrypoints import fair_serving
from service.entrypoints.fair_serving import AppGate, ConnectionTable, FifoGate, read_ahead


def test_the_gate_lets_waiters_in_in_order_and_a_releaser_cannot_take_its_slot_back():
    gate, order = FifoGate(1), []

    def visit(name: str, hold: float, again: bool = False) -> None:
        with gate:
            order.append(name)
            gevent.sleep(hold)
        if again:                 # straight back in while others wait: must queue behind them
            with gate:
                order.append(name + " again")

    first = gevent.spawn(visit, "a", 0.02, True)
    gevent.sleep(0)
    others = [gevent.spawn(visit, name, 0) for name in "bcd"]
    gevent.joinall([first, *others], timeout=5, raise_error=True)
    assert order == ["a", "b", "c", "d", "a again"]
    assert gate.free == 1 and not gate.waiters


def test_a_waiter_killed_leaves_the_queue_and_one_killed_at_the_handover_passes_the_slot_on():
    gate, entered = FifoGate(1), []

    def visit(name: str) -> None:
        with gate:
            entered.append(name)

    gate.acquire()
    killed = gevent.spawn(visit, "killed")
    gevent.sleep(0)
    killed.kill()
    assert not gate.waiters
    handed, behind = gevent.spawn(visit, "handed"), gevent.spawn(visit, "behind")
    gevent.sleep(0)
    gate.release()                 # handed the slot; killed before or after it runs
    handed.kill()
    behind.join(timeout=2)
    assert "behind" in entered and "killed" not in entered
    assert gate.free == 1 and not gate.waiters


def test_at_most_size_requests_are_inside_at_once():
    gate, inside, most = FifoGate(2), [0], [0]

    def request() -> None:
        with gate:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
            gevent.sleep(0.001)
            inside[0] -= 1

    gevent.joinall([gevent.spawn(request) for _ in range(20)], timeout=5, raise_error=True)
    assert most[0] == 2


class _Stream:
    """gunicorn's wsgi.input: pieces, then an error (or the end)."""

    def __init__(self, pieces: list[bytes], error: Exception | None = None):
        self.pieces, self.error, self.reads = list(pieces), error, 0

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        if self.pieces:
            piece = self.pieces.pop(0)
            if 0 <= size < len(piece):
                piece, rest = piece[:size], piece[size:]
                self.pieces.insert(0, rest)
            return piece
        if self.error is not None:
            raise self.error
        return b""


def test_a_body_read_ahead_is_the_whole_body_and_a_framing_error_comes_after_its_bytes():
    environ = {"wsgi.input": _Stream([b'{"a":', b" 1}"])}
    read_ahead(environ, 1000)
    assert environ["wsgi.input"].read() == b'{"a": 1}'

    bad = http_errors.InvalidChunkSize(b"zz")
    environ = {"wsgi.input": _Stream([b'{"a":'], bad)}
    read_ahead(environ, 1000)
    body = environ["wsgi.input"]
    assert body.read(3) == b'{"a'
    assert body.read(65536) == b'":'
    with pytest.raises(http_errors.InvalidChunkSize):
        body.read(65536)


def test_a_body_is_read_ahead_to_one_byte_past_the_limit_and_a_declared_overlong_one_not_at_all():
    stream = _Stream([b"x" * 40, b"y" * 40, b"z" * 40])
    environ = {"wsgi.input": stream}
    read_ahead(environ, 50)                            # enough for the app to see it is too long
    assert len(environ["wsgi.input"].read()) == 51
    assert stream.pieces == [b"y" * 29, b"z" * 40]     # the rest is left to the socket

    untouched = _Stream([b"x" * 100])
    environ = {"wsgi.input": untouched, "CONTENT_LENGTH": "100"}
    read_ahead(environ, 50)
    assert environ["wsgi.input"] is untouched and untouched.reads == 0


def test_the_gate_answers_what_the_app_answered_and_closes_it():
    closed = []

    class Body(list):
        def close(self):
            closed.append(True)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body([b"he", b"llo ", environ["wsgi.input"].read()])

    statuses = []
    answer = AppGate(app, 1)({"wsgi.input": io.BytesIO(b"you")}, lambda s, h: statuses.append(s))
    assert answer == [b"hello you"] and statuses == ["200 OK"] and closed == [True]


def _two_workers(monkeypatch) -> ConnectionTable:
    table = ConnectionTable()
    table.join(2, 2002)
    table.change(+3)          # the other worker (row 2) holds 3
    table.join(1, 1001)       # this one (row 1) holds none
    return table


def test_a_worker_takes_connections_while_it_holds_the_fewest(monkeypatch):
    table = _two_workers(monkeypatch)
    assert table.least() and table.excess() == 0
    for _ in range(3):
        table.change(+1)
    assert table.least()                     # 3 and 3
    table.change(+1)
    assert not table.least() and table.excess() == 1
    table.change(+1)
    assert table.excess() == 2               # sheds one after its next answer
    table.change(-2)
    assert table.least()


def test_a_worker_that_left_died_or_stopped_refreshing_is_not_waited_for(monkeypatch):
    table = _two_workers(monkeypatch)
    for _ in range(5):
        table.change(+1)
    assert not table.least()
    table.forget(2002)                       # the master, after that worker died
    assert table.least()

    table = _two_workers(monkeypatch)
    for _ in range(5):
        table.change(+1)
    now = fair_serving.time.monotonic()
    monkeypatch.setattr(fair_serving.time, "monotonic", lambda: now + ConnectionTable.STALE_S + 0.1)
    table.refresh()                          # this worker refreshes, the other did not
    assert table.least()


def test_app_concurrency_is_a_positive_integer(monkeypatch):
    monkeypatch.setenv("APP_CONCURRENCY", "3")
    assert fair_serving.app_concurrency() == 3
    for bad in ("0", "-1", "٣", "2.5", ""):
        monkeypatch.setenv("APP_CONCURRENCY", bad)
        with pytest.raises(RuntimeError, match="APP_CONCURRENCY"):
            fair_serving.app_concurrency()


def test_a_request_waiting_for_its_users_lock_lets_the_queue_behind_it_run():
    gate, events = FifoGate(1), []

    def waiter() -> None:
        with gate:
            events.append("waiter in")
            gate.step_aside(0.05)          # its user's lock is held elsewhere
            events.append("waiter back")

    def other(name: str) -> None:
        with gate:
            events.append(name)

    first = gevent.spawn(waiter)
    gevent.sleep(0)
    others = [gevent.spawn(other, name) for name in ("b", "c")]
    gevent.joinall([first, *others], timeout=5, raise_error=True)
    assert events == ["waiter in", "b", "c", "waiter back"]
    assert gate.free == 1 and not gate.holders


def test_a_waiter_killed_while_it_queues_again_releases_nothing():
    gate = FifoGate(1)
    entered = []

    def waiter() -> None:
        with gate:
            gate.step_aside(0.01)

    def holder() -> None:
        with gate:
            entered.append("holder")
            gevent.sleep(0.05)

    w = gevent.spawn(waiter)
    gevent.sleep(0)
    h = gevent.spawn(holder)
    gevent.sleep(0.02)                     # the waiter is queued again behind the holder
    w.kill()
    h.join(timeout=2)
    assert entered == ["holder"] and gate.free == 1 and not gate.waiters and not gate.holders


def test_outside_the_gate_stepping_aside_is_a_plain_sleep():
    gate = FifoGate(1)
    gate.step_aside(0)
    assert gate.free == 1 and not gate.holders
