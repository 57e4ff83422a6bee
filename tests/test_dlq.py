"""Dead letters: list, show, replay after the cause is fixed (ends ``done``), refusal
of a changed input, purge; and the CLI's output and exit codes."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from accelerated import dlq, state
from accelerated.aio import wait_for
from accelerated.batch_run import BatchOptions, run_batch
from accelerated.keys import Keys
from accelerated.models import Extracted
from accelerated.runtime import Runtime
from accelerated.settings import Settings
from accelerated.stages import StageContext
from accelerated.stages.clean import run as clean
from persistence.schema import migrate
from tests.conftest import EXAMPLES, KINDS
from tests.support import PYTHON, make_runtime, subprocess_env


async def _cli(args: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(lambda: subprocess.run(args, check=False, **kw))


def _inputs(tmp_path: Path, n: int = 2) -> Path:
    src = tmp_path / "in"
    src.mkdir()
    for f in sorted(p for p in EXAMPLES.iterdir() if p.is_file())[:n]:
        shutil.copyfile(f, src / f.name)
    return src


def _poisoned(rt: Runtime, broken: dict[str, bool], victim: str) -> None:
    """``clean`` fails for ``victim`` while ``broken['on']``: a cause one can fix."""

    async def flaky_clean(doc: Extracted, ctx: StageContext) -> Any:
        if broken["on"] and ctx.source is not None and ctx.source.source_key == victim:
            raise RuntimeError("poisoned by the test")
        return await clean(doc, ctx)

    rt.stage_overrides["clean"] = flaky_clean


async def _process_until_done(rt: Runtime, pool: asyncpg.Pool, doc_id: Any) -> str:
    stop = asyncio.Event()
    task = asyncio.create_task(rt.engine().run(stop))
    status = ""
    try:
        for _ in range(300):
            status = await pool.fetchval("SELECT status FROM documents WHERE id = $1", doc_id)
            if status == "done":
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await wait_for(task, 30)
    return str(status)


@pytest.mark.parametrize("redis_kind", KINDS, indirect=True)
async def test_poisoned_document_is_dead_lettered_then_replayed_to_done(
    tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    await migrate(pg_pool, settings.pg_schema)
    src = _inputs(tmp_path)
    victim = sorted(p.name for p in src.iterdir())[0]
    rt = make_runtime(
        settings.model_copy(update={"max_deliveries": 2}), pg_pool, redis, accelerated=True
    )
    broken = {"on": True}
    _poisoned(rt, broken, victim)
    report = await run_batch(rt, BatchOptions("dl", [src]))
    assert len(report.failed) == 1 and report.done == report.total - 1

    [letter] = await dlq.list_letters(redis, keys, "clean")
    assert letter.ref.source_key == victim and "poisoned by the test" in letter.error
    assert letter.attempts == 2
    shown = await dlq.get_letter(redis, keys, "clean", letter.id)
    assert shown == letter
    assert await dlq.list_letters(redis, keys, "clean", project="other") == []
    doc_id = letter.ref.document_id
    assert await pg_pool.fetchval("SELECT status FROM documents WHERE id=$1", doc_id) == "failed"

    broken["on"] = False  # the cause is fixed
    res = await dlq.replay(redis, keys, "clean")
    assert [x.id for x in res.replayed] == [letter.id] and res.refused == []
    assert await redis.xlen(keys.dlq("clean")) == 0
    st = await redis.hgetall(keys.state(doc_id))
    assert st[state.STATUS.encode()] == b"queued" and st[state.STAGE.encode()] == b"clean"
    assert await redis.sismember(keys.outstanding("dl", keys.shard(doc_id)), str(doc_id))
    assert await _process_until_done(rt, pg_pool, doc_id) == "done"
    row = await pg_pool.fetchrow("SELECT status, error FROM documents WHERE id=$1", doc_id)
    assert row["status"] == "done" and row["error"] is None
    assert await pg_pool.fetchval("SELECT count(*) FROM chunks WHERE document_id=$1", doc_id) > 0
    assert await redis.hget(keys.failed("dl", keys.shard(doc_id)), str(doc_id)) is None


async def test_replay_of_a_changed_input_is_refused_and_purge_empties(
    tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    await migrate(pg_pool, settings.pg_schema)
    src = _inputs(tmp_path, 1)
    [victim] = [p.name for p in src.iterdir()]
    rt = make_runtime(
        settings.model_copy(update={"max_deliveries": 1}), pg_pool, redis, accelerated=True
    )
    _poisoned(rt, {"on": True}, victim)
    await run_batch(rt, BatchOptions("dl", [src]))
    [letter] = await dlq.list_letters(redis, keys, "clean")
    (src / victim).write_bytes((src / victim).read_bytes() + b"\nedited\n")
    res = await dlq.replay(redis, keys, "clean")
    assert res.replayed == []
    [(x, why)] = res.refused
    assert x.id == letter.id and "changed since" in why
    assert await redis.xlen(keys.dlq("clean")) == 1  # kept: nothing was queued
    assert await redis.xlen(keys.stream("clean")) == 0

    env = subprocess_env(settings)
    out = await _cli(
        [PYTHON, "-m", "accelerated.dlq", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert [d["id"] for d in json.loads(out.stdout)] == [letter.id]
    out = await _cli(
        [PYTHON, "-m", "accelerated.dlq", "replay", "--stage", "clean"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and "refused" in out.stdout and "changed since" in out.stdout
    out = await _cli(
        [PYTHON, "-m", "accelerated.dlq", "show", "0-1", "--stage", "clean"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "no dead letter" in out.stderr
    out = await _cli(
        [PYTHON, "-m", "accelerated.dlq", "purge", "--stage", "clean", "--project", "dl"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "1 dead letter(s) purged" in out.stdout
    assert await redis.xlen(keys.dlq("clean")) == 0
