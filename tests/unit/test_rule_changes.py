"""Rule changes in one process (in-memory stores): the kit gate on reload, history, the admin
endpoints' checks, the challenger's stable split, and a shadow that costs the request nothing.

(The same round trips counted on the Redis adapters: tests/integration/test_rule_change_trips.py.)"""
import dataclasses
import shutil

import pytest
import yaml

from schemas.request import DecideRequestSchema
from service.adapters import rules_files
from service.adapters.memory import MemoryRuleSwitches
from service.domain import rulebook
from service.domain.clock import FixedClock
from service.entrypoints.bootstrap import KITS, wire
from service.entrypoints.http.app import create_app
from service.entrypoints.settings import Settings
from service.usecases import live_rules, ports, rule_changes
from tests.conftest import NOW, RULES_DIR, memory_services, payload

ADMIN = {"X-Admin-Key": "admin-key-456"}


@pytest.fixture
def service(policy):
    return memory_services(policy, FixedClock(NOW))


def app_for(service, rules=RULES_DIR):
    settings = dataclasses.replace(Settings(), rules_dir=rules, admin_keys=("admin-key-456",))
    return create_app(settings, services=service).test_client()


def archive(service, rules) -> dict:
    """`loan-decide rules archive DIR`: the directory's rules and kit stored as a version."""
    return rule_changes.archive_version(KITS, service.stores.archive, rules_files.load(rules),
                                        rules_files.kit_files(rules))


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
    # `$` matches before a final newline: a version with one was taken, then looked up as unknown
    ("post", "/admin/rules/shadow", {"rules_version": "sha256:" + "0" * 64 + "\n"}, "rules_version"),
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
    shares = [live_rules.bucket(f"u-{i}") < 0.1 for i in range(20000)]
    assert 0.09 < sum(shares) / len(shares) < 0.11
    assert [live_rules.bucket(f"u-{i}") for i in range(50)] == [live_rules.bucket(f"u-{i}") for i in range(50)]


def loaded(service, doc):
    """(payload, request) as the /decide route passes them to the use case."""
    return doc, DecideRequestSchema(term_ranges=service.rules.policy.book.term_ranges()).load(doc)


PORTS = {"users": ports.UserStore, "queue": ports.ReviewQueue, "erased": ports.ErasedWindows,
         "receipts": ports.Receipts, "log": ports.DecisionLog, "archive": ports.RulesArchive,
         "switches": ports.RuleSwitches, "changes": ports.RuleChangeLog}


class Counting:
    """Counts the calls to the stores' ports (each one round trip, or one pipeline, on Redis:
    tests/integration/test_rule_change_trips.py counts those), and which ones were made."""

    def __init__(self, monkeypatch, stores: ports.Stores):
        self.trips = 0
        self.calls: list[str] = []
        for name, port in PORTS.items():
            adapter = getattr(stores, name)
            for method in port.__abstractmethods__:
                monkeypatch.setattr(adapter, method, self._counted(f"{name}.{method}",
                                                                   getattr(adapter, method)))

    def _counted(self, label, method):
        def call(*args, **kwargs):
            self.trips += 1
            self.calls.append(label)
            return method(*args, **kwargs)
        return call


def test_a_shadow_adds_no_round_trip_to_the_decision_and_counts_after_it(tmp_path, service, monkeypatch):
    c = app_for(service)
    candidate = rules_files.load(moved(tmp_path, "candidate", 21))
    service.stores.archive.save(candidate)
    c.post("/decide", json=dict(payload(), user_id="warm", application_id="warm"))
    counting = Counting(monkeypatch, service.stores)
    service.decisions.decide(*loaded(service, dict(payload(age=20), user_id="a", application_id="a")))
    without = counting.trips

    assert c.post("/admin/rules/shadow", json={"rules_version": candidate.version}, headers=ADMIN).status_code == 200
    counting.trips = 0
    result = service.decisions.decide(*loaded(service, dict(payload(age=20), user_id="b", application_id="b")))
    assert counting.trips == without and result.shadow_input is not None
    assert result.decision["outcome"] == "approved" and "arm" not in result.decision

    counting.trips = 0
    counting.calls = []
    service.rules.observe(result.decision, result.shadow_input, rule_changes.compare)
    assert counting.trips == 1 and counting.calls == ["changes.add_counts"]   # the counts go in one step
    report = c.get("/admin/shadow", headers=ADMIN).get_json()
    assert report == {"rules_version": candidate.version, "evaluated": 1, "identical": 0, "changed": 1,
                      "failed": 0, "failures": {}, "transitions": {"approved->rejected": 1},
                      "rules": {"E2.age": 1}}

    answer = c.post("/decide", json=dict(payload(age=20), user_id="c", application_id="c"))
    assert answer.get_json()["outcome"] == "approved"   # the live answer never changes
    answer.close()                                      # the shadow runs once the response is done
    assert c.get("/admin/shadow", headers=ADMIN).get_json()["evaluated"] == 2


def test_the_settings_ride_on_the_once_a_second_version_check(service, monkeypatch):
    service.rules.arms
    counting = Counting(monkeypatch, service.stores)
    service.rules.sync(force=True)
    assert counting.trips == 1 and counting.calls == ["switches.read"]


def test_promote_through_a_worker_that_has_not_synced_the_challenger(tmp_path, policy):
    """Two workers on one store: the challenger is started through one, and the promote reaches
    the other before it served a decision (so before its once-a-second sync). The promote reads
    the control hash, not the worker's copy: 200, not 404."""
    first = memory_services(policy, FixedClock(NOW))
    # a second worker: its own live rules and arms, over the same stores
    second = wire(first.settings, first.clock, first.stores, policy)
    rules = tmp_path / "rules"
    shutil.copytree(RULES_DIR, rules)
    (rules / "products.yaml").write_text((rules / "products.yaml").read_text() + "\n# candidate\n")
    version = archive(first, rules)["rules_version"]
    started = app_for(first).post("/admin/rules/challenger", json={"rules_version": version, "share": 0.5},
                                  headers=ADMIN)
    assert started.status_code == 200, started.get_json()
    promoted = app_for(second).post("/admin/rules/promote", headers=ADMIN)
    assert promoted.status_code == 200, promoted.get_json()
    assert promoted.get_json()["rules_version"] == version


# -- what goes live has a kit of its own, and decides every product the live rules decide -------
def without_kit(tmp_path, name):
    rules = tmp_path / name
    shutil.copytree(RULES_DIR, rules, ignore=shutil.ignore_patterns("tests"))
    (rules / "products.yaml").write_text((rules / "products.yaml").read_text() + f"\n# {name}\n")
    return rules


def without_product(tmp_path, name, product):
    """The bundled rules without one product, its cases taken out of the kit (which passes)."""
    rules = tmp_path / name
    shutil.copytree(RULES_DIR, rules)
    doc = yaml.safe_load((rules / "products.yaml").read_text())
    del doc["products"][product]
    (rules / "products.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
    texts = yaml.safe_load((rules / "explanations.yaml").read_text())
    for names in texts["product_names"].values():   # the applicant's wording names every product
        names.pop(product, None)
    (rules / "explanations.yaml").write_text(yaml.safe_dump(texts, allow_unicode=True))
    for path in (rules / "tests").glob("*.yaml"):
        kit = yaml.safe_load(path.read_text())
        if "cases" in kit:
            kit["cases"] = [c for c in kit["cases"] if c.get("product") != product]
            path.write_text(yaml.safe_dump(kit, allow_unicode=True))
    return rules


def test_an_empty_kit_fails_the_gate_of_what_goes_live(tmp_path, service):
    """A directory with no tests/ archived with "kit: 0/0 cases pass" and went live."""
    kitless = without_kit(tmp_path, "kitless")
    c = app_for(service, kitless)
    old = c.get("/readyz").get_json()["rules_version"]
    reload = c.post("/admin/rules/reload", headers=ADMIN)
    assert reload.status_code == 422 and "no policy test kit" in reload.get_json()["error"]["message"]
    version = archive(service, kitless)["rules_version"]
    challenger = c.post("/admin/rules/challenger", json={"rules_version": version, "share": 1},
                        headers=ADMIN)
    assert challenger.status_code == 422 and "no policy test kit" in challenger.get_json()["error"]["message"]
    shadow = c.post("/admin/rules/shadow", json={"rules_version": version}, headers=ADMIN)
    assert shadow.status_code == 200 and shadow.get_json()["kit"]["cases"] == 0   # a shadow is not gated
    assert c.post("/decide", json=payload()).get_json()["rules_version"] == old
    assert [e["event"] for e in c.get("/admin/rules/history", headers=ADMIN).get_json()["history"]] == ["shadow"]


def test_the_kit_a_version_was_archived_with_cannot_be_replaced(tmp_path, service):
    """A refused version's rules archived again without tests/ replaced its kit and went live."""
    refused = moved(tmp_path, "refused", 19)
    version = archive(service, refused)["rules_version"]
    assert archive(service, refused)["rules_version"] == version  # same kit: fine
    shutil.rmtree(refused / "tests")
    with pytest.raises(rulebook.RulesError, match="archived with another policy test kit"):
        archive(service, refused)
    shutil.copytree(RULES_DIR / "tests", refused / "tests")
    (refused / "tests" / "eligibility.yaml").write_text(
        (refused / "tests" / "eligibility.yaml").read_text().replace("{age: 18}", "{age: 19}"))
    with pytest.raises(rulebook.RulesError, match="archived with another policy test kit"):
        archive(service, refused)
    c = app_for(service, refused)   # the same rules with the kit that would pass, as a reload
    reload = c.post("/admin/rules/reload", headers=ADMIN)
    assert reload.status_code == 422 and "archived with another policy test kit" in reload.get_json()["error"]["message"]
    challenger = c.post("/admin/rules/challenger", json={"rules_version": version, "share": 1}, headers=ADMIN)
    assert challenger.status_code == 422 and "E2 age 18 is accepted" in challenger.get_json()["error"]["message"]
    assert c.get("/admin/rules/history", headers=ADMIN).get_json() == {"history": []}


def test_a_version_archived_without_its_kit_gains_it_once(tmp_path, service):
    """The start-up archive stores the rules alone; the kit comes next, once."""
    rules = tmp_path / "rules"
    shutil.copytree(RULES_DIR, rules)
    book = rules_files.load(rules)
    archived_rules = service.stores.archive
    archived_rules.save(book)
    assert archived_rules.load_kit(book.version) == {}
    assert archive(service, rules)["kit"]["ok"] is True
    shutil.rmtree(rules / "tests")
    with pytest.raises(rulebook.RulesError, match="archived with another policy test kit"):
        archive(service, rules)
    assert set(archived_rules.load_kit(book.version)) == {p.name for p in (RULES_DIR / "tests").glob("*.yaml")}


def test_a_start_up_with_another_kit_starts_and_its_history_says_why(tmp_path, service):
    """A start is not refused; the archived kit stays the version's kit."""
    rules = tmp_path / "rules"
    shutil.copytree(RULES_DIR, rules)
    assert archive(service, rules)["rules_version"] == service.rules.version
    (rules / "tests" / "time.yaml").write_text((rules / "tests" / "time.yaml").read_text() + "# edited\n")
    service.changes.record_start(None, lambda: rules_files.kit_files(rules))
    (entry,) = service.changes.history()
    assert entry["event"] == "start-up" and entry["rules_version"] == service.rules.version
    assert "archived with another policy test kit (files that differ: time.yaml)" in entry["kit"]["error"]
    kit = service.stores.archive.load_kit(service.rules.version)
    assert kit["time.yaml"] == (RULES_DIR / "tests" / "time.yaml").read_bytes()


def test_a_candidate_that_drops_a_live_product_is_refused_naming_it(tmp_path, service):
    """A kit-less version without `emergency` went live as challenger: every emergency decision was a 500."""
    smaller = without_product(tmp_path, "smaller", "emergency")
    c = app_for(service, smaller)
    old = c.get("/readyz").get_json()["rules_version"]
    reload = c.post("/admin/rules/reload", headers=ADMIN)
    assert reload.status_code == 422 and "emergency" in reload.get_json()["error"]["message"]
    version = archive(service, smaller)["rules_version"]
    assert archive(service, smaller)["kit"]["ok"] is True
    challenger = c.post("/admin/rules/challenger", json={"rules_version": version, "share": 1}, headers=ADMIN)
    assert challenger.status_code == 422 and "emergency" in challenger.get_json()["error"]["message"]
    # a challenger set before the live rules decided the product (here: written directly) is not promoted
    service.changes._set_control(challenger=version, share="1.0")
    promote = c.post("/admin/rules/promote", headers=ADMIN)
    assert promote.status_code == 422 and "emergency" in promote.get_json()["error"]["message"]
    stopped = c.delete("/admin/rules/challenger", headers=ADMIN)   # the refused promote left it set
    assert stopped.status_code == 200 and stopped.get_json()["rules_version"] == version
    assert c.post("/decide", json=payload("emergency")).get_json()["rules_version"] == old


def test_a_shadow_that_raises_counts_its_failures(tmp_path, service):
    """A shadow that raised on half the traffic reported `evaluated 10, identical 10`."""
    c = app_for(service)
    version = archive(service, without_product(tmp_path, "smaller", "emergency"))["rules_version"]
    assert c.post("/admin/rules/shadow", json={"rules_version": version}, headers=ADMIN).status_code == 200
    failed = shadow_metric(c, "failed")
    for i in range(20):
        answer = c.post("/decide", json=dict(payload("emergency" if i % 2 else "weilidai"),
                                             user_id=f"s-{i}", application_id=f"s-{i}"))
        assert answer.status_code == 200
        answer.close()                                   # the shadow runs once the response is done
    report = c.get("/admin/shadow", headers=ADMIN).get_json()
    assert report == {"rules_version": version, "evaluated": 20, "identical": 10, "changed": 0,
                      "failed": 10, "failures": {"KeyError": 10}, "transitions": {}, "rules": {}}
    assert shadow_metric(c, "failed") == failed + 10


@pytest.mark.parametrize("arm", ["shadow", "challenger"])
def test_stopping_what_does_not_run_is_409_and_writes_no_history(service, arm):
    c = app_for(service)
    response = c.delete(f"/admin/rules/{arm}", headers=ADMIN)
    assert response.status_code == 409 and f"no {arm} is running" in response.get_json()["error"]["message"]
    assert c.get("/admin/rules/history", headers=ADMIN).get_json() == {"history": []}


# -- a promote publishes only the challenger it gated, over the version it read as live ----------
def archived(tmp_path, service, name):
    rules = tmp_path / name
    shutil.copytree(RULES_DIR, rules)
    (rules / "products.yaml").write_text((rules / "products.yaml").read_text() + f"\n# {name}\n")
    return archive(service, rules)["rules_version"]


def running_challenger(tmp_path, service):
    """(client, live version, challenger version): a challenger started over a published version."""
    c = app_for(service)
    live = service.rules.version
    service.rules.publish(live)
    version = archived(tmp_path, service, "next")
    started = c.post("/admin/rules/challenger", json={"rules_version": version, "share": 0.5}, headers=ADMIN)
    assert started.status_code == 200, started.get_json()
    return c, live, version


def during_gate(monkeypatch, action):
    """Run `action` once a promote's gate has passed: a call that reaches another worker meanwhile."""
    real = rule_changes.gate

    def gate_then_act(*args, **kwargs):
        result = real(*args, **kwargs)
        action()
        return result
    monkeypatch.setattr(rule_changes, "gate", gate_then_act)


def state_of(service) -> tuple:
    """(the active version, the control's challenger, the history's events), as stored."""
    active, control = service.stores.switches.read()
    events = [e["event"] for e in service.changes.history()]
    return active, control.get("challenger"), events


def test_a_promote_whose_challenger_is_replaced_while_it_gates_promotes_nothing(tmp_path, service, monkeypatch):
    c, live, version = running_challenger(tmp_path, service)
    other = archived(tmp_path, service, "other")
    during_gate(monkeypatch, lambda: service.changes._set_control(challenger=other, share="0.5"))
    promote = c.post("/admin/rules/promote", headers=ADMIN)
    assert promote.status_code == 409 and "nothing was promoted" in promote.get_json()["error"]["message"]
    assert state_of(service) == (live, other, ["challenger"])


def test_a_promote_over_a_live_version_that_changed_puts_the_challenger_back(tmp_path, service, monkeypatch):
    c, live, version = running_challenger(tmp_path, service)
    reloaded = archived(tmp_path, service, "reloaded")
    during_gate(monkeypatch, lambda: service.rules.publish(reloaded))
    promote = c.post("/admin/rules/promote", headers=ADMIN)
    assert promote.status_code == 409 and "the challenger runs on" in promote.get_json()["error"]["message"]
    assert state_of(service) == (reloaded, version, ["challenger"])


# what the Redis adapters raise for Redis's "OOM command not allowed" (refused before it ran) and
# for a read that timed out (sent, never answered); tests/integration/test_redis_refusals.py
# checks that mapping on the real Redis
@pytest.mark.parametrize("error,code,challenger_after", [
    (ports.StoreRefused("Redis refused: OutOfMemoryError: OOM command not allowed"), "store_unavailable", True),
    (ports.StoreUnavailable("Redis unavailable: TimeoutError: Timeout reading from socket"),
     "outcome_unknown", False)])
def test_a_promote_whose_publish_fails_says_what_it_did(tmp_path, service, monkeypatch, error, code,
                                                        challenger_after):
    """Refused: nothing was written (the challenger is put back). No answer: it may have run."""
    c, live, version = running_challenger(tmp_path, service)

    def fail(self, *args):
        raise error
    monkeypatch.setattr(MemoryRuleSwitches, "publish_if", fail)
    promote = c.post("/admin/rules/promote", headers=ADMIN)
    assert promote.status_code == 503 and promote.get_json()["error"]["code"] == code
    assert state_of(service) == (live, version if challenger_after else None, ["challenger"])


def test_a_stop_redis_does_not_answer_may_have_stopped(tmp_path, service, monkeypatch):
    """A second try would find nothing to stop: the first answer must not say nothing changed."""
    c, live, version = running_challenger(tmp_path, service)
    real = MemoryRuleSwitches.take

    def take_then_lose_the_answer(self, *args, **kwargs):
        real(self, *args, **kwargs)   # as the Redis adapter raises for a read that timed out
        raise ports.StoreUnavailable("Redis unavailable: TimeoutError: Timeout reading from socket")
    monkeypatch.setattr(MemoryRuleSwitches, "take", take_then_lose_the_answer)
    stop = c.delete("/admin/rules/challenger", headers=ADMIN)
    assert stop.status_code == 503 and stop.get_json()["error"]["code"] == "outcome_unknown"
    assert state_of(service) == (live, None, ["challenger"])


def shadow_metric(c, result) -> float:
    prefix = f'shadow_evaluations_total{{result="{result}"}} '
    lines = [l for l in c.get("/metrics").get_data(as_text=True).splitlines() if l.startswith(prefix)]
    return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0


def test_the_shadow_verdicts_are_counted_for_prometheus(tmp_path, service):
    """/metrics says what /admin/shadow says, per process: identical, changed, failed."""
    c = app_for(service)
    candidate = rules_files.load(moved(tmp_path, "candidate", 21))
    service.stores.archive.save(candidate)
    assert c.post("/admin/rules/shadow", json={"rules_version": candidate.version}, headers=ADMIN).status_code == 200
    before = {r: shadow_metric(c, r) for r in ("identical", "changed", "failed")}
    for i, age in enumerate((20, 20, 30)):       # 20: rejected under min_age 21; 30: the same answer
        answer = c.post("/decide", json=dict(payload(age=age), user_id=f"m-{i}", application_id=f"m-{i}"))
        assert answer.status_code == 200
        answer.close()                            # the shadow runs once the response is done
    after = {r: shadow_metric(c, r) for r in before}
    assert {r: after[r] - before[r] for r in before} == {"identical": 1, "changed": 2, "failed": 0}
    report = c.get("/admin/shadow", headers=ADMIN).get_json()
    assert (report["identical"], report["changed"]) == (1, 2)
    c.post("/decide", json=dict(payload(age=30), user_id="m-0", application_id="m-0")).close()  # a replay
    assert shadow_metric(c, "identical") == after["identical"]
