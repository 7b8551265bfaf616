"""The state store on the real Redis server and on a 3-master Redis Cluster."""
import datetime as dt

import pytest

from schemas.request import DecideRequestSchema
from service.usecases.errors import Conflict
from tests.conftest import NOW, payload

pytestmark = pytest.mark.integration


def decide(service, doc, user="u-1", app="a-1"):
    doc = dict(doc, user_id=user, application_id=app)
    request = DecideRequestSchema(term_ranges=service.rules.policy.book.term_ranges()).load(doc)
    return service.decisions.decide(doc, request).decision


def codes(decision):
    return [r["code"] for r in decision["reasons"]]


def test_t1_window_and_t3_count(service, clock):
    assert decide(service, payload(age=17), app="a-1")["outcome"] == "rejected"
    clock.set(NOW + dt.timedelta(days=89, hours=23))
    assert codes(decide(service, payload(), app="a-2")) == ["REAPPLY_COOLDOWN"]
    clock.set(NOW + dt.timedelta(days=90))
    assert decide(service, payload(), app="a-3")["outcome"] == "approved"
    assert service.decisions.user_state("u-1")["applications_6m"] == 2


def test_t2_cancel(service, clock):
    decision = decide(service, payload(amount=6001, monthly_income=10000), app="loan")
    assert decision["outcome"] == "cooling_off"
    clock.set(NOW + dt.timedelta(hours=23, minutes=59))
    assert codes(decide(service, payload(), app="b")) == ["COOLING_OFF_PENDING"]
    assert service.decisions.cancel("u-1", "loan")["status"] == "cancelled"
    assert service.decisions.cancel("u-1", "loan")["status"] == "cancelled"
    assert decide(service, payload(), app="c")["outcome"] == "approved"


def test_idempotency(service):
    first = decide(service, payload(), app="x")
    assert decide(service, payload(), app="x") == first
    with pytest.raises(Conflict):
        decide(service, payload(amount=9000), app="x")
    assert service.decisions.user_state("u-1")["applications_6m"] == 1


def test_keys_of_a_user_share_one_slot_and_carry_ttls(service):
    decide(service, payload(age=17), user="user:{odd}", app="a:{1}")
    store = service.stores.users
    keys = store.keys("user:{odd}", "a:{1}")
    client = store.client
    present = [k for k in keys if client.exists(k)]
    assert len(present) == 4                     # user hash, apps set, application record, log
    assert all(client.ttl(k) > 0 for k in present)
    slots = {client.execute_command("CLUSTER KEYSLOT", k) if hasattr(client, "get_nodes")
             else __import__("redis").cluster.key_slot(k.encode()) for k in keys}
    assert len(slots) == 1
