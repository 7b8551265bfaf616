"""JSON log lines, with personal data masked before anything is written.

Decisions are logged by id and outcome, never by payload; `mask` is the last line of defence
for any value that might carry an ID number, a phone number or a name.
"""
from __future__ import annotations

import contextvars
import functools
import json
import logging
import re
import sys
import time
from typing import Any

# The request being served: every log line written while it runs carries its id.
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_make_record = logging.getLogRecordFactory()


def _record_with_request_id(*args, **kwargs) -> logging.LogRecord:
    """Stamp each record with the request being served when it is made, not when formatted."""
    record = _make_record(*args, **kwargs)
    record.request_id = request_id.get()
    return record


logging.setLogRecordFactory(_record_with_request_id)

# Digit runs are bounded by non-digits only (not \b): next to a letter or a Chinese character
# (u13812345678, 身份证110101199003071234) \b does not hold and the number went through.
_ID_NUMBER = re.compile(r"(?<!\d)(\d{6})\d{8}(\d{3}[\dXx])(?![\dXx])")   # 18-digit PRC ID
_OLD_ID_NUMBER = re.compile(r"(?<!\d)(\d{6})\d{6}(\d{3})(?!\d)")          # 15-digit PRC ID
# mainland mobile, with or without +86 / 86, with or without - or space between the groups
_PHONE = re.compile(r"(?<!\d)((?:\+|00)?86[ -]?)?(1[3-9]\d)[ -]?\d{4}[ -]?(\d{4})(?!\d)")
_NAME_KEYS = {"name", "full_name", "real_name", "applicant_name", "customer_name", "contact_name",
              "holder_name", "user_name"}
# A piece of text every match of the patterns holds: both ID numbers are runs of 15 digits or
# more, a phone number ends in 4 digits, maybe a space or a dash, and 4 digits. A text without
# the piece cannot match, so its pattern is not run (most logged values hold no digits at all).
_ID_PIECE = re.compile(r"\d{15}")
_PHONE_PIECE = re.compile(r"\d{4}[ -]?\d{4}")


def mask(text: str) -> str:
    if _ID_PIECE.search(text) is not None:
        text = _ID_NUMBER.sub(_masked_id, text)
        text = _OLD_ID_NUMBER.sub(_masked_old_id, text)
    if _PHONE_PIECE.search(text) is not None:
        text = _PHONE.sub(_masked_phone, text)
    return text


# Functions, not templates like r"\1***\2": re parses a template at every sub() call.
def _masked_id(m: re.Match) -> str:
    return m[1] + "********" + m[2]


def _masked_old_id(m: re.Match) -> str:
    return m[1] + "******" + m[2]


def _masked_phone(m: re.Match) -> str:
    return (m[1] or "") + m[2] + "****" + m[3]


def _mask_value(key: str, value: Any) -> Any:
    """A name field keeps its first character (张三 -> 张*); nested values are masked too."""
    if key in _NAME_KEYS and isinstance(value, str) and value:
        return value[0] + "*" * (len(value) - 1)
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: _mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mask_value(key, v) for v in value]
    return value


_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)   # json.dumps makes one per call


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
        for key, value in getattr(record, "fields", {}).items():
            doc[key] = _mask_value(key, value)
        if record.exc_info:
            doc["exc"] = mask(self.formatException(record.exc_info))
        return _ENCODER.encode(doc)


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
