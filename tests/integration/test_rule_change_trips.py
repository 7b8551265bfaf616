"""Round trips to the real Redis of a decision with a shadow running, of the shadow's counts, and
of the once-a-second version check (moved here from tests/unit/test_rule_changes.py, which counts
the same steps as port calls on the in-memory stores)."""
import dataclasses
import shutil

import pytest
import redis
import yaml

from schemas.request import DecideRequestSchema
from service.adapters import rules_files
from service.domain.clock import FixedClock
from service.entrypoints.http.app import create_app
from service.entrypoints.settings import Settings
from service.usecases import rule_changes
from tests.conftest import NOW, RULES_DIR, payload, redis_services

ADMIN = {"X-Admin-Key": "admin-key-456"}


@pytest.fixture
def service(policy, real_redis_url):
    """The wired use cases on the Redis server (a cluster client counts its trips elsewhere)."""
    return redis_services(real_redis_url, policy, FixedClock(NOW))


def app_for(service):
    settings = dataclasses.replace(Settings(), rules_dir=RULES_DIR, admin_keys=("admin-key-456",))
    return create_app(settings, services=service).test_client()


def moved(tmp_path, name, min_age):
    rules = tmp_path / name
    shutil.copytree(RULES_DIR, rules)
    doc = yaml.safe_load((rules / "eligibility.yaml").read_text())
    next(r for r in doc["rules"] if r["id"] == "E2")["params"]["min_age"] = min_age
    (rules / "eligibility.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
    return rules


def loaded(service, doc):
    """(payload, request) as the /decide route passes them to the use case."""
    return doc, DecideRequestSchema(term_ranges=service.rules.policy.book.term_ranges()).load(doc)


class Counting:
    """Counts round trips to Redis: each command sent alone, and each pipeline executed."""

    def __init__(self, monkeypatch, client):
        self.trips = 0
        original, pipeline_execute = type(client).execute_command, redis.client.Pipeline.execute

        def command(this, *args, **kwargs):
            self.trips += 1
            return original(this, *args, **kwargs)

        def execute(this, *args, **kwargs):
            self.trips += 1
            return pipeline_execute(this, *args, **kwargs)
        monkeypatch.setattr(type(client), "execute_command", command)
        monkeypatch.setattr(redis.client.Pipeline, "execute", execute)


def test_a_shadow_adds_no_round_trip_to_the_decision_and_counts_after_it(tmp_path, service, monkeypatch):
    c = app_for(service)
    candidate = rules_files.load(moved(tmp_path, "candidate", 21))
    service.stores.archive.save(candidate)
    c.post("/decide", json=dict(payload(), user_id="warm", application_id="warm"))
    counting = Counting(monkeypatch, service.stores.users.client)
    service.decisions.decide(*loaded(service, dict(payload(age=20), user_id="a", application_id="a")))
    without = counting.trips
    assert without > 0

    assert c.post("/admin/rules/shadow", json={"rules_version": candidate.version}, headers=ADMIN).status_code == 200
    counting.trips = 0
    result = service.decisions.decide(*loaded(service, dict(payload(age=20), user_id="b", application_id="b")))
    assert counting.trips == without and result.shadow_input is not None
    assert result.decision["outcome"] == "approved" and "arm" not in result.decision

    counting.trips = 0
    service.rules.observe(result.decision, result.shadow_input, rule_changes.compare)
    assert counting.trips == 1                       # the counts go in one pipeline
    report = c.get("/admin/shadow", headers=ADMIN).get_json()
    assert report == {"rules_version": candidate.version, "evaluated": 1, "identical": 0, "changed": 1,
                      "failed": 0, "failures": {}, "transitions": {"approved->rejected": 1},
                      "rules": {"E2.age": 1}}


def test_the_settings_ride_on_the_once_a_second_version_check(service, monkeypatch):
    service.rules.arms
    counting = Counting(monkeypatch, service.stores.users.client)
    service.rules.sync(force=True)
    assert counting.trips == 1
