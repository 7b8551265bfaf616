"""The switches every worker follows (the active rules version and the rule-change control
hash), and the rule changes' history and shadow counts, in Redis.

They are two keys (`<prefix>:rules:active`, `<prefix>:rulechange:control`) that a Redis Cluster
puts in different slots, so no one script or MULTI can hold both. A transition that changes
both (a promote: the challenger becomes the active version) is ordered instead, each step a
script on one key: take the challenger off the control hash only if it is still the one that
was checked (racing stops and promotes of one challenger cannot both take it), then publish
it only if the active version is still the one read, and put the challenger back if that is
refused. Each script is safe to send again (a retried call finds its work done).
"""
from __future__ import annotations

import json
from typing import Mapping, Optional, Sequence

from service.adapters.state_store import RedisStateStore
from service.usecases import ports

# Take fields off the hash when the first one holds ARGV[1] ('' = any value): what they held
# (nil when nothing was taken: the first field is unset, or holds another value).
_TAKE = """
local held = redis.call('HMGET', KEYS[1], unpack(ARGV, 2))
if not held[1] or (ARGV[1] ~= '' and held[1] ~= ARGV[1]) then return false end
redis.call('HDEL', KEYS[1], unpack(ARGV, 2))
return held
"""
# Put taken fields back (ARGV: field, value, ...), unless the first was set again meanwhile.
_PUT_BACK = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""
# Make ARGV[1] the active version if the active one is still ARGV[2] ('' = none). 1 when it is
# active now (a call sent again finds it done), 0 when another version was published meanwhile.
_PUBLISH_IF = """
local active = redis.call('GET', KEYS[1])
if active == ARGV[1] then return 1 end
if (active or '') ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""


def active_key(prefix: str) -> str:
    return f"{prefix}:rules:active"


def control_key(prefix: str) -> str:
    return f"{prefix}:rulechange:control"


def _text(value) -> Optional[str]:
    return value.decode() if isinstance(value, bytes) else value


class RedisRuleSwitches(ports.RuleSwitches):
    """The active version and the control hash, each change that must not race one script."""

    def __init__(self, store: RedisStateStore):
        self.store = store
        self.active_key = active_key(store.prefix)
        self.control_key = control_key(store.prefix)
        client = store.client
        self._take = client.register_script(_TAKE)
        self._put_back = client.register_script(_PUT_BACK)
        self._publish_if = client.register_script(_PUBLISH_IF)

    def read(self) -> tuple[Optional[str], dict[str, str]]:
        def both():
            pipe = self.store.client.pipeline(transaction=False)
            pipe.get(self.active_key)
            pipe.hgetall(self.control_key)
            return pipe.execute()

        active, control = self.store._do(both)
        return _text(active), {_text(k): _text(v) for k, v in (control or {}).items()}

    def publish(self, version: str) -> None:
        self.store._do(lambda: self.store.client.set(self.active_key, version))

    def publish_if(self, version: str, replacing: Optional[str]) -> bool:
        return bool(self.store._call(self._publish_if, [self.active_key], [version, replacing or ""]))

    def set_control(self, changes: Mapping[str, Optional[str]]) -> dict[str, str]:
        def write():
            pipe = self.store.client.pipeline(transaction=True)
            for name, value in changes.items():
                if value is None:
                    pipe.hdel(self.control_key, name)
                else:
                    pipe.hset(self.control_key, name, value)
            pipe.hgetall(self.control_key)
            return pipe.execute()[-1]

        return {_text(k): _text(v) for k, v in self.store._do(write).items()}

    def take(self, fields: Sequence[str], holding: str = "") -> Optional[list[Optional[str]]]:
        held = self.store._call(self._take, [self.control_key], [holding, *fields])
        return [_text(v) for v in held] if held else None

    def put_back(self, values: Mapping[str, Optional[str]]) -> bool:
        args = [x for name, value in values.items() if value is not None for x in (name, value)]
        return bool(self.store._call(self._put_back, [self.control_key], args))


class RedisRuleChangeLog(ports.RuleChangeLog):
    """The history (a capped list) and the shadow's counts (a hash per version). The counts'
    hashes share one hash tag, so one flush adds to every version's in one transaction on
    Redis Cluster too."""

    def __init__(self, store: RedisStateStore):
        self.store = store
        self.history_key = f"{store.prefix}:rulechange:history"
        self.shadow_prefix = f"{store.prefix}:{{rulechange}}:shadow:"

    def append(self, entry: dict, keep: int) -> None:
        text = json.dumps(entry, ensure_ascii=False, default=str)

        def write():
            pipe = self.store.client.pipeline(transaction=True)
            pipe.rpush(self.history_key, text)
            pipe.ltrim(self.history_key, -keep, -1)
            pipe.execute()

        self.store._do(write)

    def entries(self) -> list[dict]:
        return [json.loads(_text(t)) for t in self.store._do(
            lambda: self.store.client.lrange(self.history_key, 0, -1))]

    def add_counts(self, batch: Mapping[str, Mapping[str, int]]) -> None:
        def write():
            pipe = self.store.client.pipeline(transaction=True)
            for version, counts in batch.items():
                for name, n in counts.items():
                    pipe.hincrby(self.shadow_prefix + version, name, n)
            pipe.execute()

        self.store._do(write)

    def counts(self, version: str) -> dict[str, int]:
        raw = self.store._do(lambda: self.store.client.hgetall(self.shadow_prefix + version))
        return {_text(k): int(v) for k, v in raw.items()}

    def reset_counts(self, version: str) -> None:
        self.store._do(lambda: self.store.client.delete(self.shadow_prefix + version))
