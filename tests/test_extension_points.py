"""Extension points: backends picked by settings alone, on both paths; time limits;
a supervised CPU pool whose children die or hang; start-up validation of backends."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from accelerated import pipeline
from accelerated.backends import resolve_backends
from accelerated.batch_run import BatchOptions, run_batch
from accelerated.errors import ConfigError
from accelerated.keys import Keys
from accelerated.models import Extracted
from accelerated.runtime import build_runtime, make_executor
from accelerated.settings import Settings
from accelerated.stages import StageContext
from accelerated.stages import clean as clean_stage
from persistence.schema import migrate
from tests.conftest import DATABASE_URL, EXAMPLES
from tests.support import dump, make_runtime, side_store

SCAN = "doctor/opinions_pdf/image-pdf.pdf"  # two scanned pages, no text layer


def _inputs(tmp_path: Path, corpus: Path) -> Path:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(corpus / SCAN, src / "scan.pdf")
    for p in sorted(EXAMPLES.iterdir())[:3]:
        shutil.copy(p, src / p.name)
    return src


async def test_toy_ocr_and_async_entity_backend_by_settings_on_both_paths(
    corpus: Path, tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    src = _inputs(tmp_path, corpus)
    toy = settings.model_copy(
        update={
            "plugins": ["tests.plugins.toy"],
            "ocr_backend": "toy-ocr",
            "entity_backend": "toy-async",
        }
    )
    opts = BatchOptions(project="toys", inputs=[src])
    await migrate(pg_pool, toy.pg_schema)
    accel = await run_batch(make_runtime(toy, pg_pool, redis, accelerated=True), opts)
    rows_accel = await dump(pg_pool)
    async with side_store(toy, DATABASE_URL, "t") as (toy_b, pool_b, redis_b):
        await migrate(pool_b, toy_b.pg_schema)
        trad = await run_batch(make_runtime(toy_b, pool_b, redis_b, accelerated=False), opts)
        rows_trad = await dump(pool_b)

    for report in (accel, trad):
        assert report.failed == {}
        assert report.needs_ocr == 0  # the scan went through the toy OCR engine
        assert report.done == report.total == 4
    scan = await pg_pool.fetchrow(
        "SELECT method, text FROM documents WHERE source_key = 'scan.pdf'"
    )
    assert scan["method"] == "ocr"
    assert "Toy OCR page 1" in scan["text"] and "Toy OCR page 2" in scan["text"]
    types = {r[0] for r in await pg_pool.fetch("SELECT DISTINCT type FROM entity_mentions")}
    assert types == {"COURT"}  # only what the toy async backend reports
    for table in rows_accel:
        for a, b in zip(rows_accel[table], rows_trad[table], strict=True):
            assert a == b, (table, [(x, y) for x, y in zip(a, b, strict=True) if x != y])


async def test_without_an_ocr_engine_scans_end_as_needs_ocr(
    corpus: Path, tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    src = _inputs(tmp_path, corpus)
    settings = settings.model_copy(update={"ocr_backend": "none"})  # tesseract by default
    await migrate(pg_pool, settings.pg_schema)
    report = await run_batch(
        make_runtime(settings, pg_pool, redis, accelerated=True), BatchOptions("plain", [src])
    )
    assert report.needs_ocr == 1 and report.done == 3
    assert (report.ocr_pages, report.ocr_cached_pages) == (0, 0)
    # The registry routes extract's needs_ocr outcome to a terminal status here.
    out = Extracted(
        document_id=__import__("uuid").uuid4(),
        sha256="0" * 64,
        format="pdf",
        method="needs_ocr",
        text="",
        pages=[],
        needs_ocr=True,
    )
    assert pipeline.stage("extract").route(out, settings) == pipeline.Finish("needs_ocr")
    with_ocr = settings.model_copy(update={"ocr_backend": "toy-ocr"})
    assert pipeline.stage("extract").route(out, with_ocr) == "ocr"


def test_unknown_backend_or_plugin_is_one_config_error(settings: Settings) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_backends(settings.model_copy(update={"entity_backend": "spacy"}))
    msg = str(info.value)
    assert "ENTITY_BACKEND='spacy'" in msg and "known:" in msg and "\n" not in msg
    with pytest.raises(ConfigError, match="OCR_BACKEND='nope'"):
        resolve_backends(settings.model_copy(update={"ocr_backend": "nope"}))
    with pytest.raises(ConfigError, match="PLUGINS"):
        resolve_backends(settings.model_copy(update={"plugins": ["no_such_module_here"]}))


async def test_a_stage_that_hangs_is_timed_out_retried_then_dead_lettered(
    tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for p in sorted(EXAMPLES.iterdir())[:3]:
        shutil.copy(p, src / p.name)
    hung = sorted(src.iterdir())[0].name
    limited = settings.model_copy(update={"stage_time_limits": {"clean": 0.5}, "max_deliveries": 2})
    await migrate(pg_pool, limited.pg_schema)
    rt = make_runtime(limited, pg_pool, redis, accelerated=True)
    calls: dict[str, int] = {}

    async def clean_or_hang(doc: Extracted, ctx: StageContext) -> Any:
        assert ctx.source is not None
        calls[ctx.source.source_key] = calls.get(ctx.source.source_key, 0) + 1
        if ctx.source.source_key == hung:
            await asyncio.sleep(3600)
        return await clean_stage.run(doc, ctx)

    rt.stage_overrides["clean"] = clean_or_hang
    report = await run_batch(rt, BatchOptions("hang", [src]))
    assert report.done == 2
    assert list(report.failed) == [hung]
    assert "time limit of 0.5s" in report.failed[hung]
    assert calls[hung] == 2  # retried once, then given up
    dlq = await redis.xrange(keys.dlq("clean"))
    assert len(dlq) == 1 and b"StageTimeout" in dlq[0][1][b"error"]


@pytest.mark.parametrize("how", ["kill", "hang"])
async def test_pool_children_that_die_or_hang_are_replaced(
    how: str,
    tmp_path: Path,
    settings: Settings,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        (src / f"doc{i}.txt").write_text(
            f"The Court of Appeals heard case {i}. " + ("SABOTAGE " if i == 1 else "") * 3
        )
    flag = tmp_path / "once"
    flag.write_text("1")
    monkeypatch.setenv("SABOTAGE_FILE", str(flag))
    monkeypatch.setenv("SABOTAGE", how)
    s = settings.model_copy(
        update={
            "plugins": ["tests.plugins.toy"],
            "entity_backend": "toy-pool",
            "cpu_pool": "process",
            "cpu_workers": 2,
            # Above a cold child's start-up (imports, the backend's first load) on a
            # loaded 2-core machine: a replaced child pays it inside the limit.
            "stage_time_limits": {"entities": 10.0},
        }
    )
    await migrate(pg_pool, s.pg_schema)
    pool = make_executor(s)
    assert pool is not None
    try:
        rt = build_runtime(s, pg_pool, redis, executor=pool)
        report = await run_batch(rt, BatchOptions("pool", [src]))
        assert report.failed == {} and report.done == 4
        assert pool.rebuilds >= 1  # the dead or stuck child was replaced
        assert not flag.exists()  # the sabotage really happened
        # The pool still works after the rebuild.
        assert pool.submit(sum, [1, 2]).result(timeout=30) == 3
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


async def test_the_same_scan_under_three_names_is_read_by_the_engine_once(
    corpus: Path, tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    """Duplicates of one scan in one batch (an attachment in every e-mail of a thread)
    arrive side by side: one document reads it, the others wait for its lease and take
    its pages from the cache."""
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.pdf", "b.pdf", "c.pdf"):
        shutil.copy(corpus / SCAN, src / name)
    toy = settings.model_copy(update={"plugins": ["tests.plugins.toy"], "ocr_backend": "toy-ocr"})
    await migrate(pg_pool, toy.pg_schema)
    report = await run_batch(
        make_runtime(toy, pg_pool, redis, accelerated=True), BatchOptions("dups", [src])
    )
    assert report.done == report.total == 3, report.failed
    assert (report.ocr_pages, report.ocr_cached_pages) == (2, 4)
    texts = {r["text"] for r in await pg_pool.fetch("SELECT text FROM documents")}
    assert len(texts) == 1 and "Toy OCR page 2" in texts.pop()
