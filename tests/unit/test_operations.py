"""Running it like production: API keys, request ids, logs, metrics, OpenAPI, rules reload."""
import json
import logging
import shutil

import jsonschema
import pytest

from service.domain.clock import FixedClock
from service.entrypoints import logs
from service.entrypoints.http.app import create_app
from service.entrypoints.settings import Settings
from tests.conftest import (
    KIT_E2_MIN_AGE_21,
    NOW,
    RULES_DIR,
    alias_bomb,
    memory_services,
    move_threshold,
    payload,
)

CLIENT_KEY, ADMIN_KEY = "client-key-123", "admin-key-456"


def settings(**changes) -> Settings:
    return Settings(**{**Settings().__dict__, **changes})


class _Down:
    """A port whose store cannot be reached: every call raises StoreUnavailable (as the Redis
    adapters do on a dead server); a readiness ping answers False."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def down(*args, **kwargs):
            from service.usecases.ports import StoreUnavailable

            if name == "ping":
                return False
            raise StoreUnavailable("Error 111 connecting to localhost:1. Connection refused.")

        return down


def dead_services(policy, config: Settings):
    """The use cases on stores that are all down (a dead Redis), for the HTTP mapping."""
    import dataclasses

    from service.entrypoints.bootstrap import memory_stores, wire

    clock = FixedClock(NOW)
    stores = memory_stores(config, clock)
    down = dataclasses.replace(stores, **{f.name: _Down(getattr(stores, f.name))
                                          for f in dataclasses.fields(stores)})
    return wire(config, clock, down, policy)


@pytest.fixture
def service(policy):
    return memory_services(policy, FixedClock(NOW))


@pytest.fixture
def keyed(service):
    app = create_app(settings(api_keys=(CLIENT_KEY, "second-key"), admin_keys=(ADMIN_KEY,)),
                     services=service)
    return app.test_client()


def body(user="u-1", app="a-1", **changes):
    return dict(payload(**changes), user_id=user, application_id=app)


# -- API keys ----------------------------------------------------------------------------------------
def test_client_key_is_required_when_configured(keyed):
    assert keyed.post("/decide", json=body()).status_code == 401
    bad = keyed.post("/decide", json=body(), headers={"X-API-Key": "wrong"})
    assert bad.status_code == 401 and bad.get_json()["error"]["code"] == "unauthorized"
    assert keyed.post("/decide", json=body(), headers={"X-API-Key": "second-key"}).status_code == 200
    assert keyed.get("/users/u-1/state").status_code == 401


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/openapi.json"])
def test_open_endpoints_need_no_key(keyed, path):
    assert keyed.get(path).status_code == 200


def test_admin_key_is_distinct(keyed, service):
    # API.md: a bad key is 401, a missing role 403
    assert keyed.post("/admin/rules/reload", headers={"X-Admin-Key": CLIENT_KEY}).status_code == 401
    assert keyed.post("/admin/rules/reload", headers={"X-API-Key": CLIENT_KEY}).status_code == 403
    assert keyed.post("/decide", json=body(), headers={"X-API-Key": ADMIN_KEY}).status_code == 401
    with pytest.raises(ValueError, match="must differ"):
        create_app(settings(api_keys=("same",), admin_keys=("same",)), services=service)


def test_admin_endpoints_are_off_without_an_admin_key(client):
    assert client.post("/admin/rules/reload").status_code == 403


def test_keys_from_a_file(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("# client keys\nfirst\n\nsecond  # for the batch job\n")
    loaded = Settings.from_env({"API_KEYS": "inline", "API_KEYS_FILE": str(keys)})
    assert loaded.api_keys == ("inline", "first", "second")
    assert "inline" not in repr(loaded)


def test_keys_are_never_logged(keyed, caplog):
    caplog.set_level(logging.DEBUG)
    keyed.post("/decide", json=body(), headers={"X-API-Key": CLIENT_KEY})
    keyed.post("/decide", json=body(app="a-2"), headers={"X-API-Key": "wrong-key-789"})
    text = "\n".join(logs.JsonFormatter().format(r) for r in caplog.records)
    assert CLIENT_KEY not in text and "wrong-key-789" not in text


# -- request ids and logs --------------------------------------------------------------------------
def test_request_id_is_accepted_or_made_and_returned(client):
    given = client.post("/decide", json=body(user="rid"), headers={"X-Request-ID": "req-abc.1"})
    assert given.headers["X-Request-ID"] == "req-abc.1"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert len(made.headers["X-Request-ID"]) == 32


def test_every_log_line_of_a_request_carries_its_id_and_masks_personal_data(client, caplog):
    caplog.set_level(logging.INFO)
    doc = body(user="13812345678", app="110101199003071234")     # a phone and an ID number as ids
    client.post("/decide", json=doc, headers={"X-Request-ID": "trace-me"})
    lines = [json.loads(logs.JsonFormatter().format(r)) for r in caplog.records
             if r.name.startswith("loan_decide")]
    request_line = next(l for l in lines if l["msg"] == "request")
    assert all(l.get("request_id") == "trace-me" for l in lines)
    assert request_line["outcome"] == "approved" and request_line["status"] == 200
    assert request_line["decision_id"].startswith("dec_") and request_line["latency_ms"] > 0
    text = json.dumps(lines)
    assert "13812345678" not in text and "110101199003071234" not in text


def test_mask():
    assert logs.mask("id 110101199003071234 tel 13812345678") == "id 110101********1234 tel 138****5678"
    formatter = logs.JsonFormatter()
    record = logging.LogRecord("x", logging.INFO, "f", 1, "m", None, None)
    record.fields = {"name": "张三丰"}
    assert json.loads(formatter.format(record))["name"] == "张**"


# -- metrics -----------------------------------------------------------------------------------------
def sample(client, name, **labels):
    text = client.get("/metrics").get_data(as_text=True)
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_decisions_reasons_and_latency(client):
    before = sample(client, "decisions_total", product="xiaoe", outcome="rejected")
    reasons = sample(client, "decision_reasons_total", code="AGE_OUT_OF_RANGE")
    client.post("/decide", json=body("m-1", "m-1", age=17, product="xiaoe") | {"product": "xiaoe"})
    client.post("/decide", json=body("m-1", "m-1", age=17) | {"product": "xiaoe"})   # a replay: not counted
    assert sample(client, "decisions_total", product="xiaoe", outcome="rejected") == before + 1
    assert sample(client, "decision_reasons_total", code="AGE_OUT_OF_RANGE") == reasons + 1
    assert sample(client, "http_request_duration_seconds_count", route="/decide", status="200") >= 2


def test_made_up_methods_share_one_latency_label(client):
    """A client chooses the method: 40 made-up ones must not make 40 metric series."""
    for i in range(40):
        assert client.open("/nowhere", method=f"PROBE{i}").status_code in (404, 405)
    text = client.get("/metrics").get_data(as_text=True)
    assert "PROBE" not in text
    assert sample(client, "http_request_duration_seconds_count", method="other", route="unmatched",
                  status="404") >= 40


def test_redis_errors_are_counted_and_answered_with_503(policy):
    app = create_app(Settings(), services=dead_services(policy, Settings()))
    c = app.test_client()
    before = sample(c, "redis_errors_total", route="/decide")
    response = c.post("/decide", json=body())
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert sample(c, "redis_errors_total", route="/decide") == before + 1
    assert c.get("/readyz").status_code == 503 and c.get("/healthz").status_code == 200


# -- OpenAPI -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def spec(policy):
    app = create_app(services=memory_services(policy, FixedClock(NOW)))
    return app.test_client().get("/openapi.json").get_json()


def validate(spec, component, instance):
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              "$ref": f"#/components/schemas/{component}", "components": spec["components"]}
    jsonschema.validate(instance, schema)


def test_openapi_document(spec):
    assert spec["openapi"].startswith("3.1")
    assert {"/decide", "/applications/{application_id}/cancel", "/applications/{application_id}",
            "/users/{user_id}/state", "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    request = spec["components"]["schemas"]["DecideRequest"]
    assert set(request["required"]) == {"application_id", "user_id", "product", "amount", "applicant"}
    assert request["additionalProperties"] is False
    jsonschema.Draft202012Validator.check_schema(spec["components"]["schemas"]["Decision"])


def test_live_responses_match_the_openapi_document(spec, policy):
    clock = FixedClock(NOW)
    c = create_app(services=memory_services(policy, clock)).test_client()
    validate(spec, "DecideRequest", body())
    validate(spec, "Decision", c.post("/decide", json=body(app="ok")).get_json())
    validate(spec, "Decision", c.post("/decide", json=body("v-2", age=17)).get_json())
    validate(spec, "Decision", c.post("/decide", json=body("v-2", "again")).get_json())   # T1 refusal
    cooling = c.post("/decide", json=body("v-3", "c", amount=6001, monthly_income=10000)).get_json()
    validate(spec, "Decision", cooling)
    validate(spec, "ApplicationView", c.post("/applications/c/cancel", json={"user_id": "v-3"}).get_json())
    validate(spec, "ApplicationView", c.get("/applications/ok?user_id=u-1").get_json())
    validate(spec, "UserState", c.get("/users/v-2/state").get_json())
    validate(spec, "Error", c.post("/decide", json={"amount": "x"}).get_json())
    validate(spec, "Health", c.get("/readyz").get_json())
    with pytest.raises(jsonschema.ValidationError):
        validate(spec, "Decision", {"outcome": "maybe"})


# -- rules reload ----------------------------------------------------------------------------------------
def stricter_rules(tmp_path):
    """E2's minimum age 18 -> 21, moved on purpose, with the kit's cases moved along."""
    rules = tmp_path / "rules"
    shutil.copytree(RULES_DIR, rules)
    return move_threshold(rules, "E2", "min_age", 21, kit=KIT_E2_MIN_AGE_21)


def test_reload_switches_version_and_reports_the_sample(tmp_path, policy, service):
    rules = stricter_rules(tmp_path)
    app = create_app(settings(rules_dir=rules, admin_keys=(ADMIN_KEY,)), services=service)
    c = app.test_client()
    for n, age in enumerate([19, 20, 30, 40]):
        c.post("/decide", json=body(f"r-{n}", f"r-{n}", age=age))
    old = c.get("/readyz").get_json()["rules_version"]
    dry = c.post("/admin/rules/reload?dry_run=1", headers={"X-Admin-Key": ADMIN_KEY}).get_json()
    assert dry["sample"] == {"total": 4, "changed": 2, "transitions": {"approved->rejected": 2},
                             "rules": {"E2.age": 2}}
    assert c.get("/readyz").get_json()["rules_version"] == old
    done = c.post("/admin/rules/reload", headers={"X-Admin-Key": ADMIN_KEY}).get_json()
    assert done["previous_version"] == old and done["rules_version"] != old
    decision = c.post("/decide", json=body("r-9", "r-9", age=20)).get_json()
    assert decision["rules_version"] == done["rules_version"] and decision["outcome"] == "rejected"


def test_bad_rules_are_refused_and_the_old_ones_stay(tmp_path, service):
    rules = stricter_rules(tmp_path)
    (rules / "rejections.yaml").write_text("rules: [{id: R9}]\n")
    c = create_app(settings(rules_dir=rules, admin_keys=(ADMIN_KEY,)), services=service).test_client()
    old = c.get("/readyz").get_json()["rules_version"]
    response = c.post("/admin/rules/reload", headers={"X-Admin-Key": ADMIN_KEY})
    assert response.status_code == 422 and "rejections.yaml" in response.get_json()["error"]["message"]
    assert c.get("/readyz").get_json()["rules_version"] == old
    assert c.post("/decide", json=body()).get_json()["rules_version"] == old


@pytest.mark.parametrize("min_age", [".nan", ".inf", "1.0e-7", "18446744073709551616"])
def test_reload_refuses_numbers_durable_rules_cannot_take(tmp_path, service, min_age):
    """`.nan` used to load and approve a 12-year-old; `.inf`/`1.0e-7` used to be a 500."""
    rules = stricter_rules(tmp_path)
    path = rules / "eligibility.yaml"
    path.write_text(path.read_text().replace("min_age: 21", f"min_age: {min_age}"))
    c = create_app(settings(rules_dir=rules, admin_keys=(ADMIN_KEY,)), services=service).test_client()
    old = c.get("/readyz").get_json()["rules_version"]
    response = c.post("/admin/rules/reload", headers={"X-Admin-Key": ADMIN_KEY})
    message = response.get_json()["error"]["message"]
    assert response.status_code == 422 and "eligibility.yaml" in message and "min_age" in message
    assert c.get("/readyz").get_json()["rules_version"] == old
    child = c.post("/decide", json=body("kid", "kid", age=12)).get_json()
    assert child["rules_version"] == old and child["outcome"] == "rejected"


def test_reload_refuses_an_oversized_rules_file(tmp_path, service):
    rules = stricter_rules(tmp_path)
    (rules / "groups.yaml").write_bytes(b"#" * (10 * 1024 * 1024))
    c = create_app(settings(rules_dir=rules, admin_keys=(ADMIN_KEY,)), services=service).test_client()
    old = c.get("/readyz").get_json()["rules_version"]
    response = c.post("/admin/rules/reload", headers={"X-Admin-Key": ADMIN_KEY})
    assert response.status_code == 422 and "groups.yaml" in response.get_json()["error"]["message"]
    assert c.post("/decide", json=body()).get_json()["rules_version"] == old



def _bomb_in_the_kit(rules):
    (rules / "tests").mkdir(exist_ok=True)   # the stricter rules carry the bundled kit
    shutil.copy(RULES_DIR / "tests" / "base.yaml", rules / "tests" / "base.yaml")
    (rules / "tests" / "zz.yaml").write_bytes(alias_bomb(8))


@pytest.mark.parametrize("hostile, named", [
    (lambda rules: (rules / "bomb.yaml").write_bytes(alias_bomb(8)), "bomb.yaml: its aliases expand"),
    (_bomb_in_the_kit, "zz.yaml: its aliases expand"),
    (lambda rules: (rules / "x.yaml").symlink_to("/dev/zero"), "x.yaml: not a regular file"),
])
def test_a_dry_run_reload_of_a_hostile_rules_directory_answers_422(tmp_path, service, hostile, named):
    """An 8-level alias bomb hung the worker until gunicorn killed it; /dev/zero was read
    without end. Both are refused, naming the file, and the live rules stay."""
    rules = stricter_rules(tmp_path)
    hostile(rules)
    c = create_app(settings(rules_dir=rules, admin_keys=(ADMIN_KEY,)), services=service).test_client()
    old = c.get("/readyz").get_json()["rules_version"]
    response = c.post("/admin/rules/reload?dry_run=1", headers={"X-Admin-Key": ADMIN_KEY})
    assert response.status_code == 422 and named in response.get_json()["error"]["message"]
    assert c.post("/decide", json=body()).get_json()["rules_version"] == old


def test_reload_names_what_durable_rules_itself_refuses(tmp_path, service, monkeypatch):
    """A limit the loader does not know yet still ends in 422, not a 500."""
    from service.adapters import rule_engine

    def refuse(self, definitions):
        raise Exception("Could not create ruleset, error code: 204")

    c = create_app(settings(rules_dir=stricter_rules(tmp_path), admin_keys=(ADMIN_KEY,)),
                   services=service).test_client()
    old = c.get("/readyz").get_json()["rules_version"]
    monkeypatch.setattr(rule_engine._QuietHost, "set_rulesets", refuse)
    response = c.post("/admin/rules/reload", headers={"X-Admin-Key": ADMIN_KEY})
    assert response.status_code == 422 and "error code: 204" in response.get_json()["error"]["message"]
    assert c.get("/readyz").get_json()["rules_version"] == old


def test_other_workers_follow_the_active_version(tmp_path, policy, service):
    """A second process on the same Redis switches on its next request after the interval."""
    from service.entrypoints.bootstrap import wire

    other = wire(service.settings, FixedClock(NOW), service.stores, policy)   # another worker, same store
    rules = stricter_rules(tmp_path)
    c = create_app(settings(rules_dir=rules, admin_keys=(ADMIN_KEY,)), services=service).test_client()
    new = c.post("/admin/rules/reload", headers={"X-Admin-Key": ADMIN_KEY}).get_json()["rules_version"]
    assert other.rules.version != new
    assert other.rules.sync(force=True) and other.rules.version == new


@pytest.mark.parametrize("method, path, headers, doc", [
    ("get", "/reviews", {"X-API-Key": "reviewer-1"}, None),
    ("post", "/applications/a-1/review", {"X-API-Key": "reviewer-1"},
     {"user_id": "u-1", "reviewer_id": "r-1", "outcome": "approved", "reason_codes": [], "note": ""}),
    ("post", "/users/u-1/overrides", {"X-Admin-Key": "admin-1"},
     {"action": "lift_cooldown", "operator_id": "op-1", "reason": "wrongly applied"}),
    ("delete", "/users/u-1", {"X-Admin-Key": "admin-1"}, {"operator_id": "op-1", "reason": "PIPL request"}),
    ("get", "/admin/rules/history", {"X-Admin-Key": "admin-1"}, None),
])
def test_new_endpoints_answer_503_when_redis_is_down(policy, method, path, headers, doc):
    """Review, override, erasure and rule-change endpoints on a dead Redis: a JSON 503 with
    Retry-After, never a 500."""
    settings = Settings(**{**Settings().__dict__, "api_keys": ("client-1",), "reviewer_keys": ("reviewer-1",),
                           "admin_keys": ("admin-1",), "erasure_secret": b"s" * 32})
    c = create_app(settings, services=dead_services(policy, settings)).test_client()
    response = getattr(c, method)(path, headers=headers, json=doc)
    assert response.status_code == 503, response.get_json()
    assert response.headers["Retry-After"] == "1" and "error" in response.get_json()
