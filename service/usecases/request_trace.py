"""The trace of the request being served, for what the request writes.

A door that serves a request in a W3C trace (the HTTP app) sets `trace_id` for as long as the
request runs; every decision-log record written meanwhile carries it (log_records), as every
JSON log line does (service.entrypoints.logs reads it too), so a trace in a tracing system, the
request's log lines and its records can be found from one another. Outside a request (a
replay, a rebuild, a simulation, the CLI) it is None and records are written without it.

A context variable, as the log's request id: a use case need not pass it through every call
to reach the record it writes, and each request (thread or greenlet) sees its own.
"""
from __future__ import annotations

import contextvars
from typing import Optional

trace_id: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("trace_id", default=None)
