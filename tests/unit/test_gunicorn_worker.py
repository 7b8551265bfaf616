"""What gunicorn answers and logs itself, through the service's worker and logger: each error it
can find in a request is a JSON page that names the problem and quotes nothing the client sent,
and a JSON log line with what it quotes masked."""
import io
import json
import logging
import socket

import pytest
from gunicorn import util
from gunicorn.config import Config
from gunicorn.http import errors as e
from gunicorn.workers.base import Worker

from service.entrypoints.gunicorn_worker import JsonLogger, write_json_error

PHONE, ID_NUMBER = "13987654321", "110101199003071234"
SENT = f"Bad Header {PHONE} \x81{ID_NUMBER}"     # \x81: repr's escape touches the ID number

CLIENT_ERRORS = [e.InvalidRequestLine(SENT), e.InvalidRequestMethod(SENT), e.InvalidHTTPVersion(SENT),
                 e.InvalidHeader(SENT), e.InvalidHeaderName(SENT), e.ObsoleteFolding(SENT),
                 e.UnsupportedTransferCoding(SENT), e.InvalidChunkSize(SENT.encode("latin-1")),
                 e.ChunkMissingTerminator(SENT.encode("latin-1")), e.InvalidProxyLine(SENT),
                 e.ExpectationFailed(SENT), e.LimitRequestHeaders("limit request headers fields"),
                 e.LimitRequestLine(5014, 4094), e.InvalidH2CPreface(SENT.encode("latin-1"))]


class _Worker:
    """What Worker.handle_error uses of a worker, with the service's logger."""

    def __init__(self, log: JsonLogger):
        self.log = log


@pytest.fixture
def logger() -> tuple[JsonLogger, io.StringIO]:
    log = JsonLogger(Config())
    stream = io.StringIO()
    for handler in log.error_log.handlers:
        handler.setStream(stream)
    yield log, stream
    logging.captureWarnings(False)   # the logger takes this process's warnings: give them back
    for name in ("py.warnings", "gunicorn.error", "gunicorn.access"):
        logging.getLogger(name).handlers.clear()
    logging.getLogger("py.warnings").propagate = True


@pytest.mark.parametrize("exc", CLIENT_ERRORS, ids=lambda exc: type(exc).__name__)
def test_gunicorns_error_page_and_line_quote_nothing_unmasked(exc, logger, monkeypatch):
    log, stream = logger
    monkeypatch.setattr(util, "write_error", write_json_error)    # what the worker installs
    ours, theirs = socket.socketpair()
    with ours, theirs:
        Worker.handle_error(_Worker(log), None, ours, ("127.0.0.1", 1), exc)
        ours.shutdown(socket.SHUT_WR)
        answer = theirs.makefile("rb").read()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert int(head.split()[1]) >= 400 and b"Content-Type: application/json" in head
    error = json.loads(body)["error"]
    assert error["message"] and error["fields"] == {}
    for sent in ("Bad Header", PHONE, ID_NUMBER[:6], "\\x81"):
        assert sent not in error["message"], error
    line = json.loads(stream.getvalue())
    assert line["logger"] == "gunicorn.error" and line["msg"].startswith("Invalid request from ip=127.0.0.1")
    assert PHONE not in line["msg"] and ID_NUMBER not in line["msg"]


def test_a_chunk_terminator_error_reads_as_a_sentence(logger, monkeypatch):
    """gunicorn's one quote of its own ('\\r\\n') is not taken for the client's."""
    monkeypatch.setattr(util, "write_error", write_json_error)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        Worker.handle_error(_Worker(logger[0]), None, ours, ("127.0.0.1", 1), e.ChunkMissingTerminator(b"X1"))
        ours.shutdown(socket.SHUT_WR)
        body = theirs.makefile("rb").read().partition(b"\r\n\r\n")[2]
    assert json.loads(body)["error"]["message"] == "Invalid chunk terminator is not CRLF"
