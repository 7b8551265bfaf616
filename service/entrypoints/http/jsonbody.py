"""Parse a request body as strict JSON: the problems a hostile client can send become 400s.

`json.loads` alone accepts duplicate keys (the last one silently wins), lone UTF-16
surrogates (`"\\ud800"`, which cannot be encoded again and break the payload digest) and any
depth of nesting (a RecursionError at about 1,000 levels in some places, earlier in others).
Its error messages also name Python internals (`sys.set_int_max_str_digits`, codec
positions). Here each of these is refused with a message a client can act on.
"""
from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 32   # the request schema needs 3 levels; anything this deep is not a request
# The text is decoded from UTF-8 strictly, so a surrogate can only come from a \uD800-\uDFFF
# escape; without this pattern in the text (an escaped backslash before "u" only adds false
# alarms) no string of the document holds one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class BodyError(ValueError):
    """The body is not acceptable JSON; `field` names the member at fault when known."""

    def __init__(self, message: str, field: str = "_request"):
        super().__init__(message)
        self.message, self.field = message, field


class _DuplicateKey(Exception):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    """object_pairs_hook: a repeated key is ambiguous (which one would be decided?). dict()
    builds the object in C; only when it came out shorter is the first repeated key looked for."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out


def parse(raw: bytes) -> Any:
    """The JSON document in `raw` (UTF-8), or BodyError saying what is wrong with it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError("The body is not valid UTF-8.") from None
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        raise BodyError(f"The key {_printable(exc.key)!r} appears more than once.",
                        _printable(exc.key)) from None
    except RecursionError:
        raise BodyError(f"The body is nested too deeply (at most {MAX_DEPTH} levels).") from None
    except json.JSONDecodeError as exc:
        raise BodyError(f"The body is not valid JSON: {exc.msg} at line {exc.lineno}, "
                        f"column {exc.colno}.") from None
    except ValueError:   # e.g. an integer of more than 4,300 digits
        raise BodyError("The body holds a number with too many digits.") from None
    if _may_be_deep_or_invalid(text):
        _check_tree(doc)
    return doc


def _may_be_deep_or_invalid(text: str) -> bool:
    """False when the text alone proves _check_tree would pass, so the walk is skipped: a value
    deeper than MAX_DEPTH sits inside more than MAX_DEPTH containers, each opened by its own
    `{` or `[` (brackets inside strings only add to the count), and a lone surrogate needs a
    surrogate escape. A few scans in C instead of a walk in Python over every member."""
    return (text.count("{") + text.count("[") > MAX_DEPTH
            or _SURROGATE_ESCAPE.search(text) is not None)


def _check_tree(doc: Any) -> None:
    """Refuse nesting deeper than MAX_DEPTH and strings that are not valid Unicode (lone
    surrogates), naming the member. Iterative, so no depth can overflow the stack."""
    stack: list[tuple[Any, str, int]] = [(doc, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BodyError(f"The body is nested too deeply (at most {MAX_DEPTH} levels).")
        if isinstance(value, str):
            _check_text(value, path or "_request")
        elif isinstance(value, dict):
            for key, item in value.items():
                child = f"{path}.{key}" if path else key
                _check_text(key, _printable(child))
                stack.append((item, child, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{path}.{i}" if path else str(i), depth + 1) for i, item in enumerate(value))


def _check_text(text: str, field: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BodyError("Not valid Unicode: a lone UTF-16 surrogate (\\ud800-\\udfff) is not a "
                        "character.", _printable(field)) from None


def _printable(text: str) -> str:
    """`text` safe to put in a JSON response (lone surrogates escaped)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
