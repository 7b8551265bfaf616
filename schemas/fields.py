"""Strict JSON field types.

durable_rules compares a number sent as a string as text ("100000" < 30000 is true) and
treats 0 as false, so the contract accepts only real JSON numbers and booleans; marshmallow's
own fields would coerce "5000" or 1 silently.

schemas/fastload.py has a plain-Python loader for each of these classes (its compiled load of
valid documents); a change here needs the same change there, and tests/unit/test_fastload.py
fails until both agree.
"""
from __future__ import annotations

import datetime as dt
import math
import numbers
from typing import Any

from marshmallow import fields


class StrictBoolean(fields.Field):
    default_error_messages = {"invalid": "Not a valid boolean: use JSON true or false."}

    def _deserialize(self, value: Any, attr, data, **kwargs) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class StrictNumber(fields.Field):
    """A JSON number (int or float, never a string or boolean), finite."""

    default_error_messages = {
        "invalid": "Not a valid number: send a JSON number, not a string.",
        "integer": "Not a valid integer.",
    }

    def __init__(self, *, integer: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.integer = integer

    def _deserialize(self, value: Any, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise self.make_error("invalid")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.make_error("invalid")
        if self.integer:
            if isinstance(value, float):
                if not value.is_integer():
                    raise self.make_error("integer")
                value = int(value)
        return value


class StrictDate(fields.Field):
    """An ISO 8601 calendar date, `YYYY-MM-DD`."""

    default_error_messages = {"invalid": "Not a valid date: use YYYY-MM-DD."}

    def _deserialize(self, value: Any, attr, data, **kwargs) -> dt.date:
        if not isinstance(value, str) or len(value) != 10:
            raise self.make_error("invalid")
        try:
            return dt.date.fromisoformat(value)
        except ValueError as exc:
            raise self.make_error("invalid") from exc

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else value.isoformat()
