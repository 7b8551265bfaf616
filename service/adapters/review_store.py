"""The Redis keys that are not one user's: the pending-review index, erased users' windows,
and erasure receipts with the erasure log stream.

Each sits outside every user's hash tag (on Redis Cluster, in slots of their own), so none is
written in a user's COMMIT: the use cases say in which order they follow it
(service.usecases.reviews_index, service.usecases.audit).

- `ld:reviews:pending`: one sorted set, all scores 0, so ZRANGEBYLEX orders its members by
  their bytes: the entries' order, oldest first (a cursor is the last entry seen).
- `ld:erased:{<subject>}`: an erased user's kept window end (epoch seconds), expiring with it.
- `ld:{#erasures}:receipt:<id>` and `ld:{#erasures}:log`: one slot, so one script writes a
  receipt with its log record (receipts written before they moved, `ld:erasure:<id>`, are read).
- `ld:override:{<override id>}`: which user a four-eyes override belongs to (the override itself
  is under the user's hash tag), expiring when the user's copy does.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Optional
from urllib.parse import quote

from service.adapters.state_store import RedisStateStore, _s, epoch, from_epoch
from service.usecases import ports

# A name no %-encoded user id can take (quote() encodes '#'), so no user's log is this stream.
ERASURE_STREAM_TAG = "#erasures"

# The erasure slot: the receipt and its log record, together and once. The memory-needing SET
# comes first: under maxmemory the script is refused whole or applied whole.
_SAVE_RECEIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('XADD', KEYS[2], '*', 'r', ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
"""


class RedisReviewQueue(ports.ReviewQueue):
    def __init__(self, store: RedisStateStore):
        self.store = store
        self.key = f"{store.prefix}:reviews:pending"

    def add(self, entry: str) -> None:
        self.store._do(lambda: self.store.client.zadd(self.key, {entry: 0}))

    def remove(self, entries: list[str]) -> None:
        if entries:
            self.store._do(lambda: self.store.client.zrem(self.key, *entries))

    def page(self, after: Optional[str], count: int) -> list[str]:
        low = "(" + after if after else "-"
        raw = self.store._do(lambda: self.store.client.zrangebylex(self.key, low, "+", 0, count))
        return [_s(m) for m in raw]

    def contains(self, entry: str) -> bool:
        return self.store._do(lambda: self.store.client.zscore(self.key, entry)) is not None

    def stats(self) -> tuple[int, Optional[str]]:
        def read():
            pipe = self.store.client.pipeline(transaction=False)
            pipe.zcard(self.key)
            pipe.zrangebylex(self.key, "-", "+", 0, 1)
            return pipe.execute()

        count, first = self.store._do(read)
        return int(count), (_s(first[0]) if first else None)

    def count_before(self, prefix: str) -> int:
        return int(self.store._do(lambda: self.store.client.zlexcount(self.key, "-", "(" + prefix)))


class RedisErasedWindows(ports.ErasedWindows):
    def __init__(self, store: RedisStateStore):
        self.store = store

    def key_of(self, subject: str) -> str:
        return f"{self.store.prefix}:erased:{{{subject}}}"

    def until(self, subject: str, now: dt.datetime) -> Optional[dt.datetime]:
        raw = self.store._do(lambda: self.store.client.get(self.key_of(subject)))
        end = from_epoch(_s(raw)) if raw else None
        return end if end and end > now else None

    def keep(self, subject: str, until: dt.datetime) -> None:
        self.store._do(lambda: self.store.client.set(self.key_of(subject), str(epoch(until)),
                                                     exat=epoch(until)))

    def drop(self, subject: str) -> None:
        self.store._do(lambda: self.store.client.delete(self.key_of(subject)))


class RedisReceipts(ports.Receipts):
    def __init__(self, store: RedisStateStore):
        self.store = store
        self.stream = f"{store.prefix}:{{{ERASURE_STREAM_TAG}}}:log"
        self._save = store.client.register_script(_SAVE_RECEIPT)

    def key(self, receipt_id: str) -> str:
        return f"{self.store.prefix}:{{{ERASURE_STREAM_TAG}}}:receipt:{receipt_id}"

    def old_key(self, receipt_id: str) -> str:
        """Where receipts were written before they moved next to the stream (still read)."""
        return f"{self.store.prefix}:erasure:{receipt_id}"

    def save(self, receipt: dict, log_record: str) -> None:
        self.store._call(self._save, [self.key(receipt["receipt_id"]), self.stream],
                         [json.dumps(receipt, ensure_ascii=False), log_record, self.store.log_ttl])

    def load(self, receipt_id: str) -> Optional[dict]:
        client = self.store.client
        raw = (self.store._do(lambda: client.get(self.key(receipt_id)))
               or self.store._do(lambda: client.get(self.old_key(receipt_id))))
        return json.loads(raw) if raw else None


class RedisOverrideIndex(ports.OverrideIndex):
    def __init__(self, store: RedisStateStore):
        self.store = store

    def key_of(self, override_id: str) -> str:
        return f"{self.store.prefix}:override:{{{quote(override_id, safe='')}}}"

    def point(self, override_id: str, user_id: str, keep: dt.timedelta) -> None:
        seconds = max(1, int(keep.total_seconds()))
        self.store._do(lambda: self.store.client.set(self.key_of(override_id), user_id, ex=seconds))

    def user_of(self, override_id: str) -> Optional[str]:
        raw = self.store._do(lambda: self.store.client.get(self.key_of(override_id)))
        return _s(raw) if raw else None
