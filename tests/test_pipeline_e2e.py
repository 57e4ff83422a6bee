"""End to end, in-process: both paths, re-runs, reprocessing, bad input."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from accelerated import state
from accelerated.batch_run import BatchOptions, run_batch
from accelerated.keys import Keys
from accelerated.settings import Settings
from accelerated.stages.extract import EXTRACTOR_CALLS
from persistence.schema import migrate
from tests.conftest import DATABASE_URL, EXAMPLES, KINDS
from tests.support import dump, make_runtime, outstanding_count, sample_corpus, side_store


def extractor_calls() -> float:
    return sum(
        s.value for m in EXTRACTOR_CALLS.collect() for s in m.samples if s.name.endswith("_total")
    )


@pytest.mark.parametrize("redis_kind", KINDS, indirect=True)
async def test_examples_ingest_on_accelerated_path(
    settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    await migrate(pg_pool, settings.pg_schema)
    rt = make_runtime(settings, pg_pool, redis, accelerated=True)
    report = await run_batch(rt, BatchOptions(project="demo", inputs=[EXAMPLES]))
    assert report.total >= 6
    assert report.failed == {}
    assert report.done == report.total
    assert report.chunks > 0 and report.mentions > 0
    assert report.canonicals > 0 and report.relationships > report.mentions
    assert len(report.latencies_ms) == report.total
    # Every document is terminal in Redis and committed in Postgres.
    assert await outstanding_count(redis, keys, "demo") == 0
    statuses = await pg_pool.fetch("SELECT status, count(*) AS n FROM documents GROUP BY status")
    assert {r["status"]: r["n"] for r in statuses} == {"done": report.total}
    types = {r["type"] for r in await pg_pool.fetch("SELECT DISTINCT type FROM entity_mentions")}
    assert {"CASE_CITATION", "STATUTE", "PARTY"} <= types


async def test_both_paths_give_identical_rows(
    corpus: Path,
    tmp_path: Path,
    settings: Settings,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
) -> None:
    picked = sample_corpus(corpus, tmp_path / "in", n=56)
    assert len(picked) >= 50
    opts = BatchOptions(project="paths", inputs=[tmp_path / "in"])

    await migrate(pg_pool, settings.pg_schema)
    accel = await run_batch(make_runtime(settings, pg_pool, redis, accelerated=True), opts)
    rows_accel = await dump(pg_pool)

    async with side_store(settings, DATABASE_URL, "b") as (settings_b, pool_b, redis_b):
        await migrate(pool_b, settings_b.pg_schema)
        trad = await run_batch(make_runtime(settings_b, pool_b, redis_b, accelerated=False), opts)
        rows_trad = await dump(pool_b)

    assert accel.total == trad.total == len(picked)
    assert (accel.done, accel.needs_ocr, accel.failed) == (trad.done, trad.needs_ocr, trad.failed)
    assert accel.done >= 40
    for table in rows_accel:
        assert len(rows_accel[table]) == len(rows_trad[table]), table
        assert rows_accel[table] == rows_trad[table], table
    assert len(rows_accel["entity_mentions"]) > 100
    # The stored edges and the view (stored + derived) were both compared, neither empty.
    assert len(rows_accel["relationships"]) > len(rows_accel["stored_relationships"]) > 0


async def test_rerun_adds_nothing_and_reprocess_skips_extraction(
    corpus: Path, tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    sample_corpus(corpus, tmp_path / "in", n=12)
    await migrate(pg_pool, settings.pg_schema)
    rt = make_runtime(settings, pg_pool, redis, accelerated=True)
    opts = BatchOptions(project="rerun", inputs=[tmp_path / "in"])

    first = await run_batch(rt, opts)
    rows = await dump(pg_pool)
    failed_in_extract = sum(1 for e in first.failed.values() if e.startswith("extract:"))
    assert first.done >= 8

    # Same input again: finished documents are not queued; only failures are retried.
    calls = extractor_calls()
    second = await run_batch(rt, opts)
    assert second.unchanged == first.total - len(first.failed)
    assert await dump(pg_pool) == rows
    assert extractor_calls() == calls + failed_in_extract

    # --reprocess with nothing changed: every stored output is current, nothing re-runs.
    calls = extractor_calls()
    again = await run_batch(rt, BatchOptions(project="rerun", reprocess=True))
    assert again.total == first.total and again.done == first.done
    assert again.unchanged == first.done + first.needs_ocr
    assert extractor_calls() == calls + failed_in_extract
    assert await dump(pg_pool) == rows

    # --from extract drops the stage outputs but keeps the content cache: no extraction.
    calls = extractor_calls()
    full = await run_batch(rt, BatchOptions(project="rerun", reprocess=True, from_stage="extract"))
    assert full.unchanged == 0 and full.done == first.done
    assert extractor_calls() == calls + failed_in_extract, "reprocess must reuse the cache"
    assert await dump(pg_pool) == rows

    # A setting that changes chunking re-runs from chunk on, still without extraction.
    calls = extractor_calls()
    rechunk = make_runtime(
        settings.model_copy(update={"chunk_chars": 1200, "chunk_overlap": 100}),
        pg_pool,
        redis,
        accelerated=True,
    )
    changed = await run_batch(rechunk, BatchOptions(project="rerun", reprocess=True))
    assert changed.done == first.done and changed.unchanged == first.needs_ocr
    assert changed.chunks > first.chunks
    assert extractor_calls() == calls + failed_in_extract
    rows_rechunked = await dump(pg_pool)
    stale = await pg_pool.fetchval("SELECT count(*) FROM chunks WHERE end_char - start_char > 1200")
    assert stale == 0, "rows of the old chunking must be replaced"

    # --from entities keeps the chunks and gives the same rows again.
    partial = await run_batch(
        rechunk, BatchOptions(project="rerun", reprocess=True, from_stage="entities")
    )
    assert partial.done == first.done
    assert await dump(pg_pool) == rows_rechunked


BAD_FILES: dict[str, bytes] = {
    "corrupt.pdf": b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer garbage",
    "garbage.pdf": bytes(range(256)) * 64,
    "empty.txt": b"",
    "latin-garbage.txt": bytes([0x00, 0xFF, 0xFE, 0x01, 0x02, 0x9D, 0x81]) * 300,
    "not-a-zip.docx": b"this is plainly not a zip archive\n" * 20,
}


def _encrypted_pdf(path: Path) -> None:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.encrypt(user_password="secret", owner_password="owner")
    with path.open("wb") as fh:
        writer.write(fh)


async def test_bad_input_is_recorded_and_the_rest_completes(
    tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for name, data in BAD_FILES.items():
        (src / name).write_bytes(data)
    _encrypted_pdf(src / "encrypted.pdf")
    good = sorted(p for p in EXAMPLES.iterdir() if p.is_file())
    for p in good:
        (src / p.name).write_bytes(p.read_bytes())

    await migrate(pg_pool, settings.pg_schema)
    rt = make_runtime(settings, pg_pool, redis, accelerated=True)
    report = await run_batch(rt, BatchOptions(project="bad", inputs=[src]))

    bad_names = set(BAD_FILES) | {"encrypted.pdf"}
    assert set(report.failed) == bad_names
    assert report.done == len(good)
    expected_codes = {
        "corrupt.pdf": "corrupt",
        "garbage.pdf": "corrupt",
        "empty.txt": "empty",
        "latin-garbage.txt": "not_text",
        "not-a-zip.docx": "corrupt",
        "encrypted.pdf": "encrypted",
    }
    for name, code in expected_codes.items():
        assert f"{code}:" in report.failed[name], (name, report.failed[name])
        doc_id = await pg_pool.fetchval("SELECT id FROM documents WHERE source_key = $1", name)
        st = await redis.hgetall(keys.state(doc_id))
        assert st[state.STATUS.encode()] == b"failed"
        assert code.encode() in st[state.ERROR.encode()]
    errors = await redis.hgetall(keys.failed("bad"))
    assert len(errors) == len(bad_names)


async def test_invalid_ids_are_rejected_before_any_key_is_built(keys: Keys) -> None:
    from accelerated.errors import InvalidIdError

    with pytest.raises(InvalidIdError):
        keys.state("not-a-uuid")
    with pytest.raises(InvalidIdError):
        keys.canonical("../etc")
    assert keys.state(uuid.UUID(int=5)) == keys.state(str(uuid.UUID(int=5)).upper())
