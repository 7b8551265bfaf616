"""API keys: `X-API-Key` for clients, a distinct admin key for operations (rules reload).

Keys come from API_KEYS (comma-separated) or API_KEYS_FILE (one a line, `#` comments), and
ADMIN_API_KEY / ADMIN_API_KEY_FILE. ADMIN_API_KEYS / ADMIN_API_KEYS_FILE hold admin keys that
each name their operator (`operator_id:key`): with them an override takes two operators. Only their SHA-256 digests are kept in memory; a presented
key is hashed and compared with every digest in constant time. Keys are never logged.
"""
from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Iterable, Optional

from schemas.request import id_problems


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def read_keys(inline: Optional[str], file: Optional[str]) -> list[str]:
    keys = [k.strip() for k in (inline or "").split(",")]
    if file:
        for line in Path(file).read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                keys.append(line)
    return [k for k in keys if k]


class KeyRing:
    def __init__(self, keys: Iterable[str]):
        self._digests = [_digest(k) for k in keys]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def accepts(self, presented: Optional[str]) -> bool:
        if not presented:
            return False
        candidate = _digest(presented)
        found = False
        for digest in self._digests:          # no early exit: the time does not depend on which
            found |= hmac.compare_digest(candidate, digest)
        return found

    def overlaps(self, other: "KeyRing") -> bool:
        return any(hmac.compare_digest(a, b) for a in self._digests for b in other._digests)


def read_operator_keys(inline: Optional[str], file: Optional[str]) -> list[tuple[str, str]]:
    """`operator_id:key` pairs (split at the first colon); a pair without both, an operator id
    the identifier rules refuse, or a key given twice stops the start-up (ValueError)."""
    pairs = []
    for number, entry in enumerate(read_keys(inline, file), 1):
        operator_id, colon, key = (part.strip() for part in entry.partition(":"))
        if not colon or not operator_id or not key or id_problems(operator_id):
            raise ValueError(f"ADMIN_API_KEYS entry {number} is not `operator_id:key` "
                             "(an operator id of 1-128 characters, no '/' or control characters)")
        pairs.append((operator_id, key))
    if len({key for _, key in pairs}) != len(pairs):
        raise ValueError("ADMIN_API_KEYS gives one key to two entries: each operator needs a key of its own")
    return pairs


class OperatorKeys(KeyRing):
    """Admin keys that say who holds them: the operator of a presented key, found in constant
    time as KeyRing.accepts is."""

    def __init__(self, pairs: Iterable[tuple[str, str]]):
        pairs = list(pairs)
        super().__init__(key for _, key in pairs)
        self._operators = [operator_id for operator_id, _ in pairs]

    def operator_of(self, presented: Optional[str]) -> Optional[str]:
        if not presented:
            return None
        candidate = _digest(presented)
        found = None
        for digest, operator_id in zip(self._digests, self._operators):   # no early exit
            if hmac.compare_digest(candidate, digest):
                found = operator_id
        return found
