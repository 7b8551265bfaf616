"""W3C Trace Context's `traceparent` header (https://www.w3.org/TR/trace-context/): read, started, written.

Every request reads the header and every response writes one, so this stays small and cheap:
a length check and one regex fullmatch over at most 55 characters, whatever a client sends (a
huge header is never scanned past its 56th character). It knows no Flask, no OpenTelemetry and
no domain: the HTTP app calls it when OpenTelemetry is off, and hands the parsed parent to the
OpenTelemetry adapter when it is on.

A header that does not parse is not the client's error: the request starts a new trace (the
spec's "restart the trace"), it is never refused.

The trace id is written unmasked into every log line of the request, so that a line names the
same trace as its response and its record. A client chooses it, and 32 hex digits can hold a
phone or ID number: a trace id that the log's masking would change is treated as invalid (a
new trace), and none is ever generated (about one random id in a thousand would be).
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Optional

from service.domain.privacy import mask

# version 00: exactly version-trace_id-parent_id-flags, 55 characters, lowercase hex
_VERSION_00 = re.compile(r"(00)-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
# a later version: the same first 55 characters, then the end or a dash (the spec's rules for
# versions this parser does not know: parse what version 00 defines, ignore what follows)
_LATER_VERSION = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_LENGTH_00 = 55
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
SAMPLED, NOT_SAMPLED = "01", "00"


@dataclass(frozen=True, slots=True)
class TraceParent:
    """A valid incoming `traceparent`: the trace, the caller's span in it, the caller's flags."""

    trace_id: str    # 32 lowercase hex digits, not all zero
    parent_id: str   # 16 lowercase hex digits, not all zero
    flags: str       # 2 lowercase hex digits

    @property
    def sampled(self) -> bool:
        return int(self.flags, 16) & 1 == 1


@dataclass(frozen=True, slots=True)
class TraceContext:
    """The trace a request belongs to and the request's own span in it: what the response's
    `traceparent`, the request's log lines and the records it writes say."""

    trace_id: str
    span_id: str
    flags: str

    def header(self) -> str:
        """The response's `traceparent`: always version 00, the only version this writes."""
        return format_traceparent(self.trace_id, self.span_id, self.flags)


def parse(header: Optional[str]) -> Optional[TraceParent]:
    """The parent a `traceparent` header names, or None when it is absent or invalid (never raises)."""
    if not header or len(header) < _LENGTH_00:
        return None
    if header.startswith("00"):
        match = _VERSION_00.fullmatch(header) if len(header) == _LENGTH_00 else None
        flags = match[4] if match else ""
    else:
        if header.startswith("ff") or (len(header) > _LENGTH_00 and header[_LENGTH_00] != "-"):
            return None
        match = _LATER_VERSION.fullmatch(header, 0, _LENGTH_00)
        # of a later version's flags only the sampled bit means what it means in version 00
        flags = (SAMPLED if int(match[4], 16) & 1 else NOT_SAMPLED) if match else ""
    if match is None or match[2] == _ZERO_TRACE or match[3] == _ZERO_SPAN or not loggable(match[2]):
        return None
    return TraceParent(match[2], match[3], flags)


def continued(parent: Optional[TraceParent]) -> TraceContext:
    """This request's context without a tracer: the parent's trace and flags with a new span
    id, or a new trace when there is no valid parent (not sampled: nothing records its spans)."""
    if parent is None:
        return TraceContext(new_trace_id(), new_span_id(), NOT_SAMPLED)
    return TraceContext(parent.trace_id, new_span_id(), parent.flags)


def format_traceparent(trace_id: str, span_id: str, flags: str) -> str:
    return f"00-{trace_id}-{span_id}-{flags}"


# Ids need to be unique, not secret: `random` (as OpenTelemetry's own id generator; reseeded in
# every forked worker) costs less than the system's entropy on every request.
def new_trace_id() -> str:
    while True:
        value = random.getrandbits(128)
        if value and loggable(text := f"{value:032x}"):
            return text


def loggable(trace_id: str) -> bool:
    """True when the log's masking leaves the id as it is (it holds nothing like a phone or ID number)."""
    return mask(trace_id) == trace_id


def new_span_id() -> str:
    while True:
        value = random.getrandbits(64)
        if value:
            return f"{value:016x}"
