"""Runtime settings, read from the environment once at start-up."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_RULES_DIR = Path(__file__).resolve().parent.parent / "rules"


@dataclass(frozen=True)
class Settings:
    rules_dir: Path = DEFAULT_RULES_DIR
    redis_url: str | None = None          # None: the embedded default (fakeredis, one process)
    max_body_bytes: int = 64 * 1024
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        return cls(
            rules_dir=Path(env.get("RULES_DIR") or DEFAULT_RULES_DIR),
            redis_url=env.get("REDIS_URL") or None,
            max_body_bytes=int(env.get("MAX_BODY_BYTES") or 64 * 1024),
            log_level=env.get("LOG_LEVEL") or "INFO",
        )
