"""How many stream shards a prefix uses, and making every process agree on it.

A document's keys carry its shard's hash tag (``accelerated.keys``), so two processes
on one prefix with different shard counts would look for the same document under
different keys. The count a prefix was first used with is recorded in Redis
(``Keys.layout``): a process with ``STREAM_SHARDS`` unset adopts it, one that sets a
different count refuses to start (a one-line ConfigError), and ``RedisTransport.setup``
records it atomically (HSETNX) before anything is queued.
"""

from __future__ import annotations

from typing import Final

from accelerated.boundary import map_driver_errors
from accelerated.cluster import DEFAULT_CLUSTER_SHARDS, RedisClient, is_cluster
from accelerated.errors import ConfigError
from accelerated.keys import Keys

FIELD: Final = "shards"


def default_shards(redis: RedisClient | None) -> int:
    """1 on a single Redis (its behaviour and speed unchanged), more on a cluster."""
    return DEFAULT_CLUSTER_SHARDS if is_cluster(redis) else 1


def mismatch(prefix: str, wanted: int, recorded: int) -> ConfigError:
    return ConfigError(
        f"STREAM_SHARDS={wanted}, but the keys under REDIS_PREFIX={prefix} are laid out "
        f"with {recorded} shards: unset STREAM_SHARDS (or set {recorded}), or use another "
        f"REDIS_PREFIX (the count may change once nothing runs: delete {prefix}:layout)"
    )


async def resolve(redis: RedisClient, prefix: str, wanted: int | None) -> int:
    """The shard count to use: the recorded one, else ``wanted``, else the default."""
    with map_driver_errors():
        raw = await redis.hget(f"{Keys(prefix).layout()}", FIELD)
    if raw is None:
        return wanted or default_shards(redis)
    recorded = int(raw)
    if wanted is not None and wanted != recorded:
        raise mismatch(prefix, wanted, recorded)
    return recorded


async def record(redis: RedisClient, keys: Keys) -> None:
    """Record ``keys.shards`` for the prefix unless one is recorded; refuse another."""
    with map_driver_errors():
        await redis.hsetnx(keys.layout(), FIELD, keys.shards)
        raw = await redis.hget(keys.layout(), FIELD)
    if raw is not None and int(raw) != keys.shards:
        raise mismatch(keys.prefix, keys.shards, int(raw))
