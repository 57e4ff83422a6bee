"""Postgres faults during a whole batch, on both paths: the connections reset, refused
or stalled by a proxy the test controls, mid-run. Each run ends with the rows of an
uninterrupted run and resumes within 15 s of the fault's end."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from accelerated.aio import wait_for
from accelerated.batch_run import BatchOptions, run_batch
from accelerated.keys import Keys
from accelerated.settings import Settings
from benchmarks.proxy import dsn_address
from persistence.schema import migrate
from tests import faults
from tests.conftest import DATABASE_URL
from tests.support import copy_inputs, dump, make_runtime, side_store, slow_clean

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("accelerated", [True, False], ids=["accelerated", "traditional"])
@pytest.mark.parametrize("mode", [faults.Mode.RESET, faults.Mode.REFUSE, faults.Mode.STALL])
async def test_postgres_fault_mid_batch(
    accelerated: bool,
    mode: faults.Mode,
    corpus: Path,
    tmp_path: Path,
    settings: Settings,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    src = copy_inputs(tmp_path / "in", corpus, 9)
    total = len(list(src.iterdir()))
    s = settings.model_copy(update={"concurrency": 2, "read_count": 2})
    async with side_store(s, DATABASE_URL, "ref") as (s_ref, pool_ref, redis_ref):
        await migrate(pool_ref, s_ref.pg_schema)
        await run_batch(
            make_runtime(s_ref, pool_ref, redis_ref, accelerated=accelerated),
            BatchOptions("pgfault", [src]),
        )
        expected = await dump(pool_ref)
    await migrate(pg_pool, s.pg_schema)
    async with faults.FaultProxy(dsn_address(DATABASE_URL)) as proxy:
        pool = await asyncpg.create_pool(
            faults.via(DATABASE_URL, proxy.port),
            min_size=1,
            max_size=4,
            command_timeout=10,
            server_settings={"search_path": s.pg_schema},
        )
        try:
            rt = make_runtime(s, pool, redis, accelerated=accelerated)
            rt.stage_overrides["clean"] = slow_clean()
            batch = asyncio.create_task(run_batch(rt, BatchOptions("pgfault", [src])))
            for _ in range(400):
                left = await redis.scard(keys.outstanding("pgfault"))
                if 0 < left < total - 2:
                    break
                await asyncio.sleep(0.05)
            await proxy.set_mode(mode)
            await asyncio.sleep(3.0)
            await proxy.set_mode(faults.Mode.PASS)
            fault_end = time.monotonic()
            report = await wait_for(batch, 120)
            recovery = time.monotonic() - fault_end
        finally:
            await pool.close()
    print(
        f"{'accelerated' if accelerated else 'traditional'} {mode.name}: done {recovery:.2f}s after"
    )
    assert report.failed == {} and report.done == report.total == total
    assert await dump(pg_pool) == expected
    assert recovery < 15.0
