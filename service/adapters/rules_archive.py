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

from service.domain import rulebook
from service.domain.rulebook import RuleBook

# Kit files are `*.yaml` names, so this field is never one: it marks a kit as stored, which an
# empty kit would otherwise not be (Redis keeps no empty hash).
_KIT_STORED = "(stored)"
# The kit's hash is written only if it does not exist yet: the first kit archived wins.
_SAVE_ONCE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""


class KitConflict(rulebook.RulesError):
    """The rules version was archived with another policy test kit, which stays its kit."""


class RulesArchive:
    def __init__(self, client, prefix: str = "ld"):
        self.client = client
        self.prefix = prefix
        self._save_once = client.register_script(_SAVE_ONCE)

    def key(self, version: str) -> str:
        return f"{self.prefix}:rules:{version}"

    def save(self, book: RuleBook, kit: Optional[Mapping[str, bytes]] = None) -> None:
        """Store a version's rules, and its kit when given (KitConflict: it has another).

        The kit goes first: a version archived with a kit is never found without it. The
        two keys are in different cluster slots; each write is safe to repeat."""
        if kit is not None:
            self.save_kit(book.version, kit)
        key = self.key(book.version)
        if not self.client.exists(key):
            self.client.hset(key, mapping=dict(book.files))

    def kit_key(self, version: str) -> str:
        return f"{self.prefix}:rules:{version}:kit"

    def save_kit(self, version: str, files: Mapping[str, bytes]) -> None:
        """Store the kit of a version that has none stored; the same kit again is fine."""
        fields = {_KIT_STORED: b"", **files}
        if self._save_once(keys=[self.kit_key(version)], args=[x for item in fields.items() for x in item]):
            return
        stored = self.load_kit(version)
        if stored != dict(files):
            raise KitConflict(
                f"rules {version} were archived with another policy test kit ({_difference(stored, files)}): "
                "a version's kit cannot be replaced. Change the rules (a new version), or archive "
                "them with the kit they were archived with.")

    def load_kit(self, version: str) -> dict[str, bytes]:
        """The version's kit ({} when it has none, or none was stored)."""
        return {name: data for name, data in self._files(self.kit_key(version)).items()
                if name != _KIT_STORED}

    def _files(self, key: str) -> dict[str, bytes]:
        """A hash of file name -> content, names as text and contents as bytes (any client)."""
        return {(k.decode() if isinstance(k, bytes) else k): v if isinstance(v, bytes) else v.encode()
                for k, v in self.client.hgetall(key).items()}

    def load(self, version: str) -> Optional[RuleBook]:
        files = self._files(self.key(version))
        if not files:
            return None
        book = rulebook.load_files(files, Path(f"<archive {version[:15]}>"))
        if book.version != version:
            raise rulebook.RulesError(f"archived rules {version} hash to {book.version}")
        return book


def _difference(stored: Mapping[str, bytes], given: Mapping[str, bytes]) -> str:
    if not stored or not given:
        return "archived with no kit" if not stored else "none given"
    return "files that differ: " + ", ".join(sorted(n for n in {*stored, *given}
                                                    if stored.get(n) != given.get(n)))
