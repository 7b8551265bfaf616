"""Every rules version that made a logged decision stays retrievable, stored by its hash.

The service stores its rule files under `ld:rules:<version>` when it starts (and until that
succeeds, whenever it checks readiness), so `loan-decide replay` can re-run an old decision
under the rules that made it. A few kilobytes a version; versions are few.

A version's policy test kit (`ld:rules:<version>:kit`) is part of the version: what goes live
is checked against the kit it was archived with, so the first kit stored for a version is its
kit for good (an empty one too). Another kit for the same rules is refused (KitConflict): a
refused version archived again without its tests, or with easier ones, stays refused. The
start-up archive stores the rules alone; a version whose kit was never stored may gain it once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

from service.adapters import rules_files
from service.adapters.state_store import RedisStateStore
from service.domain import rulebook
from service.domain.rulebook import RuleBook
from service.usecases import ports
from service.usecases.errors import KitConflict

# Kit files are `*.yaml` names, so this field is never one: it marks a kit as stored, which an
# empty kit would otherwise not be (Redis keeps no empty hash).
_KIT_STORED = "(stored)"
# The kit's hash is written only if it does not exist yet: the first kit archived wins.
_SAVE_ONCE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""


class RulesArchive(ports.RulesArchive):
    """Rules versions and their kits, in the Redis of the RedisStateStore given."""

    def __init__(self, store: RedisStateStore):
        self.store = store
        self.prefix = store.prefix
        self._save_once = store.client.register_script(_SAVE_ONCE)

    def key(self, version: str) -> str:
        return f"{self.prefix}:rules:{version}"

    def save(self, book: RuleBook, kit: Optional[Mapping[str, bytes]] = None) -> None:
        """Store a version's rules, and its kit when given (KitConflict: it has another).

        The kit goes first: a version archived with a kit is never found without it. The
        two keys are in different cluster slots; each write is safe to repeat."""
        if kit is not None:
            self.save_kit(book.version, kit)
        key, client = self.key(book.version), self.store.client
        if not self.store._do(lambda: client.exists(key)):
            self.store._do(lambda: client.hset(key, mapping=dict(book.files)))

    def kit_key(self, version: str) -> str:
        return f"{self.prefix}:rules:{version}:kit"

    def save_kit(self, version: str, files: Mapping[str, bytes]) -> None:
        """Store the kit of a version that has none stored; the same kit again is fine."""
        fields = {_KIT_STORED: b"", **files}
        if self.store._call(self._save_once, [self.kit_key(version)],
                            [x for item in fields.items() for x in item]):
            return
        stored = self.load_kit(version)
        if stored != dict(files):
            raise KitConflict.between(version, stored, files)

    def load_kit(self, version: str) -> dict[str, bytes]:
        """The version's kit ({} when it has none, or none was stored)."""
        return {name: data for name, data in self._files(self.kit_key(version)).items()
                if name != _KIT_STORED}

    def _files(self, key: str) -> dict[str, bytes]:
        """A hash of file name -> content, names as text and contents as bytes (any client)."""
        raw = self.store._do(lambda: self.store.client.hgetall(key))
        return {(k.decode() if isinstance(k, bytes) else k): v if isinstance(v, bytes) else v.encode()
                for k, v in raw.items()}

    def load(self, version: str) -> Optional[RuleBook]:
        files = self._files(self.key(version))
        if not files:
            return None
        book = rules_files.load_files(files, Path(f"<archive {version[:15]}>"))
        if book.version != version:
            raise rulebook.RulesError(f"archived rules {version} hash to {book.version}")
        return book
