"""Every rules version that made a logged decision stays retrievable, stored by its hash.

The service stores its rule files under `ld:rules:<version>` when it starts (and until that
succeeds, whenever it checks readiness), so `loan-decide replay` can re-run an old decision
under the rules that made it. A few kilobytes a version; versions are few.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from service.adapters import rules_files
from service.domain import rulebook
from service.domain.rulebook import RuleBook


class RulesArchive:
    def __init__(self, client, prefix: str = "ld"):
        self.client = client
        self.prefix = prefix

    def key(self, version: str) -> str:
        return f"{self.prefix}:rules:{version}"

    def save(self, book: RuleBook) -> None:
        key = self.key(book.version)
        if not self.client.exists(key):
            self.client.hset(key, mapping=dict(book.files))

    def kit_key(self, version: str) -> str:
        return f"{self.prefix}:rules:{version}:kit"

    def save_kit(self, version: str, files: dict[str, bytes]) -> None:
        """The policy test kit archived beside its rules version (the last one archived wins):
        what goes live later is checked against its own kit."""
        key = self.kit_key(version)
        pipe = self.client.pipeline()
        pipe.delete(key)
        if files:
            pipe.hset(key, mapping=dict(files))
        pipe.execute()

    def load_kit(self, version: str) -> dict[str, bytes]:
        return self._files(self.kit_key(version))

    def _files(self, key: str) -> dict[str, bytes]:
        """A hash of file name -> content, names as text and contents as bytes (any client)."""
        return {(k.decode() if isinstance(k, bytes) else k): v if isinstance(v, bytes) else v.encode()
                for k, v in self.client.hgetall(key).items()}

    def load(self, version: str) -> Optional[RuleBook]:
        files = self._files(self.key(version))
        if not files:
            return None
        book = rules_files.load_files(files, Path(f"<archive {version[:15]}>"))
        if book.version != version:
            raise rulebook.RulesError(f"archived rules {version} hash to {book.version}")
        return book
