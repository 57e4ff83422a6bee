"""A worker's life: a bounded drain on SIGTERM while a stage hangs, and no orphaned
processes after SIGKILL."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import asyncpg
import psutil
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from accelerated.aio import wait_for
from accelerated.batch_run import BatchOptions, run_batch
from accelerated.keys import Keys
from accelerated.settings import Settings
from persistence.schema import migrate
from tests.support import PYTHON, copy_inputs, make_runtime, subprocess_env

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def _worker(settings: Settings, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [PYTHON, "-m", "accelerated.worker"],
        cwd=ROOT,
        env={**subprocess_env(settings), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


async def _until(pred: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await pred():  # type: ignore[operator]
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"not within {seconds}s: {what}")


async def test_sigterm_while_a_stage_hangs_drains_within_the_grace_and_hands_over(
    tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    await migrate(pg_pool, settings.pg_schema)
    src = copy_inputs(tmp_path / "in")
    flag = tmp_path / "hang"
    flag.write_text("1")
    hanging = _worker(
        settings,
        PLUGINS="tests.plugins.toy",
        ENTITY_BACKEND="toy-hang",
        HANG_FILE=str(flag),
        SHUTDOWN_GRACE_S="2",
    )
    rt = make_runtime(settings, pg_pool, redis, accelerated=True)
    batch = asyncio.create_task(run_batch(rt, BatchOptions("drain", [src], consume=False)))
    try:

        async def holding() -> bool:
            # In the hang (entities), holding the messages it read: extract's, since the
            # stages after extract run inline.
            if not flag.with_name(flag.name + ".entered").exists():
                return False
            try:
                info = await redis.xpending(keys.stream("extract"), keys.group("extract"))
            except ResponseError:  # the worker has not made its groups yet
                return False
            return int(info["pending"]) > 0

        await _until(holding, 60, "the hanging worker hangs in entities, holding messages")
        t0 = time.monotonic()
        hanging.send_signal(signal.SIGTERM)
        out, _ = hanging.communicate(timeout=30)
        drain_s = time.monotonic() - t0
        print(f"drain took {drain_s:.2f}s with SHUTDOWN_GRACE_S=2")
        assert hanging.returncode == 0, out.decode(errors="replace")
        assert drain_s < 2 + 8  # the grace, plus start-up of nothing: not the hang
        assert b"giving them back" in out
        # Another worker takes the given-back messages over at once and finishes.
        t1 = time.monotonic()
        helper = _worker(settings)
        try:
            report = await wait_for(batch, 120)
        finally:
            helper.send_signal(signal.SIGTERM)
            helper.communicate(timeout=60)
        print(f"taken over and finished {time.monotonic() - t1:.2f}s after the drain")
        assert report.failed == {} and report.done == report.total > 0
    finally:
        flag.unlink(missing_ok=True)
        if hanging.poll() is None:
            hanging.kill()
        if not batch.done():
            batch.cancel()


async def test_sigkilled_worker_leaves_no_processes_behind(
    tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    await migrate(pg_pool, settings.pg_schema)
    proc = _worker(settings, CPU_POOL="process", CPU_WORKERS="2")
    rt = make_runtime(settings, pg_pool, redis, accelerated=True)
    # Work for the pool, so that its children exist (they start on first use).
    batch = asyncio.create_task(
        run_batch(rt, BatchOptions("kill", [copy_inputs(tmp_path / "in")], consume=False))
    )
    try:
        parent = psutil.Process(proc.pid)
        children: list[psutil.Process] = []

        async def pool_started() -> bool:
            nonlocal children
            children = parent.children(recursive=True)
            return len(children) >= 3  # resource tracker, forkserver, >= 1 pool child

        await _until(pool_started, 60, "the worker's pool processes started")
        proc.kill()
        proc.wait(timeout=30)
        _gone, alive = psutil.wait_procs(children, timeout=10)
        print(f"{len(children)} helper processes, {len(alive)} alive 10 s after SIGKILL")
        assert alive == [], [(p.pid, p.status(), p.cmdline()[-1][:50]) for p in alive]
    finally:
        batch.cancel()
        if proc.poll() is None:
            proc.kill()
