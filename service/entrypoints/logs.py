"""JSON log lines, with personal data masked before anything is written.

Decisions are logged by id and outcome, never by payload; `mask` is the last line of defence
for any value that might carry an ID number, a phone number or a name.
"""
from __future__ import annotations

import contextvars
import functools
import json
import logging
import sys
import time

# the masking rules are the domain's: erasure receipts follow them too
from service.domain.privacy import mask
from service.domain.privacy import mask_value as _mask_value
# the trace of the request being served: the decision-log records it writes carry it too
from service.usecases.request_trace import trace_id

# The request being served: every log line written while it runs carries its id and its trace id.
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_make_record = logging.getLogRecordFactory()


def _record_with_request_id(*args, **kwargs) -> logging.LogRecord:
    """Stamp each record with the request being served when it is made, not when formatted."""
    record = _make_record(*args, **kwargs)
    record.request_id = request_id.get()
    record.trace_id = trace_id.get()
    return record


logging.setLogRecordFactory(_record_with_request_id)

_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)   # json.dumps makes one per call


# Fields whose values come again line after line (a few methods, routes, products, outcomes,
# the live rules versions): each value is masked once, then looked up. Masking a rules version
# (64 hex digits, whose digit runs the patterns must look at) cost a third of the line.
_REPEATING = frozenset({"method", "route", "product", "outcome", "rules_version", "arm"})
_MASKED_LIMIT = 256   # the method is any token a client sends: the memo is emptied when full
_masked: dict[tuple[str, str], str] = {}


def _field_value(key: str, value):
    """`value` as the line shows it: masked (privacy.mask_value), from the memo if it repeats."""
    if key not in _REPEATING or type(value) is not str:
        return _mask_value(key, value)
    found = _masked.get((key, value))
    if found is None:
        if len(_masked) >= _MASKED_LIMIT:
            _masked.clear()
        found = _masked[(key, value)] = _mask_value(key, value)
    return found


@functools.lru_cache(maxsize=4)
def _timestamp(second: int) -> str:
    """The ts of a line: the lines of one second share it, so it is formatted once."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) + "Z"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"ts": _timestamp(int(record.created)),
               "level": record.levelname, "logger": record.name, "msg": mask(record.getMessage())}
        rid = getattr(record, "request_id", None)
        if rid:
            doc["request_id"] = mask(rid)   # a client chooses it: it may be a phone number
        tid = getattr(record, "trace_id", None)
        if tid:
            # not masked again: trace_context lets no id in that masking would change (one sent
            # with a phone number in it starts a new trace), and the line names the trace its
            # response and record name
            doc["trace_id"] = tid
        for key, value in getattr(record, "fields", {}).items():
            doc[key] = _field_value(key, value)
        if record.exc_info:
            doc["exc"] = mask(self.formatException(record.exc_info))
        return _ENCODER.encode(doc)


def configure(level: str = "INFO") -> None:
    # No line of this service says where in the code it was logged, or which thread or process
    # wrote it (JsonFormatter's fields), so logging need not look those up for every record:
    # finding the caller walked the request's whole stack for every line (the logging HOWTO's
    # "Optimization").
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
