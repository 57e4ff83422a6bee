"""Real processes: SIGKILLed workers and batches, two workers at once, the CLI's exits."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from accelerated.aio import wait_for
from accelerated.batch_run import BatchOptions, run_batch
from accelerated.keys import Keys
from accelerated.settings import Settings
from persistence.schema import migrate
from tests.conftest import DATABASE_URL, EXAMPLES
from tests.support import (
    dump,
    make_runtime,
    place_file,
    reference_rows,
    sample_corpus,
    spawn,
    stop_output,
)

pytestmark = pytest.mark.slow


async def _wait_some_progress(redis: aioredis.Redis, keys: Keys, project: str, total: int) -> None:
    """Until at least one document is finished but some are still in flight."""
    for _ in range(600):
        left = await redis.scard(keys.outstanding(project))
        if 0 < left < total:
            return
        await asyncio.sleep(0.05)
    pytest.fail("no progress seen within 30 s")


async def test_sigkilled_worker_loses_nothing(
    corpus: Path,
    tmp_path: Path,
    settings: Settings,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    sample_corpus(corpus, tmp_path / "in", n=24)
    await migrate(pg_pool, settings.pg_schema)
    rt = make_runtime(settings, pg_pool, redis, accelerated=True)
    batch = asyncio.create_task(
        run_batch(rt, BatchOptions("killw", [tmp_path / "in"], consume=False))
    )
    first = spawn(["accelerated.worker"], settings, CONCURRENCY="4")
    try:
        await _wait_some_progress(redis, keys, "killw", 24)
        first.kill()
        first.wait(timeout=30)
        second = spawn(["accelerated.worker"], settings)
        report = await wait_for(batch, timeout=180)
        log = stop_output(second)
    finally:
        for p in (first,):
            if p.poll() is None:
                p.kill()
    assert report.done + report.needs_ocr + len(report.failed) == 24, log
    rows = await dump(pg_pool)
    async with reference_rows(settings, DATABASE_URL, tmp_path / "in", "killw") as ref:
        assert rows == ref


async def test_sigkilled_batch_resumes_with_the_same_command(
    corpus: Path,
    tmp_path: Path,
    settings: Settings,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    sample_corpus(corpus, tmp_path / "in", n=24)
    args = ["accelerated.batch", "--project", "killb", "--input", str(tmp_path / "in")]
    proc = spawn(args, settings, CONCURRENCY="4")
    await _wait_some_progress(redis, keys, "killb", 24)
    proc.kill()
    proc.wait(timeout=30)
    again = spawn(args, settings)
    out = again.communicate(timeout=240)[0].decode()
    assert again.returncode in (0, 1), out
    assert "killb" in out
    rows = await dump(pg_pool)
    async with reference_rows(settings, DATABASE_URL, tmp_path / "in", "killb") as ref:
        assert rows == ref


async def test_two_workers_never_duplicate_canonical_entities(
    corpus: Path,
    tmp_path: Path,
    settings: Settings,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    sample_corpus(corpus, tmp_path / "in", n=16)
    for p in EXAMPLES.iterdir():  # the examples share parties and organisations
        place_file(p, tmp_path / "in" / p.name)
    await migrate(pg_pool, settings.pg_schema)
    rt = make_runtime(settings, pg_pool, redis, accelerated=True)
    workers = [spawn(["accelerated.worker"], settings) for _ in range(2)]
    try:
        report = await wait_for(
            run_batch(rt, BatchOptions("two", [tmp_path / "in"], consume=False)), timeout=240
        )
    finally:
        logs = [stop_output(w) for w in workers]
    assert report.done > 10, logs
    dupes = await pg_pool.fetch(
        "SELECT type, key, count(*) FROM canonical_entities "
        "GROUP BY project, type, key HAVING count(*) > 1"
    )
    assert dupes == []
    n_rows = await pg_pool.fetchval("SELECT count(*) FROM canonical_entities WHERE project = 'two'")
    assert await redis.hlen(keys.canonical("two")) == n_rows > 0
    # Both workers really ran against the same streams (and stopped cleanly on SIGTERM).
    assert all("started" in log and "stopped" in log for log in logs), logs


def test_cli_falls_back_to_traditional_path_when_redis_is_down(
    settings: Settings, pg_pool: asyncpg.Pool
) -> None:
    env = {"REDIS_URL": "redis://127.0.0.1:1/0"}
    proc = spawn(
        ["accelerated.batch", "--project", "fallback", "--input", str(EXAMPLES)], settings, **env
    )
    out = proc.communicate(timeout=240)[0].decode()
    assert proc.returncode == 0, out
    assert "unreachable" in out and "traditional" in out
    assert "summary: path=traditional documents=7 done=7" in out


def test_cli_exits_non_zero_and_lists_failed_documents(
    settings: Settings, pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "empty.pdf").write_bytes(b"")
    (src / "order.txt").write_text(
        "ORDER\n\nIT IS ORDERED that the motion is granted. "
        "Smith v. Jones, 123 F.3d 456 (9th Cir. 1999).\n"
    )
    proc = spawn(["accelerated.batch", "--project", "exitcode", "--input", str(src)], settings)
    out = proc.communicate(timeout=240)[0].decode()
    assert proc.returncode == 1, out
    assert "empty.pdf" in out and "empty" in out


def test_worker_refuses_to_start_without_redis(settings: Settings, pg_pool: asyncpg.Pool) -> None:
    proc = spawn(["accelerated.worker"], settings, REDIS_URL="redis://127.0.0.1:1/0")
    out = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 3, out  # infrastructure unavailable (README: exit codes)
    assert "needs Redis" in out
