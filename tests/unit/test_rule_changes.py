"""Rule changes in one process (embedded store): the kit gate on reload, history, the admin
endpoints' checks, the challenger's stable split, and a shadow that costs the request nothing."""
import shutil

import pytest
import redis
import yaml

from schemas.request import DecideRequestSchema
from service.adapters import rules_files
from service.adapters.rules_archive import RulesArchive
from service.domain.clock import FixedClock
from service.entrypoints.http.app import create_app
from service.entrypoints.settings import Settings
from service.usecases import rule_changes
from tests.conftest import NOW, RULES_DIR, embedded_service, payload

ADMIN = {"X-Admin-Key": "admin-key-456"}


@pytest.fixture
def service(policy):
    return embedded_service(policy, FixedClock(NOW))


def app_for(service, rules=RULES_DIR):
    settings = Settings(**{**Settings().__dict__, "rules_dir": rules, "admin_keys": ("admin-key-456",)})
    return create_app(settings, service=service).test_client()


def moved(tmp_path, name, min_age):
    rules = tmp_path / name
    shutil.copytree(RULES_DIR, rules)
    doc = yaml.safe_load((rules / "eligibility.yaml").read_text())
    next(r for r in doc["rules"] if r["id"] == "E2")["params"]["min_age"] = min_age
    (rules / "eligibility.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
    return rules


def test_reload_is_refused_when_the_rules_fail_their_own_kit(tmp_path, service):
    c = app_for(service, moved(tmp_path, "rules", 19))
    old = c.get("/readyz").get_json()["rules_version"]
    response = c.post("/admin/rules/reload", headers=ADMIN)
    assert response.status_code == 422
    assert "E2 age 18 is accepted" in response.get_json()["error"]["message"]
    assert c.post("/decide", json=payload()).get_json()["rules_version"] == old
    assert c.get("/admin/rules/history", headers=ADMIN).get_json() == {"history": []}


def test_a_reload_that_passes_is_recorded_with_its_kit_and_sample(tmp_path, service):
    rules = tmp_path / "rules"
    shutil.copytree(RULES_DIR, rules)
    (rules / "products.yaml").write_text((rules / "products.yaml").read_text() + "\n# reviewed\n")
    c = app_for(service, rules)
    done = c.post("/admin/rules/reload", headers=ADMIN).get_json()
    assert done["kit"]["ok"] is True and done["kit"]["cases"] >= 100
    (entry,) = c.get("/admin/rules/history", headers=ADMIN).get_json()["history"]
    assert entry["event"] == "reload" and entry["rules_version"] == done["rules_version"]
    assert entry["admin"].startswith("admin-key:") and "admin-key-456" not in str(entry)
    assert entry["kit"]["ok"] and "sample" in entry


@pytest.mark.parametrize("method,path,body,field", [
    ("post", "/admin/rules/shadow", {"rules_version": "v1"}, "rules_version"),
    ("post", "/admin/rules/challenger", {"rules_version": "sha256:" + "0" * 64, "share": 1.5}, "share"),
    ("post", "/admin/rules/challenger", {"rules_version": "sha256:" + "0" * 64, "share": True}, "share"),
])
def test_bad_admin_bodies_are_400_naming_the_field(service, method, path, body, field):
    response = getattr(app_for(service), method)(path, json=body, headers=ADMIN)
    assert response.status_code == 400 and field in response.get_json()["error"]["fields"]


def test_rule_change_endpoints_take_only_the_admin_key(service):
    c = app_for(service)
    assert c.get("/admin/rules/history").status_code == 403
    assert c.get("/admin/rules/history", headers={"X-Admin-Key": "wrong"}).status_code == 401
    unknown = c.post("/admin/rules/challenger", json={"rules_version": "sha256:" + "a" * 64, "share": 0.1},
                     headers=ADMIN)
    assert unknown.status_code == 404 and "rules archive" in unknown.get_json()["error"]["message"]
    assert c.post("/admin/rules/promote", headers=ADMIN).status_code == 404
    assert c.get("/admin/shadow", headers=ADMIN).status_code == 404


def test_the_challenger_split_is_a_stable_share_of_users():
    shares = [rule_changes.bucket(f"u-{i}") < 0.1 for i in range(20000)]
    assert 0.09 < sum(shares) / len(shares) < 0.11
    assert [rule_changes.bucket(f"u-{i}") for i in range(50)] == [rule_changes.bucket(f"u-{i}") for i in range(50)]


def loaded(service, doc):
    """(payload, request) as the /decide route passes them to the use case."""
    return doc, DecideRequestSchema(term_ranges=service.policy.book.term_ranges()).load(doc)


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
    RulesArchive(service.store.client, service.store.prefix).save(candidate)
    c.post("/decide", json=dict(payload(), user_id="warm", application_id="warm"))
    counting = Counting(monkeypatch, service.store.client)
    service.decide(*loaded(service, dict(payload(age=20), user_id="a", application_id="a")))
    without = counting.trips

    assert c.post("/admin/rules/shadow", json={"rules_version": candidate.version}, headers=ADMIN).status_code == 200
    counting.trips = 0
    result = service.decide(*loaded(service, dict(payload(age=20), user_id="b", application_id="b")))
    assert counting.trips == without and result.shadow_input is not None
    assert result.decision["outcome"] == "approved" and "arm" not in result.decision

    counting.trips = 0
    service.arms.observe(service, result.decision, result.shadow_input)
    assert counting.trips == 1                       # the counts go in one pipeline
    report = c.get("/admin/shadow", headers=ADMIN).get_json()
    assert report == {"rules_version": candidate.version, "evaluated": 1, "identical": 0, "changed": 1,
                      "transitions": {"approved->rejected": 1}, "rules": {"E2.age": 1}}

    answer = c.post("/decide", json=dict(payload(age=20), user_id="c", application_id="c"))
    assert answer.get_json()["outcome"] == "approved"   # the live answer never changes
    answer.close()                                      # the shadow runs once the response is done
    assert c.get("/admin/shadow", headers=ADMIN).get_json()["evaluated"] == 2


def test_the_settings_ride_on_the_once_a_second_version_check(service, monkeypatch):
    rule_changes.arms_of(service)
    counting = Counting(monkeypatch, service.store.client)
    service.sync_rules(force=True)
    assert counting.trips == 1


def test_promote_through_a_worker_that_has_not_synced_the_challenger(tmp_path, policy):
    """Two workers on one store: the challenger is started through one, and the promote reaches
    the other before it served a decision (so before its once-a-second sync). The promote reads
    the control hash, not the worker's copy: 200, not 404."""
    import fakeredis

    from service.adapters.state_store import RedisStateStore
    from service.usecases.decide import DecisionService

    server = fakeredis.FakeServer()
    first, second = (DecisionService(policy, RedisStateStore(fakeredis.FakeRedis(server=server)),
                                     clock=FixedClock(NOW)) for _ in range(2))
    rules = tmp_path / "rules"
    shutil.copytree(RULES_DIR, rules)
    (rules / "products.yaml").write_text((rules / "products.yaml").read_text() + "\n# candidate\n")
    version = rule_changes.archive(first.store.client, "ld", rules)["rules_version"]
    started = app_for(first).post("/admin/rules/challenger", json={"rules_version": version, "share": 0.5},
                                  headers=ADMIN)
    assert started.status_code == 200, started.get_json()
    promoted = app_for(second).post("/admin/rules/promote", headers=ADMIN)
    assert promoted.status_code == 200, promoted.get_json()
    assert promoted.get_json()["rules_version"] == version
