"""The switches every worker follows: the active rules version and the rule-change control hash.

They are two keys (`<prefix>:rules:active`, `<prefix>:rulechange:control`) that a Redis Cluster
puts in different slots, so no one script or MULTI can hold both. A transition that changes
both (a promote: the challenger becomes the active version) is ordered instead, each step a
script on one key: take the challenger off the control hash only if it is still the one that
was checked (racing stops and promotes of one challenger cannot both take it), then publish
it only if the active version is still the one read, and put the challenger back if that is
refused. Each script is safe to send again (a retried call finds its work done).
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

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


class RulesControl:
    """Conditional changes of the active version and the control hash (one key each)."""

    def __init__(self, client, prefix: str = "ld"):
        self.active_key = active_key(prefix)
        self.control_key = control_key(prefix)
        self._take = client.register_script(_TAKE)
        self._put_back = client.register_script(_PUT_BACK)
        self._publish_if = client.register_script(_PUBLISH_IF)

    def take(self, fields: Sequence[str], holding: str = "") -> Optional[list[Optional[str]]]:
        """Delete `fields` if the first is set (to `holding`, when given): the values they held,
        or None when nothing was taken."""
        held = self._take(keys=[self.control_key], args=[holding, *fields])
        return [_text(v) for v in held] if held else None

    def put_back(self, values: Mapping[str, Optional[str]]) -> bool:
        """Restore what `take` took, unless its first field was set again since (False)."""
        args = [x for field, value in values.items() if value is not None for x in (field, value)]
        return bool(self._put_back(keys=[self.control_key], args=args))

    def publish_if(self, version: str, replacing: Optional[str]) -> bool:
        """Make `version` active if `replacing` still is (None: no version is active yet)."""
        return bool(self._publish_if(keys=[self.active_key], args=[version, replacing or ""]))
