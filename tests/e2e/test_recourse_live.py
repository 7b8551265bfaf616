"""Issue 13 on a live gunicorn server: a client applies each recourse option and sends again."""
import itertools

import pytest

from service.domain.recourse import apply_changes
from tests.conftest import payload
from tests.e2e.conftest import http

_ids = itertools.count(1)


def _send(url: str, doc: dict, user: str) -> dict:
    status, body, _ = http("POST", url + "/decide", dict(doc, user_id=user, application_id=f"live-{next(_ids)}"))
    assert status == 200, body
    return body


@pytest.mark.parametrize("doc", [
    payload(amount=300000),
    payload(bank_card_bound=False, risk_education_done=False),
    payload("xiaoe", amount=8000, groups=["student"]),
    payload("emergency", amount=8000, bureau_authorized=False),
], ids=["amount", "card-education", "student", "emergency"])
def test_options_hold_on_a_live_server(live_server, real_redis_url, doc):
    server = live_server("--workers", "2", env={"REDIS_URL": real_redis_url})
    refused = _send(server.url, doc, "live-a")
    options = refused["recourse"]["options"]
    assert refused["outcome"] == "rejected" and options
    for n, option in enumerate(options):
        assert option["wait_until"] is None
        changed = apply_changes(doc, ((c["field"], c["to"]) for c in option["changes"]))
        assert _send(server.url, changed, f"live-fresh-{n}")["outcome"] == option["outcome"]
    changed = apply_changes(doc, ((c["field"], c["to"]) for c in options[0]["changes"]))
    assert _send(server.url, changed, "live-a")["outcome"] == options[0]["outcome"]   # the same user
