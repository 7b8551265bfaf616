"""Personal data in text: PRC ID numbers, mainland phone numbers and names, masked.

The log's masking lives here, in the domain, because more than the log needs it: an erasure
receipt promises no personal data, yet its `reason` and `operator_id` are text an operator
typed, and they go to the receipt, the erasure log stream and `log export`.
"""
from __future__ import annotations

import re
from typing import Any

# Digit runs are bounded by non-digits only (not \b): next to a letter or a Chinese character
# (u13812345678, 身份证110101199003071234) \b does not hold and the number went through.
ID_NUMBER = re.compile(r"(?<!\d)(\d{6})\d{8}(\d{3}[\dXx])(?![\dXx])")   # 18-digit PRC ID
OLD_ID_NUMBER = re.compile(r"(?<!\d)(\d{6})\d{6}(\d{3})(?!\d)")          # 15-digit PRC ID
# mainland mobile, with or without +86 / 86, with or without - or space between the groups
PHONE = re.compile(r"(?<!\d)((?:\+|00)?86[ -]?)?(1[3-9]\d)[ -]?\d{4}[ -]?(\d{4})(?!\d)")
_NAME_KEYS = {"name", "full_name", "real_name", "applicant_name", "customer_name", "contact_name",
              "holder_name", "user_name"}
# A piece of text every match of the patterns holds: both ID numbers are runs of 15 digits or
# more, a phone number ends in 4 digits, maybe a space or a dash, and 4 digits. A text without
# the piece cannot match, so its pattern is not run (most logged values hold no digits at all).
_ID_PIECE = re.compile(r"\d{15}")
_PHONE_PIECE = re.compile(r"\d{4}[ -]?\d{4}")

# A name in free text has no shape a pattern can find ("name 王小明"): what follows a word that
# announces one is taken for a name, up to the next punctuation. Too much masked costs a word
# of an audit reason; too little would keep a person's name.
_NAME_AFTER_MARKER = re.compile(
    r"((?:(?<![A-Za-z])(?:names?|named|called)(?![A-Za-z])|姓名|名字|名叫|叫做|叫)"
    r"[\s:：=]*(?:is\s+|是|为)?)"
    r"([^\s,;.!?()\[\]{}<>\"'，。；！？、（）【】《》“”‘’][^,;.!?()\[\]{}<>\"'，。；！？、（）【】《》“”‘’\n]*)",
    re.IGNORECASE)


def mask(text: str) -> str:
    if _ID_PIECE.search(text) is not None:
        text = ID_NUMBER.sub(_masked_id, text)
        text = OLD_ID_NUMBER.sub(_masked_old_id, text)
    if _PHONE_PIECE.search(text) is not None:
        text = PHONE.sub(_masked_phone, text)
    return text


# Functions, not templates like r"\1***\2": re parses a template at every sub() call.
def _masked_id(m: re.Match) -> str:
    return m[1] + "********" + m[2]


def _masked_old_id(m: re.Match) -> str:
    return m[1] + "******" + m[2]


def _masked_phone(m: re.Match) -> str:
    return (m[1] or "") + m[2] + "****" + m[3]


def _masked_name(name: str) -> str:
    """A name keeps its first character (张三 -> 张*), as the log shows a name field."""
    return name[0] + "*" * (len(name) - 1) if name else name


def mask_value(key: str, value: Any) -> Any:
    """A name field keeps its first character (张三 -> 张*); nested values are masked too."""
    if key in _NAME_KEYS and isinstance(value, str) and value:
        return _masked_name(value)
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_value(key, v) for v in value]
    return value


def mask_free_text(text: str) -> str:
    """Text a person typed (an audit reason): ID and phone numbers masked as in the log, and
    the words after a name marker (name, called, 姓名, 名字, 叫, ...) masked as a name field."""
    return _NAME_AFTER_MARKER.sub(_masked_named, mask(text))


def _masked_named(m: re.Match) -> str:
    name = m[2].rstrip()   # the spaces before the next punctuation are not the name's
    return m[1] + _masked_name(name) + m[2][len(name):]


def erasure_subject(secret: bytes, user_id: str) -> str:
    """The keyed hash an erased user's kept window is stored under: HMAC-SHA256(secret, user id),
    so no key or value holds the user id, and no one without the secret can find whose it is."""
    import hashlib
    import hmac

    return hmac.new(secret, user_id.encode(), hashlib.sha256).hexdigest()
