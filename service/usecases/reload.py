"""Rules reload without restart.

An operator changes the mounted rules directory and calls POST /admin/rules/reload. The new
directory is loaded and validated (a bad one is refused; the old rules stay live), a sample of
recent logged decisions is replayed under it (how many would change), then the new version is
archived and published as the active one in Redis. Every worker checks the active version at
most once a second and switches; a worker forked later checks at start, so none comes back on
the old rules.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from service.adapters import decision_log, rules_files
from service.adapters.rule_engine import EngineError, policy_for
from service.adapters.rules_archive import RulesArchive
from service.domain import rulebook
from service.domain.policy import Policy
from service.usecases import replay
from service.usecases.decide import DecisionService


def recent_decisions(service: DecisionService, limit: int, per_user: int = 5) -> Iterator[str]:
    """Up to `limit` recent decision records, a few from each user's stream."""
    client, prefix = service.store.client, service.store.prefix
    found = 0
    for key in decision_log.log_keys(client, prefix):
        for _, fields in client.xrevrange(key, count=per_user):
            raw = fields.get(b"r") if b"r" in fields else fields.get("r")
            text = raw.decode() if isinstance(raw, bytes) else raw
            if '"kind":"decision"' in text:
                yield text
                found += 1
                if found >= limit:
                    return


class _Fixed(replay.PolicySource):
    def __init__(self, policy: Policy):
        super().__init__()
        self._fixed = policy

    def for_version(self, version: str) -> Policy:
        return self._fixed


def reload_rules(service: DecisionService, rules_dir: Path, sample_size: int = 200,
                 dry_run: bool = False) -> dict:
    """Raises rulebook.RulesError for a bad directory, before anything changes."""
    book = rules_files.load(rules_dir)
    try:
        candidate = policy_for(book)
    except EngineError as exc:
        raise rulebook.RulesError(f"{rules_dir}: {exc}") from exc
    # what goes live passes its own policy test kit (rules_dir/tests), else nothing changes
    from service.usecases import rule_changes

    kit_files = rules_files.kit_files(rules_dir)
    kit = rule_changes.gate(book, kit_files, candidate)
    lines = ((n, text) for n, text in enumerate(recent_decisions(service, sample_size), 1))
    summary = replay.replay(lines, _Fixed(candidate), skip_bad=True)
    previous = service.rules_version
    result = {"rules_version": book.version, "previous_version": previous,
              "dry_run": dry_run, "changed_version": book.version != previous,
              "sample": {"total": summary.total, "changed": summary.changed,
                         "transitions": dict(summary.transitions), "rules": dict(summary.rules)},
              "kit": kit}
    if not dry_run:
        archive = RulesArchive(service.store.client, service.store.prefix)
        service.store._do(lambda: archive.save(book))
        service.store._do(lambda: archive.save_kit(book.version, kit_files))
        service.publish_active(book.version)
        service.use_policy(candidate)
    return result
