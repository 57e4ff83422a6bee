"""The stream engine's failure handling: retries, dead letters, backpressure."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from accelerated import state
from accelerated.aio import wait_for
from accelerated.batch_run import BatchOptions, _enqueue_with_backpressure, run_batch
from accelerated.intake import discover, fingerprint_all, new_generation
from accelerated.keys import Keys
from accelerated.models import Extracted
from accelerated.settings import Settings
from accelerated.stages import StageContext
from accelerated.stages import clean as clean_stage
from persistence.schema import migrate
from tests.conftest import EXAMPLES, KINDS
from tests.support import make_runtime, one_example, stream_length

BOTH = pytest.mark.parametrize("redis_kind", KINDS, indirect=True)


@BOTH
async def test_transient_error_is_retried_then_succeeds(
    tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    await migrate(pg_pool, settings.pg_schema)
    rt = make_runtime(settings, pg_pool, redis, accelerated=True)
    calls = 0

    async def flaky_clean(doc: Extracted, ctx: StageContext) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("model server hiccup")
        return await clean_stage.run(doc, ctx)

    rt.stage_overrides["clean"] = flaky_clean
    report = await run_batch(rt, BatchOptions("flaky", [one_example(tmp_path)]))
    assert report.done == 1 and report.failed == {}
    assert calls == 2
    doc_id = await pg_pool.fetchval("SELECT id FROM documents")
    st = await redis.hgetall(keys.state(doc_id))
    assert st[state.attempts_field("clean").encode()] == b"2"
    assert st[state.STATUS.encode()] == b"done"


@BOTH
async def test_persistent_error_goes_to_the_dead_letter_stream(
    tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    await migrate(pg_pool, settings.pg_schema)
    rt = make_runtime(
        settings.model_copy(update={"max_deliveries": 2}), pg_pool, redis, accelerated=True
    )

    async def broken_clean(doc: Extracted, ctx: StageContext) -> Any:
        raise RuntimeError("bug in stage code")

    rt.stage_overrides["clean"] = broken_clean
    report = await run_batch(rt, BatchOptions("broken", [one_example(tmp_path)]))
    assert report.done == 0
    [(_name, error)] = report.failed.items()
    assert "gave_up" in error and "bug in stage code" in error
    dead = await redis.xrange(keys.dlq("clean"))
    assert len(dead) == 1 and b"bug in stage code" in dead[0][1][b"error"]
    row = await pg_pool.fetchrow("SELECT status, error FROM documents")
    assert row["status"] == "failed" and "gave_up" in row["error"]


@BOTH
async def test_intake_pauses_while_the_write_behind_backlog_is_over_its_bound(
    settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    await migrate(pg_pool, settings.pg_schema)
    rt = make_runtime(
        settings.model_copy(update={"wb_backlog_max": 3}), pg_pool, redis, accelerated=True
    )
    await rt.transport.setup()
    for n in range(5):  # the backlog is summed over the shards' streams
        await redis.xadd(keys.wb_stream(n % keys.shards), {b"i": str(n).encode()})
    refs = await fingerprint_all("bp", discover([EXAMPLES]).files, new_generation())
    task = asyncio.create_task(_enqueue_with_backpressure(rt, refs, "extract"))
    await asyncio.sleep(0.5)
    assert not task.done()
    assert await stream_length(redis, keys, "extract") == 0
    for stream in keys.wb_streams():  # the writer caught up
        await redis.delete(stream)
    await wait_for(task, 5)
    assert await stream_length(redis, keys, "extract") == len(refs)


async def test_stop_does_not_sit_out_the_readers_blocked_reads(
    settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    """Every stage's reader blocks for BLOCK_MS on an empty stream; stopping abandons
    those reads (the end of a batch run waited ~0.2 s for them, a worker up to 20 s)."""
    await migrate(pg_pool, settings.pg_schema)
    rt = make_runtime(
        settings.model_copy(update={"block_ms": 20_000}), pg_pool, redis, accelerated=True
    )
    stop = asyncio.Event()
    task = asyncio.create_task(rt.engine().run(stop))
    await asyncio.sleep(0.5)  # the readers are blocked by now
    assert not task.done()
    stop.set()
    await wait_for(task, 5)
