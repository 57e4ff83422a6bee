"""ScriptBatch: calls of one script from many coroutines share round trips, and each
call keeps its own reply, error and cancellation (accelerated/script_batch.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from accelerated.boundary import map_driver_errors
from accelerated.cluster import RedisClient, is_cluster
from accelerated.errors import BackendUnavailable
from accelerated.script_batch import ScriptBatch
from tests.conftest import KINDS
from tests.faults import RedisServer

# KEYS[1] a counter; ARGV[1] the increment ('boom' raises a script error).
INCR_LUA = """
if ARGV[1] == 'boom' then return redis.error_reply('boom') end
return redis.call('INCRBY', KEYS[1], ARGV[1])
"""


@pytest.mark.parametrize("redis_kind", KINDS, indirect=True)
async def test_concurrent_calls_share_round_trips_and_keep_their_replies(
    redis: RedisClient, prefix: str
) -> None:
    batch = ScriptBatch(redis, INCR_LUA)
    keys = [f"{prefix}:{{n{i % 4}}}" for i in range(200)]
    replies = await asyncio.gather(*(batch([k], [1]) for k in keys))
    # Each call's reply is its own INCRBY's: per key, the values 1..50 each once.
    for i in range(4):
        mine = sorted(int(r) for k, r in zip(keys, replies, strict=True) if k.endswith(f"n{i}}}"))
        assert mine == list(range(1, 51))
    assert batch.calls == 200
    if is_cluster(redis):
        assert batch.round_trips == 200  # a cluster pipeline refuses EVALSHA: one each
    else:
        assert batch.round_trips < 20, batch.round_trips


async def test_a_script_error_is_only_that_calls(redis: RedisClient, prefix: str) -> None:
    batch = ScriptBatch(redis, INCR_LUA)
    key = f"{prefix}:counter"
    results = await asyncio.gather(
        batch([key], [1]), batch([key], ["boom"]), batch([key], [2]), return_exceptions=True
    )
    assert results[0] == 1 and results[2] == 3
    assert isinstance(results[1], ResponseError) and "boom" in str(results[1])
    assert batch.round_trips == 1


async def test_a_call_cancelled_while_queued_is_never_sent(redis: RedisClient, prefix: str) -> None:
    batch = ScriptBatch(redis, INCR_LUA)
    key = f"{prefix}:counter"
    kept = asyncio.create_task(batch([key], [1]))
    dropped = asyncio.create_task(batch([key], [100]))
    await asyncio.sleep(0)  # both queued, the flusher not yet past its first turn
    dropped.cancel()
    assert await kept == 1
    with pytest.raises(asyncio.CancelledError):
        await dropped
    await asyncio.sleep(0.05)
    assert int(await redis.get(key)) == 1


async def test_a_restarted_server_gets_the_script_again(tmp_path: Path) -> None:
    """A server that lost its scripts (restarted, SCRIPT FLUSH) answers NOSCRIPT to
    every call of the pipeline: the script is loaded once and those calls sent again."""
    with RedisServer(tmp_path / "redis") as server:
        client = aioredis.from_url(server.url)
        try:
            batch = ScriptBatch(client, INCR_LUA)
            assert await batch(["k"], [1]) == 1
            await client.script_flush()
            replies = await asyncio.gather(*(batch(["k"], [1]) for _ in range(10)))
            assert sorted(replies) == list(range(2, 12))
            assert await client.script_exists(batch.script.sha) == [True]
        finally:
            await client.aclose()


async def test_a_lost_server_fails_every_queued_call_with_the_drivers_error(
    tmp_path: Path,
) -> None:
    with RedisServer(tmp_path / "redis") as server:
        client = aioredis.from_url(server.url, socket_timeout=2)
        try:
            batch = ScriptBatch(client, INCR_LUA)
            assert await batch(["k"], [1]) == 1
            server.kill()
            results = await asyncio.gather(
                *(batch(["k"], [1]) for _ in range(5)), return_exceptions=True
            )
            assert all(isinstance(r, RedisConnectionError) for r in results), results
            # The caller's boundary maps it as it maps a single call's error.
            with pytest.raises(BackendUnavailable), map_driver_errors():
                await batch(["k"], [1])
        finally:
            await client.aclose()
