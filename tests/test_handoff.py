"""In-process reuse on the accelerated path: stage outputs and intents kept in memory.

Redis always holds the durable copy; memory only saves GET + decode. So the same run
with the memo disabled must give exactly the same rows, and a memo must never grow
without bound or keep documents that are finished.
"""

from __future__ import annotations

import asyncpg
import msgspec
import pytest
import redis.asyncio as aioredis

from accelerated import ids
from accelerated.batch_run import BatchOptions, run_batch
from accelerated.handoff import CONTENT_READ, AcceleratedHandoff
from accelerated.models import SourceRef
from accelerated.settings import Settings
from persistence.schema import migrate
from tests.conftest import EXAMPLES
from tests.support import dump, make_runtime


@pytest.mark.parametrize("budget", [32 * 1024 * 1024, 0])
async def test_memo_saves_reads_and_changes_nothing(
    settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis, budget: int
) -> None:
    await migrate(pg_pool, settings.pg_schema)
    # Every stage handed on through its stream (none inline), so each one asks.
    settings = settings.model_copy(update={"inline_stages": False})
    rt = make_runtime(
        settings.model_copy(update={"handoff_memo_bytes": budget}), pg_pool, redis, accelerated=True
    )
    handoff = rt.handoff
    assert isinstance(handoff, AcceleratedHandoff) and rt.writer is not None
    assert rt.writer.memo is not None
    report = await run_batch(rt, BatchOptions("memo", [EXAMPLES]))
    assert report.done + report.needs_ocr == report.total > 0
    # Every stage after extract asks for its input once per document.
    asked = handoff.memo_hits + handoff.memo_misses
    assert asked >= 5 * report.done
    if budget:
        assert handoff.memo_misses == 0
    else:
        assert handoff.memo_hits == 0
    assert handoff._recent == {} and handoff._recent_bytes == 0  # finished: forgotten
    # The writer in this process took every intent the handoff queued, undecoded.
    assert rt.writer.memo.hits == report.total and len(rt.writer.memo) == 0
    rows = await dump(pg_pool)
    assert len(rows["chunks"]) > 0 and len(rows["relationships"]) > 0
    # Intake registered every document first; none had rows yet: all copied straight in.
    per_doc = sum(len(rows[t]) for t in ("chunks", "entity_mentions", "stored_relationships"))
    assert rt.writer.stats.copied_rows == per_doc and rt.writer.stats.merged_rows == 0
    await pg_pool.execute("TRUNCATE documents, chunks, entity_mentions, stored_relationships")
    # Same documents through a runtime with no memo at all: the same rows.
    plain = make_runtime(
        settings.model_copy(update={"handoff_memo_bytes": 0}), pg_pool, redis, accelerated=True
    )
    plain.writer.memo = None  # type: ignore[union-attr]
    await run_batch(plain, BatchOptions("memo", [EXAMPLES], reprocess=True))
    assert await dump(pg_pool) == rows
    assert plain.writer is not None and plain.writer.stats.copied_rows == per_doc


async def test_reprocessed_documents_are_merged_not_copied(
    settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    await migrate(pg_pool, settings.pg_schema)
    rt = make_runtime(settings, pg_pool, redis, accelerated=True)
    await run_batch(rt, BatchOptions("merge", [EXAMPLES]))
    before = await dump(pg_pool)
    again = make_runtime(settings, pg_pool, redis, accelerated=True)
    await run_batch(again, BatchOptions("merge", [], reprocess=True, from_stage="extract"))
    assert again.writer is not None
    assert again.writer.stats.copied_rows == 0 and again.writer.stats.merged_rows > 0
    assert await dump(pg_pool) == before


async def test_an_intent_refused_as_stale_is_not_kept_in_memory(
    settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    rt = make_runtime(settings, pg_pool, redis, accelerated=True)
    handoff, memo = rt.handoff, rt.writer.memo  # type: ignore[union-attr]
    assert isinstance(handoff, AcceleratedHandoff) and memo is not None
    await rt.transport.setup()
    ref = SourceRef(
        document_id=ids.document_id("stale", "a.txt"), project="stale", source="/a.txt",
        source_key="a.txt", sha256="0" * 64, size=1, format="txt", generation=1,
    )  # fmt: skip
    await rt.transport.enqueue([ref], "extract")
    [msg] = await rt.transport.read("extract", 1, 100)
    await rt.transport.enqueue([msgspec.structs.replace(ref, generation=2)], "extract")
    await handoff.fail(msg, "extract: corrupt_file: test")
    assert len(memo) == 0 and memo.hits == 0
    assert await redis.xlen(rt.keys.wb_stream()) == 0


async def test_a_finished_documents_last_output_is_a_marker_its_inputs_are_kept(
    settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    """relate's output is in the intent's rows already: its key only says "current" to
    reprocess planning; every output a stage or the intent reads keeps its content."""
    await migrate(pg_pool, settings.pg_schema)
    rt = make_runtime(settings, pg_pool, redis, accelerated=True)
    report = await run_batch(rt, BatchOptions("marker", [EXAMPLES]))
    assert report.done > 0
    done = [
        ids.document_id("marker", p.relative_to(EXAMPLES).as_posix())
        for p in sorted(EXAMPLES.rglob("*"))
        if p.is_file()
    ]
    seen = 0
    for doc in done:
        if await redis.hget(rt.keys.state(doc), "status") != b"done":
            continue
        seen += 1
        marker = await redis.get(rt.keys.output(doc, "relations"))
        assert marker is not None and rt.codec.decode(marker, type(None)) is None
        for key in sorted(CONTENT_READ):
            if key == "structured":
                continue  # only where the structure stage is enabled
            raw = await redis.get(rt.keys.output(doc, key))
            assert raw is not None and rt.codec.decompress(raw) not in (b"null", b""), key
    assert seen == report.done
    # A reprocess with nothing changed still finds every stage current.
    again = await run_batch(rt, BatchOptions("marker", [], reprocess=True))
    assert again.unchanged == report.done + report.needs_ocr
