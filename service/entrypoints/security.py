"""API keys: `X-API-Key` for clients, a distinct admin key for operations (rules reload).

Keys come from API_KEYS (comma-separated) or API_KEYS_FILE (one a line, `#` comments), and
ADMIN_API_KEY / ADMIN_API_KEY_FILE. Only their SHA-256 digests are kept in memory; a presented
key is hashed and compared with every digest in constant time. Keys are never logged.
"""
from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Iterable, Optional


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
