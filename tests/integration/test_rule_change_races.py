"""Promotes and stops of one challenger racing each other, through several workers on one Redis
(a server and a cluster): exactly one of the racing calls wins, and every answer is true of the
final state and of the history.

Before, every stop answered 200 `challenger_stopped` while the version was still promoted, and
two promotes could both succeed, the second naming itself as `previous_version`."""
from __future__ import annotations

import shutil
import threading

import pytest

from service.adapters import rules_files
from service.entrypoints.bootstrap import KITS
from service.entrypoints.http.app import create_app
from service.entrypoints.settings import Settings
from service.usecases import rule_changes
from tests.conftest import RULES_DIR, redis_services

ADMIN = {"X-Admin-Key": "admin-key-456"}
WORKERS, PROMOTES, STOPS, TRIALS = 3, 3, 3, 10


def worker(policy, store_url, clock):
    """One worker: its own connection, its own copy of the rule-change settings, its own app."""
    service = redis_services(store_url, policy, clock, redis_timeout=2.0)
    settings = Settings(**{**Settings().__dict__, "rules_dir": RULES_DIR, "admin_keys": ("admin-key-456",)})
    return service, create_app(settings, services=service)


def candidates(tmp_path, archive) -> list[str]:
    """Two archived versions that pass the bundled kit (each the bundled rules, a comment apart)."""
    versions = []
    for name in ("x", "y"):
        rules = tmp_path / name
        shutil.copytree(RULES_DIR, rules)
        (rules / "products.yaml").write_text((rules / "products.yaml").read_text() + f"\n# {name}\n")
        archived = rule_changes.archive_version(KITS, archive, rules_files.load(rules),
                                                rules_files.kit_files(rules))
        versions.append(archived["rules_version"])
    return versions


def race(apps, barrier) -> list[tuple[str, int, dict]]:
    """PROMOTES promotes and STOPS stops, released together once every promote has gated."""
    answers: list[tuple[str, int, dict]] = []

    def call(kind: str, app) -> None:
        client = app.test_client()
        if kind == "stop":
            barrier.wait()
            response = client.delete("/admin/rules/challenger", headers=ADMIN)
        else:
            response = client.post("/admin/rules/promote", headers=ADMIN)
        answers.append((kind, response.status_code, response.get_json()))

    threads = [threading.Thread(target=call, args=(kind, apps[i % len(apps)]))
               for i, kind in enumerate(["promote"] * PROMOTES + ["stop"] * STOPS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(answers) == PROMOTES + STOPS
    return answers


def test_racing_promotes_and_stops_have_exactly_one_true_winner(policy, store_url, clock, tmp_path,
                                                               monkeypatch):
    workers = [worker(policy, store_url, clock) for _ in range(WORKERS)]
    first = workers[0][0]
    client = first.stores.users.client
    first.rules.archive_own()
    first.rules.publish(first.rules.version)
    versions = candidates(tmp_path, first.stores.archive)

    # in a race, every promote waits once gated for the stops: the claims really race
    barrier, racing = threading.Barrier(PROMOTES + STOPS, timeout=60), threading.Event()
    real_gate = rule_changes.gate

    def gate_then_wait(*args, **kwargs):
        result = real_gate(*args, **kwargs)
        if racing.is_set():
            barrier.wait()
        return result
    monkeypatch.setattr(rule_changes, "gate", gate_then_wait)

    wins = {"promote": 0, "stop": 0}
    for trial in range(TRIALS):
        barrier.reset()
        before = client.get("ld:rules:active").decode()
        challenger = next(v for v in versions if v != before)
        started = workers[trial % WORKERS][1].test_client().post(
            "/admin/rules/challenger", json={"rules_version": challenger, "share": 0.5}, headers=ADMIN)
        assert started.status_code == 200, started.get_json()
        history_from = len(first.changes.history())

        racing.set()
        answers = race([app for _, app in workers], barrier)
        racing.clear()
        won = [(kind, body) for kind, status, body in answers if status == 200]
        assert len(won) == 1, answers
        assert all(status in (404, 409) for _, status, _ in answers if status != 200), answers
        kind, body = won[0]
        wins[kind] += 1
        active = client.get("ld:rules:active").decode()
        assert not client.hget("ld:rulechange:control", "challenger")
        assert first.changes.history()[history_from:] == [body]
        assert body["rules_version"] == challenger
        if kind == "promote":
            assert body["event"] == "promote" and active == challenger
            assert body["previous_version"] == before
        else:
            assert body["event"] == "challenger_stopped" and active == before
    assert sum(wins.values()) == TRIALS
