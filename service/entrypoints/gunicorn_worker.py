"""The gunicorn worker the service runs under: gevent, JSON error pages and log lines, no
`Server: gunicorn`.

Why gevent: a sync worker reads one request at a time, so two clients that
send a header line every few seconds held both workers and /healthz timed out for everyone.
A gevent worker reads each connection in its own greenlet, so slow clients cost one socket
each (up to `worker_connections`). durable_rules evaluates under one process-wide lock
(service.adapters.rule_engine) with no I/O inside it, so no greenlet ever switches while holding it.

Fair serving (service/entrypoints/fair_serving.py): requests go through the app first come first
served, at most APP_CONCURRENCY at a time per worker, and connections spread evenly over the
workers.

gunicorn answers some requests itself (a request line too long, a malformed header, a bad
chunk) with an HTML page; every error of this service is `{"error": {...}}` (API.md), so the
worker replaces gunicorn's error writer with a JSON one, and the name it sends in `Server`.
Those pages say what is wrong, never what the client sent: gunicorn quotes the bad header or
request line in its message, and an answer must not echo it (it may hold an ID number).

gunicorn's own log lines (its error log: "Invalid request from ip=…: Invalid HTTP header name:
'…'", start-up, worker exits; its access log when asked for) are plain text, and some quote the
client. `JsonLogger`, docker/gunicorn.conf.py's `logger_class`, writes them through the
service's masking JsonFormatter like every other line.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import re
import sys
import warnings
from datetime import timedelta
from typing import Any

import gevent
from gunicorn import glogging, util
from gunicorn.http import errors as http_errors
from gunicorn.http import wsgi as gunicorn_wsgi
from gunicorn.workers import ggevent
from gunicorn.workers.ggevent import GeventWorker
from gunicorn.workers.sync import SyncWorker

from service.entrypoints.fair_serving import BODY_ERRORS, CONNECTIONS, AppGate, BalancedServer, app_concurrency
from service.entrypoints.logs import JsonFormatter, mask

SERVER_NAME = "loan-decide"

# gunicorn's messages describe the problem, then quote what the client sent with repr ('…',
# "…", b'…'). The description is all a client needs; the quote is the client's own bytes.
_CLIENT_QUOTE = re.compile(r"""[:\s]*b?['"]""")
_CRLF_QUOTED = "'\\r\\n'"   # the one quote of gunicorn's own: "chunk terminator is not '\r\n'"


def client_error_text(mesg: str, default: str) -> str:
    """gunicorn's description of a client's error, without the client's bytes it quotes."""
    text = _CLIENT_QUOTE.split(mesg.replace(_CRLF_QUOTED, "CRLF"), maxsplit=1)[0].strip()
    return text or default


def body_problem(exc: Exception) -> str:
    """What is wrong with a body gunicorn could not read (one of BODY_ERRORS), quoting none of it."""
    if isinstance(exc, http_errors.NoMoreData):
        return "the body ended before its last chunk"
    return client_error_text(str(exc), "the chunked body is malformed")


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's `util.write_error`, in the service's error shape, echoing nothing the client sent."""
    code = reason.lower().replace(" ", "_") or "error"
    message = client_error_text(mesg, reason) if mesg else reason
    body = json.dumps({"error": {"code": code, "message": message, "fields": {}}},
                      ensure_ascii=True).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


def patch_early() -> None:
    """Monkey-patch for gevent before the app is built (preload builds it in the master).

    The worker patches again after the fork; patching only there leaves what was made before
    it (logging's locks, the Redis pool's, ssl) unpatched, and gevent warns at every worker
    start. Only for the gevent worker.

    Signals, `os` (fork, waitpid) and subprocess stay the real ones in the master, patched in
    each worker only: gunicorn's arbiter waits on a queue its SIGCHLD handler fills, and
    under gevent's signal patch that handler runs only when gevent's hub runs, which the
    master's loop never lets it. A worker that exited (max-requests recycling, a crash) was
    then never reaped nor replaced: after MAX_REQUESTS requests per worker the service
    stopped answering (found by bench/http.sh; tests/e2e/test_worker_recycling.py).
    """
    from gevent import monkey

    if not monkey.is_module_patched("socket"):
        monkey.patch_all(signal=False, os=False, subprocess=False)
        # the worker's patch_all then adds those three, as intended: not worth a warning a start
        warnings.filterwarnings("ignore", message="Patching more than once", category=monkey.MonkeyPatchWarning)
        atexit.register(_quiet_logging_teardown)


def _quiet_logging_teardown() -> None:
    """At the master's exit: flush and close the log handlers, then forget them, before the
    interpreter's teardown collects them. Collected later, each takes logging's lock from a
    greenlet being finalised and prints "greenlet is being finalized" (the workers avoid it
    by leaving with os._exit). Registered after logging's own exit hook, so it runs first."""
    logging.shutdown()
    logging._handlerList.clear()   # the weakrefs whose callbacks would take the lock


def install() -> None:
    """Swap gunicorn's HTML error writer and server name, in this (worker) process."""
    util.write_error = write_json_error
    gunicorn_wsgi.SERVER = SERVER_NAME


class JsonGeventWorker(GeventWorker):
    """The default worker: slow clients do not hold the process, and requests go through the
    app in the order they were read (see the module docstring)."""

    def init_process(self) -> None:
        install()
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.wsgi = AppGate(self.wsgi, app_concurrency())
        # a worker holding 2 more connections than another (after the other was recycled, say)
        # closes one after its answer, so the connections spread again
        self.wsgi.shed = lambda: CONNECTIONS.excess() >= 2
        services = getattr(self.wsgi.app, "extensions", {}).get("services")
        if services is not None:          # a request waiting for its user's lock gives its slot up
            services.work.wait = self.wsgi.gate.step_aside

    def run(self) -> None:
        """Serve until told to stop (see _serve_then_exit), taking new connections only while
        this worker holds no more than the others (ConnectionTable)."""
        CONNECTIONS.join(self.age, self.pid)
        refresh = gevent.get_hub().loop.timer(0, CONNECTIONS.REFRESH_S)
        refresh.start(CONNECTIONS.refresh)
        ggevent.StreamServer = BalancedServer
        self._serve_then_exit()

    def _serve_then_exit(self) -> None:
        """Serve until told to stop, then leave without the interpreter's teardown: under
        gevent it collects logging handlers inside finalised greenlets and prints
        "greenlet is being finalized" tracebacks on every clean stop. Nothing is lost: the
        requests are finished and the logs flushed here."""
        super().run()
        CONNECTIONS.leave()
        self.log.info("Worker exiting (pid: %s)", self.pid)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


class JsonSyncWorker(SyncWorker):
    """The sync worker with the same error pages (WORKER_CLASS=sync, e.g. behind a proxy)."""

    def init_process(self) -> None:
        install()
        super().init_process()


# -- gunicorn's own log lines ----------------------------------------------------------------------
# repr() writes a byte it cannot print as \xNN (\uNNNN, \UNNNNNNNN): the escape's last hex digit
# then touches the digits the client sent after it ("\x81110101199003071234", the tail of 证 in
# a header name gunicorn decoded as latin-1), and the ID number is no longer a run of 18 digits.
_REPR_ESCAPE = re.compile(r"(\\x[0-9a-fA-F]{2}|\\u[0-9a-fA-F]{4}|\\U[0-9a-fA-F]{8})")


def _mask_repr(text: str) -> str:
    """`mask`, with each repr escape a boundary: the text between escapes is masked piece by piece."""
    if _REPR_ESCAPE.search(text) is None:
        return mask(text)
    pieces = _REPR_ESCAPE.split(text)   # odd indexes: the escapes themselves
    return "".join(piece if n % 2 else mask(piece) for n, piece in enumerate(pieces))


class _GunicornFormatter(JsonFormatter):
    """The service's JSON line, for text gunicorn wrote with repr() of what a client sent."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if _REPR_ESCAPE.search(message) is not None:
            record = logging.makeLogRecord({**record.__dict__, "msg": _mask_repr(message), "args": None})
        return super().format(record)

    def formatException(self, ei) -> str:
        return _mask_repr(super().formatException(ei))


class _JsonAtoms(glogging.SafeAtoms):
    """The access log's atoms, escaped for a JSON string. gunicorn's SafeAtoms escapes only `"`:
    a backslash or a control character in a path made the line invalid JSON. None is null."""

    def __init__(self, atoms: dict[str, Any]):
        dict.__init__(self)
        for key, value in atoms.items():
            if isinstance(value, str):
                self[key] = json.dumps(value)[1:-1]
            else:
                self[key] = "null" if value is None else value


class JsonLogger(glogging.Logger):
    """gunicorn's error and access logs as the service's JSON lines, masked like every other.

    Every gunicorn handler (stderr, a file, syslog) formats through the masking formatter. An
    access line is the `access_log_format` (a JSON object of atoms) read back as the line's
    fields, so each is masked like a field of the app's lines (the path holds user ids); a
    format that is not a JSON object is the line's message, masked too.
    """

    def setup(self, cfg) -> None:
        super().setup(cfg)
        formatter = _GunicornFormatter()
        handlers = [h for log in (self.error_log, self.access_log) for h in log.handlers
                    if getattr(h, "_gunicorn", False)]
        for handler in handlers:
            handler.setFormatter(formatter)
        self._capture_warnings()

    def _capture_warnings(self) -> None:
        """Python's warnings (gevent's at the patch, before the app configures logging) go to the
        error log's handlers too: lines on stderr like the rest, JSON and masked."""
        logging.captureWarnings(True)
        py_warnings = logging.getLogger("py.warnings")
        py_warnings.handlers[:] = [h for h in self.error_log.handlers if getattr(h, "_gunicorn", False)]
        py_warnings.propagate = False

    def access(self, resp, req, environ, request_time: timedelta) -> None:
        if not self.access_log_enabled:
            return
        try:
            line = self.cfg.access_log_format % _JsonAtoms(self.atoms(resp, req, environ, request_time))
            try:
                fields = json.loads(line)
            except ValueError:
                fields = None
            if isinstance(fields, dict):
                self.access_log.info("access", extra={"fields": fields})
            else:
                self.access_log.info("%s", line)
        except Exception:   # as gunicorn's own: a broken format must not fail the request
            self.exception("access log line failed")
