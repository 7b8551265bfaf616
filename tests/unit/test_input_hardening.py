"""Hostile input (issue 9): each a clear 400 naming the problem, never a 500 or a Python message."""
import json
import unicodedata

import pytest

from schemas.request import id_problems
from tests.conftest import payload
from tests.unit.test_http_errors import error_of


def post_raw(client, text: str, path: str = "/decide"):
    return client.post(path, data=text.encode("utf-8", "surrogatepass"),
                       content_type="application/json")


def fresh(**changes) -> dict:
    import uuid

    ids = {"user_id": f"h-{uuid.uuid4().hex[:8]}", "application_id": f"a-{uuid.uuid4().hex[:8]}"}
    return {**payload(), **ids, **changes}


# -- item 5: depth and lone surrogates -----------------------------------------------------------
@pytest.mark.parametrize("depth", [100, 10_000])
def test_deeply_nested_json_is_400(client, depth):
    error = error_of(post_raw(client, "[" * depth + "]" * depth), 400)
    assert "nested too deeply" in error["message"]
    doc = json.dumps(fresh()).replace('"applicant": {', '"x": ' + "{\"a\":" * depth + "1"
                                      + "}" * depth + ', "applicant": {')
    assert "nested too deeply" in error_of(post_raw(client, doc), 400)["message"]


def test_lone_surrogate_in_an_id_is_400_naming_it(client):
    text = json.dumps(fresh()).replace('"user_id": "', '"user_id": "u\\ud800', 1)
    error = error_of(post_raw(client, text), 400)
    assert "user_id" in error["fields"] and "surrogate" in error["message"]


# -- item 12: duplicate keys ----------------------------------------------------------------------
def test_duplicate_keys_are_400_naming_the_key(client):
    text = json.dumps(fresh()).replace('"amount": 5000', '"amount": 1, "amount": 5000')
    assert '"amount": 1, "amount"' in text
    error = error_of(post_raw(client, text), 400)
    assert "amount" in error["fields"] and "more than once" in error["message"]


# -- item 14: no Python internals in messages ---------------------------------------------------------
@pytest.mark.parametrize("body, words", [
    ('{"amount": ' + "9" * 5000 + "}", "too many digits"),
    (b'{"user_id": "\xff\xfe"}', "UTF-8"),
])
def test_messages_do_not_leak_python_internals(client, body, words):
    response = client.post("/decide", data=body, content_type="application/json")
    error = error_of(response, 400)
    text = response.get_data(as_text=True)
    assert words in error["message"]
    for internal in ("sys.", "set_int_max_str_digits", "codec", "position", "0xff", "byte"):
        assert internal not in text


# -- items 10 and 13: ids in the body and in the path -----------------------------------------------
@pytest.mark.parametrize("bad", ["a\x00b", "line\nbreak", "tab\there", "del\x7f", "c1\x85",
                                 "a/b", "x" * 129])
def test_bad_body_ids_are_400(client, bad):
    for field in ("user_id", "application_id"):
        error = error_of(client.post("/decide", json=fresh(**{field: bad})), 400)
        assert field in error["fields"]
    error = error_of(client.post("/applications/a-1/cancel", json={"user_id": bad}), 400)
    assert "user_id" in error["fields"]


@pytest.mark.parametrize("segment", ["a%00b", "line%0Abreak", "del%7F", "x" * 3000])
def test_bad_path_ids_are_400(client, segment):
    assert "user_id" in error_of(client.get(f"/users/{segment}/state"), 400)["fields"]
    assert "user_id" in error_of(client.post(f"/users/{segment}/grace-uses", json={"days": 1}),
                                 400)["fields"]
    assert "application_id" in error_of(
        client.get(f"/applications/{segment}?user_id=u-1"), 400)["fields"]
    assert "application_id" in error_of(
        client.post(f"/applications/{segment}/cancel", json={"user_id": "u-1"}), 400)["fields"]
    assert "user_id" in error_of(client.get(f"/applications/a-1?user_id={segment}"), 400)["fields"]


def test_the_printable_shortcut_of_the_id_check_misses_nothing():
    """id_problems skips its per-character look-up for a printable id: that is sound only if no
    control character (Cc) or surrogate (Cs) is printable. Non-printable others stay allowed."""
    assert [hex(cp) for cp in range(0x110000)
            if chr(cp).isprintable() and unicodedata.category(chr(cp)) in ("Cc", "Cs")] == []
    assert id_problems("zero\u200bwidth") == [] and id_problems("line\u2028sep") == []
    assert id_problems("c1\x85") == id_problems("\ud800") == ["Must not contain control characters."]


def test_good_unusual_ids_still_work(client):
    doc = fresh(user_id="张三-+8613812345678", application_id="app.1:2_3~x")
    assert client.post("/decide", json=doc).status_code == 200


# -- item 11: an equivalent retry is the same request ----------------------------------------------------
def test_equivalent_retry_is_not_a_conflict(client):
    doc = fresh()
    first = client.post("/decide", json=doc)
    assert first.status_code == 200
    same = json.loads(json.dumps(doc))
    same["amount"] = float(doc["amount"])
    same["term_days"] = float(doc["term_days"])
    assert doc["applicant"]["sesame_score"] is None
    del same["applicant"]["sesame_score"]               # null and absent: both "not given"
    del same["applicant"]["documents"]["chsi_verified"]  # false is the default
    again = client.post("/decide", json=same)
    assert again.status_code == 200, again.get_json()
    assert again.get_json()["decision_id"] == first.get_json()["decision_id"]
    changed = dict(same, amount=doc["amount"] + 1)
    error_of(client.post("/decide", json=changed), 409)


def test_null_real_name_date_is_not_the_same_as_absent(client):
    doc = fresh()
    doc["applicant"].pop("real_name_verified_at", None)
    assert client.post("/decide", json=doc).status_code == 200
    doc["applicant"]["real_name_verified_at"] = None    # "not verified" is a different request
    error_of(client.post("/decide", json=doc), 409)


def test_records_from_before_the_canonical_digest_still_match(policy):
    from service.domain.clock import FixedClock
    from service.entrypoints.http.app import create_app
    from service.usecases.decide import payload_digest, raw_payload_digest
    from service.usecases.ports import UserWrite
    from tests.conftest import NOW, memory_services

    services = memory_services(policy, FixedClock(NOW))
    c = create_app(services=services).test_client()
    doc = fresh()
    doc["applicant"]["groups"] = []           # canonical form differs from the raw one
    first = c.post("/decide", json=doc).get_json()
    user, app = doc["user_id"], doc["application_id"]
    stored = services.stores.users.application(user, app)
    assert stored.payload_sha256 == payload_digest(doc) != raw_payload_digest(doc)
    # the record as written before the change: the raw request's digest, through the store's port
    record = stored.with_changes(payload_sha256=raw_payload_digest(doc))
    services.work.run(user, app, lambda snapshot, now: (None, UserWrite(at=now, application=record)))
    assert services.stores.users.application(user, app).payload_sha256 == raw_payload_digest(doc)
    again = c.post("/decide", json=doc)
    assert again.status_code == 200 and again.get_json()["decision_id"] == first["decision_id"]
