"""Runtime settings, read from the environment once at start-up."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from service.entrypoints.security import read_keys, read_operator_keys

DEFAULT_RULES_DIR = Path(__file__).resolve().parents[2] / "rules"


@dataclass(frozen=True, repr=False)
class Settings:
    rules_dir: Path = DEFAULT_RULES_DIR
    redis_url: str | None = None          # None: the embedded default (in memory, one process)
    max_body_bytes: int = 64 * 1024
    log_level: str = "INFO"
    redis_timeout: float = 0.5            # seconds; past it the request gets a 503
    key_prefix: str = "ld"
    lock_ttl_ms: int = 5000               # a dead worker's user lock frees itself after this
    lock_wait_s: float = 5.0              # how long a request waits for its user's lock
    retention_days: int = 400             # application records and user state expire after this
    api_keys: tuple[str, ...] = ()        # client keys (X-API-Key); none: no key needed
    admin_keys: tuple[str, ...] = ()      # admin keys (X-Admin-Key); none: admin endpoints off
    # operators' admin keys, (operator_id, key): set, an override takes two operators
    operator_keys: tuple[tuple[str, str], ...] = ()
    reload_sample: int = 200              # recent decisions replayed before a rules reload
    reviewer_keys: tuple[str, ...] = ()   # reviewer keys (X-API-Key); none: reviewer endpoints off
    erasure_secret: bytes | None = None   # HMAC key of erased users' kept windows; none: erasure off
    # RATE_LIMITS, (role, rate string): each key of the role counted on its own; a role not
    # named has no limit (service/entrypoints/http/rate_limits.py reads the rate strings)
    rate_limits: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:   # keys never appear in a log or a traceback
        return f"Settings(rules_dir={self.rules_dir!s}, redis_url={'set' if self.redis_url else None})"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        return cls(
            rules_dir=Path(env.get("RULES_DIR") or DEFAULT_RULES_DIR),
            redis_url=env.get("REDIS_URL") or None,
            max_body_bytes=int(env.get("MAX_BODY_BYTES") or 64 * 1024),
            log_level=env.get("LOG_LEVEL") or "INFO",
            redis_timeout=float(env.get("REDIS_TIMEOUT") or 0.5),
            key_prefix=env.get("REDIS_KEY_PREFIX") or "ld",
            lock_ttl_ms=int(env.get("USER_LOCK_TTL_MS") or 5000),
            lock_wait_s=float(env.get("USER_LOCK_WAIT_S") or 5.0),
            retention_days=int(env.get("RETENTION_DAYS") or 400),
            api_keys=tuple(read_keys(env.get("API_KEYS"), env.get("API_KEYS_FILE"))),
            admin_keys=tuple(read_keys(env.get("ADMIN_API_KEY"), env.get("ADMIN_API_KEY_FILE"))),
            operator_keys=tuple(read_operator_keys(env.get("ADMIN_API_KEYS"), env.get("ADMIN_API_KEYS_FILE"))),
            reload_sample=int(env.get("RELOAD_SAMPLE") or 200),
            reviewer_keys=tuple(read_keys(env.get("REVIEWER_API_KEYS"), env.get("REVIEWER_API_KEYS_FILE"))),
            erasure_secret=_secret(env.get("ERASURE_HMAC_SECRET"), env.get("ERASURE_HMAC_SECRET_FILE")),
            rate_limits=read_rate_limits(env.get("RATE_LIMITS")),
        )


def _secret(inline: str | None, file: str | None) -> bytes | None:
    """The erasure HMAC key, from the variable or a file (its whole content, stripped)."""
    value = (inline or "").strip() or (Path(file).read_text(encoding="utf-8").strip() if file else "")
    return value.encode() if value else None


RATE_LIMITED_ROLES = ("client", "reviewer", "admin")


def read_rate_limits(text: str | None) -> tuple[tuple[str, str], ...]:
    """RATE_LIMITS, `role=rate` entries split at commas (`client=100/second,admin=5/second`):
    the roles checked here, at start-up, and the rate strings when the app is built (the `limits`
    library reads them, and it may only be imported after the gevent patch: see `serve`). An
    entry that is not `role=rate`, a role that is not one of RATE_LIMITED_ROLES or a role given
    twice stops the start-up with a message that names the entry (ValueError)."""
    entries: list[tuple[str, str]] = []
    for entry in (part.strip() for part in (text or "").split(",")):
        if not entry:
            continue
        role, equals, rate = (part.strip() for part in entry.partition("="))
        if not equals or not rate:
            raise ValueError(f"RATE_LIMITS entry {entry!r} is not role=rate (e.g. client=100/second)")
        if role not in RATE_LIMITED_ROLES:
            raise ValueError(f"RATE_LIMITS entry {entry!r}: the role must be one of "
                             f"{', '.join(RATE_LIMITED_ROLES)}")
        if any(role == known for known, _ in entries):
            raise ValueError(f"RATE_LIMITS gives the role {role!r} twice: one entry a role "
                             "(several rates of a role are joined by ';')")
        entries.append((role, rate))
    return tuple(entries)
