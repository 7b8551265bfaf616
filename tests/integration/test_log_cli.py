"""The log CLI against the real Redis and a 3-master cluster: export, replay, rebuild, diff."""
import json

import pytest
from click.testing import CliRunner

from service.adapters import redis_connection
from service.entrypoints.cli import main
from tests.loggen import generate

pytestmark = pytest.mark.integration


def test_export_replay_rebuild_diff(service, store_url, tmp_path, monkeypatch):
    monkeypatch.setenv("REDIS_URL", store_url)
    records = generate(service, 300, users=40)
    service.rules.archive_own()
    runner = CliRunner()

    exported = runner.invoke(main, ["log", "export", "--since", "2026-01-01"])
    assert exported.exit_code == 0, exported.output
    lines = [l for l in exported.stdout.splitlines() if l.strip()]
    assert len(lines) == records
    log = tmp_path / "decisions.jsonl"
    log.write_text("\n".join(lines) + "\n")

    replayed = runner.invoke(main, ["replay", str(log), "--json"])
    summary = json.loads(replayed.stdout)
    assert summary["total"] == 300 and summary["identical"] == 300

    # the archived version is retrievable by hash from Redis
    version = json.loads(lines[0])["rules_version"]
    by_hash = runner.invoke(main, ["replay", str(log), "--json", "--rules-version", version])
    assert json.loads(by_hash.stdout)["identical"] == 300

    assert runner.invoke(main, ["state", "diff", str(log)]).exit_code == 0
    client = redis_connection.connect(store_url)
    for key in list(client.scan_iter(match="ld:{*}:*")):
        if not key.decode().endswith(":log"):
            client.delete(key)                      # lose the state, keep the log
    lost = runner.invoke(main, ["state", "diff", str(log)])
    assert lost.exit_code == 1
    assert runner.invoke(main, ["state", "rebuild", str(log)]).exit_code == 0
    after = runner.invoke(main, ["state", "diff", str(log)])
    assert after.exit_code == 0, after.output
    assert "0 differences" in after.stderr


def test_a_cli_command_leaves_the_active_rules_version_alone(real_redis_url, monkeypatch):
    """`log export` (any command that reads or repairs) must not publish its own rules as the
    active version: after a promote that would switch every worker back."""
    import redis

    client = redis.Redis.from_url(real_redis_url)
    client.set("ld:rules:active", "sha256:promoted")
    monkeypatch.setenv("REDIS_URL", real_redis_url)
    result = CliRunner().invoke(main, ["log", "export"])
    assert result.exit_code == 0, result.output
    assert client.get("ld:rules:active") == b"sha256:promoted"
