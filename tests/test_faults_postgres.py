"""Postgres faults during a whole batch, on both paths: the connections reset, refused
or stalled by a proxy the test controls, mid-run. Each run ends with the rows of an
uninterrupted run and resumes within 15 s of the fault's end."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from accelerated.batch_run import BatchOptions, run_batch
from accelerated.keys import Keys
from accelerated.models import Extracted
from accelerated.settings import Settings
from accelerated.stages import StageContext
from accelerated.stages import clean as clean_stage
from benchmarks.proxy import dsn_address
from persistence.schema import migrate
from tests import faults
from tests.conftest import DATABASE_URL, EXAMPLES
from tests.support import dump, make_runtime, side_store

pytestmark = pytest.mark.slow


def _inputs(tmp_path: Path, corpus: Path) -> Path:
    src = tmp_path / "in"
    src.mkdir()
    for p in sorted(EXAMPLES.iterdir()):
        if p.is_file():
            shutil.copy(p, src / p.name)
    for p in sorted((corpus / "courtlistener" / "opinions_txt").glob("*.txt"))[:9]:
        shutil.copy(p, src / p.name)
    return src


def _slow_clean() -> Any:
    async def slow(doc: Extracted, ctx: StageContext) -> Any:
        await asyncio.sleep(0.3)  # documents stay in flight while the fault happens
        return await clean_stage.run(doc, ctx)

    return slow


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
    src = _inputs(tmp_path, corpus)
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
            rt.stage_overrides["clean"] = _slow_clean()
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
            report = await asyncio.wait_for(batch, 120)
            recovery = time.monotonic() - fault_end
        finally:
            await pool.close()
    print(
        f"{'accelerated' if accelerated else 'traditional'} {mode.name}: done {recovery:.2f}s after"
    )
    assert report.failed == {} and report.done == report.total == total
    assert await dump(pg_pool) == expected
    assert recovery < 15.0
