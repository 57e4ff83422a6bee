"""Intake in parts: the engine gets the first files while the rest are fingerprinted
and registered, so a large input does not keep every stage idle until all of it is
hashed (500 files took 0.3 s before the first stage ran)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from accelerated import batch_run
from accelerated.aio import wait_for
from accelerated.batch_run import BatchOptions, run_batch
from accelerated.settings import Settings
from accelerated.stages import StageContext
from accelerated.stages import extract as extract_stage
from persistence.schema import migrate
from tests.conftest import EXAMPLES
from tests.support import dump, make_runtime


@pytest.mark.parametrize("accelerated", [True, False])
async def test_the_first_files_run_while_the_rest_are_planned(
    settings: Settings,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    accelerated: bool,
) -> None:
    await migrate(pg_pool, settings.pg_schema)
    rt = make_runtime(settings, pg_pool, redis, accelerated=accelerated)
    started = asyncio.Event()

    async def extract(ref: Any, ctx: StageContext) -> Any:
        started.set()
        return await extract_stage.run(ref, ctx)

    rt.stage_overrides["extract"] = extract
    plan_files = batch_run._plan_files
    later: list[int] = []

    async def after_the_head_started(*args: Any) -> Any:
        # Fails (times out) unless the head's documents were already being worked on.
        await wait_for(started.wait(), 30)
        later.append(len(args[2]))
        return await plan_files(*args)

    monkeypatch.setattr(batch_run, "HEAD_FILES", 2)
    monkeypatch.setattr(batch_run, "_plan_files", after_the_head_started)
    files = sorted(p for p in EXAMPLES.iterdir() if p.is_file())
    report = await run_batch(rt, BatchOptions("parts", [EXAMPLES]))
    assert later and later[0] == report.total - 2 > 0
    assert report.total == len(files) or report.skipped_files > 0
    assert report.done + report.needs_ocr == report.total and report.failed == {}
    rows = await dump(pg_pool)
    assert len(rows["documents"]) == report.total


async def test_parts_write_the_rows_of_one_whole_plan(
    settings: Settings,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await migrate(pg_pool, settings.pg_schema)
    report = await run_batch(
        make_runtime(settings, pg_pool, redis, accelerated=True), BatchOptions("w", [EXAMPLES])
    )
    whole = await dump(pg_pool)
    await pg_pool.execute("TRUNCATE documents, chunks, entity_mentions, stored_relationships")
    monkeypatch.setattr(batch_run, "HEAD_FILES", 1)
    again = await run_batch(
        make_runtime(settings, pg_pool, redis, accelerated=True),
        BatchOptions("w", [EXAMPLES], reprocess=True),
    )
    assert again.total == report.total and again.done == report.done
    assert await dump(pg_pool) == whole
    # Unchanged and finished: a third run, in parts, queues nothing.
    third = await run_batch(
        make_runtime(settings, pg_pool, redis, accelerated=True), BatchOptions("w", [EXAMPLES])
    )
    assert third.unchanged == third.total == report.total
