"""Stages run inline: a document's next stage runs in the same task when this engine
serves it and has a slot free, and the outputs of all of them are committed in one
advance. What must not change: every output is in Redis before the message moves on,
the rows are those of a run that hands every stage on, a later ``--reprocess --from``
finds its input, and a stage that fails inline is retried or failed at its own stage.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from accelerated import pipeline, state
from accelerated.aio import wait_for
from accelerated.batch_run import BatchOptions, run_batch
from accelerated.errors import DocumentError, ValueTooLarge
from accelerated.keys import Keys
from accelerated.models import Chunked, Cleaned
from accelerated.settings import Settings
from accelerated.stages import StageContext
from accelerated.stages import chunk as chunk_stage
from accelerated.stages import clean as clean_stage
from accelerated.stages import entities as entities_stage
from persistence.schema import migrate
from tests.conftest import EXAMPLES, KINDS
from tests.support import dump, make_runtime, one_example

BOTH = pytest.mark.parametrize("redis_kind", KINDS, indirect=True)
AFTER_EXTRACT = [s.name for s in pipeline.PIPELINE if s.main and s.name != "extract"]


async def _handed_on(redis: aioredis.Redis, keys: Keys, stages: list[str]) -> int:
    """Messages ever added to these stages' streams (every shard)."""
    total = 0
    for stage in stages:
        for stream in keys.streams(stage):
            if await redis.exists(stream):
                info = await redis.xinfo_stream(stream)
                total += int(info["entries-added"])
    return total


@BOTH
async def test_inline_run_stores_every_output_and_writes_the_rows_of_a_handed_on_run(
    settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    await migrate(pg_pool, settings.pg_schema)
    rt = make_runtime(settings, pg_pool, redis, accelerated=True)
    report = await run_batch(rt, BatchOptions("inline", [EXAMPLES]))
    assert report.done == report.total > 0
    # Nothing was handed on after extract: every later stage ran inline.
    assert await _handed_on(redis, keys, AFTER_EXTRACT) == 0
    done = [r[0] for r in await pg_pool.fetch("SELECT id FROM documents WHERE status = 'done'")]
    assert len(done) == report.done
    for doc in done:
        st = await redis.hgetall(keys.state(doc))
        assert st[state.STATUS.encode()] == b"done"
        for stage in ("extract", "clean", "chunk", "entities", "resolve", "relate"):
            assert await redis.exists(keys.output(doc, stage)), (doc, stage)
            assert state.stage_time_field(stage).encode() in st
            assert st[state.attempts_field(stage).encode()] == b"1"
    rows = await dump(pg_pool)
    assert len(rows["entity_mentions"]) > 0 and len(rows["relationships"]) > 0

    # The same documents with every stage handed on: the same rows.
    await pg_pool.execute("TRUNCATE documents, chunks, entity_mentions, stored_relationships")
    handed = make_runtime(
        settings.model_copy(update={"inline_stages": False}), pg_pool, redis, accelerated=True
    )
    await run_batch(handed, BatchOptions("inline", [EXAMPLES], reprocess=True))
    assert await dump(pg_pool) == rows
    assert await _handed_on(redis, keys, AFTER_EXTRACT) >= 4 * report.done

    # A forced re-run from entities reads the chunks an inline run stored.
    again = make_runtime(settings, pg_pool, redis, accelerated=True)
    rerun = await run_batch(
        again, BatchOptions("inline", [], reprocess=True, from_stage="entities")
    )
    assert rerun.done == report.done and rerun.failed == {}
    assert await dump(pg_pool) == rows


async def test_one_slot_per_stage_still_finishes_every_document(
    settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    """The slot moves from stage to stage with the document (never one more held): with
    one slot per stage a leaked or doubly held slot would stall the run."""
    await migrate(pg_pool, settings.pg_schema)
    rt = make_runtime(
        settings.model_copy(update={"concurrency": 1, "read_count": 1}),
        pg_pool,
        redis,
        accelerated=True,
    )
    report = await wait_for(run_batch(rt, BatchOptions("one-slot", [EXAMPLES])), 120)
    assert report.done == report.total > 1


@BOTH
async def test_a_stage_failing_inline_is_retried_at_its_own_stream(
    tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    await migrate(pg_pool, settings.pg_schema)
    rt = make_runtime(settings, pg_pool, redis, accelerated=True)
    calls = 0

    async def flaky_chunk(doc: Cleaned, ctx: StageContext) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("worker hiccup")
        return await chunk_stage.run(doc, ctx)

    rt.stage_overrides["chunk"] = flaky_chunk
    report = await run_batch(rt, BatchOptions("flaky-inline", [one_example(tmp_path)]))
    assert report.done == 1 and report.failed == {}
    assert calls == 2
    # The stages before it were committed once; chunk went to its own stream (once),
    # carrying the failed attempt. A redelivered message runs its own stage alone, so
    # entities was handed on too, and resolve and relate ran inline after it.
    assert await _handed_on(redis, keys, ["clean"]) == 0
    assert await _handed_on(redis, keys, ["chunk"]) == 1
    assert await _handed_on(redis, keys, ["entities"]) == 1
    assert await _handed_on(redis, keys, ["resolve", "relate"]) == 0
    doc_id = await pg_pool.fetchval("SELECT id FROM documents")
    st = await redis.hgetall(keys.state(doc_id))
    assert st[state.attempts_field("chunk").encode()] == b"2"
    assert st[state.attempts_field("clean").encode()] == b"1"
    assert st[state.STATUS.encode()] == b"done"


async def test_a_deterministic_failure_inline_is_dead_lettered_at_its_stage(
    tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    await migrate(pg_pool, settings.pg_schema)
    rt = make_runtime(settings, pg_pool, redis, accelerated=True)
    calls = 0

    async def broken_entities(doc: Chunked, ctx: StageContext) -> Any:
        nonlocal calls
        calls += 1
        raise ValueTooLarge("a cap the input is over")  # not retryable

    rt.stage_overrides["entities"] = broken_entities
    report = await run_batch(rt, BatchOptions("broken-inline", [one_example(tmp_path)]))
    [(_name, error)] = report.failed.items()
    assert error.startswith("entities:") and "a cap the input is over" in error
    assert calls == 2  # inline, then once at its own stream, where it is dead-lettered
    dead = await redis.xrange(keys.dlq("entities"))
    assert len(dead) == 1 and b"a cap the input is over" in dead[0][1][b"error"]
    assert await redis.xlen(keys.dlq("extract")) == 0


async def test_bad_input_found_inline_fails_the_document_at_once(
    tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    await migrate(pg_pool, settings.pg_schema)
    rt = make_runtime(settings, pg_pool, redis, accelerated=True)
    calls = 0

    async def picky_entities(doc: Chunked, ctx: StageContext) -> Any:
        nonlocal calls
        calls += 1
        if doc.chunks:
            raise DocumentError("hostile chunk", code="hostile")
        return await entities_stage.run(doc, ctx)

    rt.stage_overrides["entities"] = picky_entities
    report = await run_batch(rt, BatchOptions("bad-inline", [one_example(tmp_path)]))
    [(_name, error)] = report.failed.items()
    assert error.startswith("entities: ") and error.endswith("hostile chunk")
    assert calls == 1  # bad input: never run again
    row = await pg_pool.fetchrow("SELECT status, error FROM documents")
    assert row["status"] == "failed" and row["error"] == error
    assert await redis.xlen(keys.dlq("entities")) == 0


async def test_a_stage_holds_its_concurrency_read_and_as_many_inline(
    settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    """A document run inline gives up the slot of the stage it leaves (that stage reads
    the next document, as after a hand-off) and counts against the stage it enters:
    with clean held shut, CONCURRENCY documents enter it inline and, once those are
    taken, as many more through its stream: never more."""
    await migrate(pg_pool, settings.pg_schema)
    n = 2
    rt = make_runtime(
        settings.model_copy(update={"concurrency": n, "read_count": n}),
        pg_pool,
        redis,
        accelerated=True,
    )
    inside = peak = 0
    full = asyncio.Event()

    async def held_clean(doc: Any, ctx: StageContext) -> Any:
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        if inside == 2 * n:
            full.set()
        try:
            with contextlib.suppress(TimeoutError):
                await wait_for(full.wait(), 5)
            return await clean_stage.run(doc, ctx)
        finally:
            inside -= 1

    rt.stage_overrides["clean"] = held_clean
    report = await wait_for(run_batch(rt, BatchOptions("slots", [EXAMPLES])), 120)
    assert report.done == report.total > 2 * n
    assert full.is_set() and peak == 2 * n
