"""The queue gauges a worker exports equal what the streams hold."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from accelerated import stream_metrics
from accelerated.aio import wait_for
from accelerated.intake import discover, fingerprint_all, new_generation
from accelerated.keys import Keys
from accelerated.settings import Settings
from tests.conftest import EXAMPLES, KINDS
from tests.support import make_runtime


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


@pytest.mark.parametrize("redis_kind", KINDS, indirect=True)
async def test_gauges_follow_the_streams(
    settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    rt = make_runtime(settings, pg_pool, redis, accelerated=True)
    await rt.transport.setup()
    refs = await fingerprint_all("sm", discover([EXAMPLES]).files, new_generation())
    await rt.transport.enqueue(refs[:4], "extract")
    one = keys.shard(refs[0].document_id)  # a shard holding at least one of them
    await redis.xreadgroup(keys.group("extract"), "c1", {keys.stream("extract", one): ">"}, count=1)
    await redis.xadd(keys.dlq("entities"), {b"ref": b"{}", b"error": b"x"})
    await redis.xadd(keys.wb_stream(keys.shards - 1), {b"i": b"1"})
    stop = asyncio.Event()
    task = asyncio.create_task(stream_metrics.run(redis, keys, stop, interval_s=0.1))
    await asyncio.sleep(0.3)
    assert sample("stream_length", stage="extract") == 4
    assert sample("stream_pending", stage="extract") == 1
    assert sample("stream_lag", stage="extract") == 3
    assert sample("dlq_length", stage="entities") == 1
    assert sample("dlq_length", stage="extract") == 0
    assert sample("writebehind_backlog") == 1
    await redis.delete(keys.dlq("entities"))
    await asyncio.sleep(0.3)
    assert sample("dlq_length", stage="entities") == 0
    stop.set()
    await wait_for(task, 5)
