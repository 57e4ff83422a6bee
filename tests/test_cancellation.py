"""A cancelled task stays cancelled: Ctrl-C, a stage time limit and a shutdown rely on it.

Python 3.11's ``asyncio.wait_for`` drops the cancellation when it lands in the loop
iteration in which the inner awaitable finishes, and redis-py wraps every socket
write in it: before ``accelerated.aio``, most cancellations of a task issuing Redis
commands were lost and a Ctrl-C'd batch ran on to its end.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from accelerated.aio import wait_for
from accelerated.batch_run import BatchOptions, run_batch
from accelerated.connect import redis_client
from accelerated.settings import Settings
from persistence.schema import migrate
from tests.support import copy_inputs, make_runtime, slow_clean


async def test_wait_for_keeps_a_cancellation_that_lands_as_the_inner_future_finishes() -> None:
    inner: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(wait_for(inner, 10))
    await asyncio.sleep(0)  # the task now waits on inner
    inner.set_result(1)  # done, and the task is woken in the next iteration...
    task.cancel()  # ...in which the cancellation arrives too
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_wait_for_times_out_and_returns() -> None:
    with pytest.raises(TimeoutError):
        await wait_for(asyncio.sleep(5), 0.05)
    assert await wait_for(asyncio.sleep(0, "x"), 1) == "x"
    assert await wait_for(asyncio.sleep(0, "y"), None) == "y"


async def test_a_task_issuing_redis_commands_is_always_cancelled(
    redis: aioredis.Redis, prefix: str, settings: Settings
) -> None:
    client = redis_client(str(settings.redis_url), settings)
    key = f"{prefix}:cancel"

    async def loop() -> int:
        for _ in range(5000):
            await client.set(key, b"1")
        return 5000

    lost = 0
    try:
        for _ in range(200):
            task = asyncio.create_task(loop())
            await asyncio.sleep(random.random() * 0.005)
            task.cancel()
            try:
                await wait_for(task, 30)
                lost += 1
            except asyncio.CancelledError:
                pass
        assert await client.ping()  # the connections are still usable afterwards
    finally:
        await client.aclose()
    assert lost == 0, f"{lost} of 200 cancellations were lost"


@pytest.mark.slow
async def test_a_batch_cancelled_during_intake_or_processing_ends_cancelled(
    corpus: Path, tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool
) -> None:
    src = copy_inputs(tmp_path / "in", corpus, 20)
    await migrate(pg_pool, settings.pg_schema)
    for i, delay in enumerate((0.05, 0.2, 0.5, 1.0)):
        s = settings.model_copy(update={"concurrency": 1})
        client = redis_client(str(s.redis_url), s)
        rt = make_runtime(s, pg_pool, client, accelerated=True)
        # Slow enough that the run is still going at the last delay: warm caches and a
        # writer that commits the first batch at once can finish 20 documents in 1 s.
        rt.stage_overrides["clean"] = slow_clean(0.2)
        batch = asyncio.create_task(run_batch(rt, BatchOptions(f"cancel{i}", [src])))
        try:
            await asyncio.sleep(delay)
            assert not batch.done(), f"the batch ended before its cancel at {delay}s"
            batch.cancel()
            with pytest.raises(asyncio.CancelledError):
                await wait_for(asyncio.shield(batch), 60)
        finally:
            if not batch.done():
                batch.cancel()
                await asyncio.gather(batch, return_exceptions=True)
            rt.close()
            await client.aclose()
