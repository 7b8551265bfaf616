"""logs.mask runs a pattern only on text that holds a piece all its matches hold: the masked text
is the one the three patterns applied in turn give, for any text."""
import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain import privacy
from service.entrypoints import logs


def reference(text: str) -> str:
    """The three substitutions in turn, on every text (the masking before the pre-checks)."""
    text = privacy.ID_NUMBER.sub(r"\1********\2", text)
    text = privacy.OLD_ID_NUMBER.sub(r"\1******\2", text)
    return privacy.PHONE.sub(lambda m: (m[1] or "") + m[2] + "****" + m[3], text)


# ASCII, fullwidth and Arabic-Indic digits (\d is Unicode), the separators, X, letters, Chinese
CHARS = st.sampled_from(list("0123456789 -+Xxa身") + ["１", "٣"])
PERSONAL = st.sampled_from(["13812345678", "+86 138-1234-5678", "0086138 1234 5678",
                            "110101199003071234", "11010119900307123X", "110101900307123",
                            "13８１２３４５６７８", "１１０１０１１９９００３０７１２３４"])


@pytest.mark.slow   # a property or soak run: in `make test`, not `make unit`
@settings(max_examples=2000, deadline=None)
@given(st.lists(st.one_of(st.text(CHARS, max_size=20), PERSONAL), max_size=6))
def test_mask_is_the_three_patterns_in_turn(parts):
    text = "".join(parts)
    assert logs.mask(text) == reference(text)


@pytest.mark.parametrize("text, shown", [
    ("request", "request"),
    ("dec_5300d4120409da19a0abc24c", "dec_5300d4120409da19a0abc24c"),
    ("tel 13812345678, id 110101199003071234", "tel 138****5678, id 110101********1234"),
    ("a 138 1234 5678 and 8613812345678", "a 138****5678 and 86138****5678"),
    ("old 110101900307123x", "old 110101******123x"),
    ("12345678901234567890", "12345678901234567890"),   # 20 digits: no ID, no phone
    ("13８１２３４５６７８", "13８****５６７８"),             # \d is any Unicode digit
    ("１１０１０１１９９００３０７１２３４", "１１０１０１********１２３４"),
])
def test_mask(text, shown):
    assert logs.mask(text) == shown == reference(text)


def test_the_request_line_masks_every_string_field():
    record = logging.LogRecord("loan_decide.api", logging.INFO, __file__, 1, "user 13812345678",
                               None, None)
    record.fields = {"method": "13812345678", "status": 200, "latency_ms": 1.5,
                     "decision_id": "dec_110101199003071234", "replayed": False,
                     "rules_version": "v 138-1234-5678"}
    doc = json.loads(logs.JsonFormatter().format(record))
    assert doc["msg"] == "user 138****5678" and doc["method"] == "138****5678"
    assert doc["decision_id"] == "dec_110101********1234"
    assert doc["rules_version"] == "v 138****5678"
    assert doc["status"] == 200 and doc["latency_ms"] == 1.5 and doc["replayed"] is False


def test_a_repeating_field_is_masked_on_every_line_and_the_memo_stays_bounded():
    """The values of repeating fields (method, route, rules version, ...) are masked once and
    looked up after: the line is the same as masking it afresh, the first time and every time,
    and a client sending a new method on every request cannot grow the memo without end."""
    record = logging.LogRecord("loan_decide.api", logging.INFO, __file__, 1, "request", None, None)
    formatter = logs.JsonFormatter()
    for _ in range(2):
        record.fields = {"method": "13812345678", "route": "/decide", "product": "weilidai",
                         "rules_version": "v 138-1234-5678"}
        doc = json.loads(formatter.format(record))
        assert doc["method"] == "138****5678" and doc["rules_version"] == "v 138****5678"
        assert doc["route"] == "/decide" and doc["product"] == "weilidai"
    for n in range(3 * logs._MASKED_LIMIT):
        record.fields = {"method": f"M{n}"}
        assert json.loads(formatter.format(record))["method"] == f"M{n}"
    assert len(logs._masked) <= logs._MASKED_LIMIT


def test_a_client_chosen_request_id_is_masked_in_the_log_line():
    """X-Request-ID is the client's choice (any of [A-Za-z0-9._:-], 1-128): a phone number
    sent as one is masked in every log line, like any other logged text."""
    record = logging.LogRecord("loan_decide.api", logging.INFO, __file__, 1, "request", None, None)
    record.request_id = "13812345678"
    assert json.loads(logs.JsonFormatter().format(record))["request_id"] == "138****5678"
    record.request_id = "3f2a9c"
    assert json.loads(logs.JsonFormatter().format(record))["request_id"] == "3f2a9c"
