"""JSON log lines, with personal data masked before anything is written.

Decisions are logged by id and outcome, never by payload; `mask` is the last line of defence
for any value that might carry an ID number, a phone number or a name.
"""
from __future__ import annotations

import contextvars
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


def mask(text: str) -> str:
    text = _ID_NUMBER.sub(r"\1********\2", text)
    text = _OLD_ID_NUMBER.sub(r"\1******\2", text)
    return _PHONE.sub(lambda m: (m[1] or "") + m[2] + "****" + m[3], text)


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


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
               "level": record.levelname, "logger": record.name, "msg": mask(record.getMessage())}
        rid = getattr(record, "request_id", None)
        if rid:
            doc["request_id"] = rid
        for key, value in getattr(record, "fields", {}).items():
            doc[key] = _mask_value(key, value)
        if record.exc_info:
            doc["exc"] = mask(self.formatException(record.exc_info))
        return json.dumps(doc, ensure_ascii=False, default=str)


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
