"""The `traceparent` header (service/entrypoints/trace_context.py): what the W3C Trace Context
spec accepts is kept, anything else is None (a new trace), and nothing a client sends raises."""
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.privacy import mask
from service.entrypoints import trace_context
from service.entrypoints.trace_context import TraceParent, parse

TRACE_ID, PARENT_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
VALID = f"00-{TRACE_ID}-{PARENT_ID}-01"
_WRITTEN = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


@pytest.mark.parametrize("header, flags", [
    (VALID, "01"),
    (f"00-{TRACE_ID}-{PARENT_ID}-00", "00"),
    (f"00-{TRACE_ID}-{PARENT_ID}-09", "09"),   # flags other than sampled are kept as given
])
def test_a_valid_version_00_header_is_kept(header, flags):
    assert parse(header) == TraceParent(TRACE_ID, PARENT_ID, flags)


@pytest.mark.parametrize("header", [
    None, "", "garbage",
    VALID.upper(),                                         # hex is lowercase only
    f"00-{TRACE_ID.upper()}-{PARENT_ID}-01",
    f"00-{'0' * 32}-{PARENT_ID}-01",                       # all-zero trace id
    f"00-{TRACE_ID}-{'0' * 16}-01",                        # all-zero parent id
    f"ff-{TRACE_ID}-{PARENT_ID}-01",                       # version ff is invalid
    f"ff-{TRACE_ID}-{PARENT_ID}-01-more",
    VALID[:-1],                                            # 54 characters
    VALID + "0",                                           # version 00 is exactly 55
    VALID + "-",                                           # ... not even a dash may follow it
    f"00-{TRACE_ID}-{PARENT_ID}-0g",                       # non-hex flags
    f"00-{TRACE_ID[:-1]}g-{PARENT_ID}-01",                 # non-hex trace id
    f"00_{TRACE_ID}_{PARENT_ID}_01",                       # other separators
    f"00-{TRACE_ID}{PARENT_ID}-01xx",                      # a separator missing
    f" {VALID}",                                           # a leading space shifts every field
    f"0-{TRACE_ID}-{PARENT_ID}-01x",
    f"00-{TRACE_ID[:31]}٣-{PARENT_ID}-01",                 # a Unicode digit is not hex
    f"00-{TRACE_ID}-{PARENT_ID}-01,00-{TRACE_ID}-{PARENT_ID}-01",   # two headers folded into one
    f"cc-{TRACE_ID}-{PARENT_ID}-01x",                      # a later version: 55th char not a dash
    f"cc-{TRACE_ID}-{PARENT_ID}",                          # ... and never shorter than 55
    f"cc-{'0' * 32}-{PARENT_ID}-01",
    f"cc-{TRACE_ID}-{PARENT_ID}-0G-what-follows",
])
def test_an_invalid_or_absent_header_is_none(header):
    assert parse(header) is None


@pytest.mark.parametrize("header, flags", [
    (f"cc-{TRACE_ID}-{PARENT_ID}-01", "01"),
    (f"01-{TRACE_ID}-{PARENT_ID}-01-what-the-next-version-adds", "01"),
    (f"cc-{TRACE_ID}-{PARENT_ID}-03-x", "01"),     # of a later version's flags, the sampled bit
    (f"cc-{TRACE_ID}-{PARENT_ID}-fe-x", "00"),
])
def test_a_later_version_gives_what_version_00_defines(header, flags):
    """The spec's rules for a version the parser does not know: the first 55 characters as
    version 00's, then the end or a dash, whatever follows it."""
    assert parse(header) == TraceParent(TRACE_ID, PARENT_ID, flags)


def test_a_huge_header_is_refused_without_scanning_it():
    assert parse(VALID + "-" + "x" * 10_000_000) is None
    assert parse("cc" + VALID[2:] + "-" + "x" * 10_000_000) == TraceParent(TRACE_ID, PARENT_ID, "01")


def test_a_valid_parent_is_continued_with_a_new_span():
    parent = parse(VALID)
    context = trace_context.continued(parent)
    assert context.trace_id == TRACE_ID and context.flags == "01"
    assert context.span_id != PARENT_ID and re.fullmatch(r"[0-9a-f]{16}", context.span_id)
    assert context.header() == f"00-{TRACE_ID}-{context.span_id}-01"
    assert trace_context.continued(parent).span_id != context.span_id


def test_no_parent_starts_a_new_unsampled_trace():
    first, second = trace_context.continued(None), trace_context.continued(None)
    assert first.trace_id != second.trace_id
    assert _WRITTEN.fullmatch(first.header()) and first.flags == "00"
    assert parse(first.header()) == TraceParent(first.trace_id, first.span_id, "00")


@settings(max_examples=500, deadline=None)
@given(st.one_of(
    st.text(),
    st.text(alphabet="0123456789abcdefABCDEF-", min_size=50, max_size=70),
    st.builds(lambda a, b: a + b, st.sampled_from([VALID, "cc" + VALID[2:], VALID[:40]]), st.text()),
    st.binary().map(lambda b: b.decode("latin-1")),   # what WSGI gives for bytes on the wire
))
def test_garbage_never_raises_and_is_none_or_a_valid_parent(header):
    parent = parse(header)
    if parent is not None:
        assert re.fullmatch(r"[0-9a-f]{32}", parent.trace_id) and parent.trace_id != "0" * 32
        assert re.fullmatch(r"[0-9a-f]{16}", parent.parent_id) and parent.parent_id != "0" * 16
        assert re.fullmatch(r"[0-9a-f]{2}", parent.flags)
        assert header[3:35] == parent.trace_id and header[36:52] == parent.parent_id
    assert _WRITTEN.fullmatch(trace_context.continued(parent).header())


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789abcdef", min_size=32, max_size=32),
       st.text(alphabet="0123456789abcdef", min_size=16, max_size=16),
       st.text(alphabet="0123456789abcdef", min_size=2, max_size=2))
def test_every_well_formed_header_round_trips(trace_id, parent_id, flags):
    header = trace_context.format_traceparent(trace_id, parent_id, flags)
    refused = "0" * 32 == trace_id or "0" * 16 == parent_id or mask(trace_id) != trace_id
    assert parse(header) == (None if refused else TraceParent(trace_id, parent_id, flags))


# a phone number (138...) and an 18-digit ID number inside otherwise valid trace ids
@pytest.mark.parametrize("trace_id", ["4bf92f3577b34da6a3cea13812345678", "4bf92f3577b34a110101199001011234"])
def test_a_trace_id_the_log_would_mask_starts_a_new_trace(trace_id):
    assert len(trace_id) == 32 and mask(trace_id) != trace_id
    assert parse(f"00-{trace_id}-{PARENT_ID}-01") is None
    assert parse(f"01-{trace_id}-{PARENT_ID}-01-later") is None


def test_no_generated_trace_id_looks_like_a_phone_number(monkeypatch):
    phone_like, plain = int("4bf92f3577b34da6a3cea13812345678", 16), int(TRACE_ID, 16)
    drawn = iter([phone_like, phone_like, plain])
    monkeypatch.setattr(trace_context.random, "getrandbits", lambda bits: next(drawn))
    assert trace_context.new_trace_id() == TRACE_ID
