"""Jepsen-style: ten random SIGKILLs of workers and one of the batch in one run.

The batch queues and consumes; two workers help. A seeded random schedule kills a
worker (and starts a new one) ten times and kills the batch once (and runs the same
command again). The run must end with exactly the rows of an uninterrupted run, every
document terminal, and no process of the run left alive.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import time
from pathlib import Path

import asyncpg
import psutil
import pytest
import redis.asyncio as aioredis

from accelerated.keys import Keys
from accelerated.settings import Settings
from tests.conftest import DATABASE_URL
from tests.support import PYTHON, dump, reference_rows, sample_corpus, subprocess_env

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
N_DOCS = 40


def _spawn(args: list[str], settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    try:
        return subprocess.Popen(
            [PYTHON, "-m", *args],
            cwd=ROOT,
            env={
                **subprocess_env(settings),
                "CONCURRENCY": "4",
                "CPU_POOL": "process",
                "CPU_WORKERS": "1",
                # A consumer killed while it holds a message counts as a delivery (that is
                # how a document that crashes its worker ends in the dead-letter stream).
                # Eleven kills in a few seconds, most of them while the new process is
                # still starting, can hit one document three times: the cap is raised
                # because this test is about losing and duplicating nothing.
                "MAX_DELIVERIES": "20",
            },
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    finally:
        out.close()


def _family(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    try:
        p = psutil.Process(proc.pid)
        return [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


async def test_ten_worker_kills_and_one_batch_kill_lose_and_duplicate_nothing(
    corpus: Path,
    tmp_path: Path,
    settings: Settings,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    src = tmp_path / "in"
    sample_corpus(corpus, src, n=N_DOCS)
    log = tmp_path / "chaos.log"
    rng = random.Random(20261201)
    batch_args = ["accelerated.batch", "--project", "chaos", "--input", str(src)]
    batch = _spawn(batch_args, settings, log)
    workers = [_spawn(["accelerated.worker"], settings, log) for _ in range(2)]
    everyone: list[psutil.Process] = []
    kills, batch_killed = 0, False
    t0 = time.monotonic()
    try:
        while kills < 10 or not batch_killed:
            await asyncio.sleep(rng.uniform(0.3, 1.2))
            everyone += [p for w in (*workers, batch) for p in _family(w)]
            if not batch_killed and kills == 4:
                batch.kill()
                batch.wait(timeout=30)
                batch = _spawn(batch_args, settings, log)  # the same command again
                batch_killed = True
                continue
            victim = rng.randrange(len(workers))
            workers[victim].kill()
            workers[victim].wait(timeout=30)
            workers[victim] = _spawn(["accelerated.worker"], settings, log)
            kills += 1
        last_kill = time.monotonic()
        code = await asyncio.to_thread(batch.wait, 300)
        ended = time.monotonic()
        print(
            f"chaos: 10 worker kills + 1 batch kill over {last_kill - t0:.1f}s; "
            f"batch ended {ended - last_kill:.1f}s after the last kill, exit {code}"
        )
        assert code in (0, 1), log.read_text()[-3000:]
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(timeout=60)
            except subprocess.TimeoutExpired:
                w.kill()
        if batch.poll() is None:
            batch.kill()
    everyone += [p for w in (*workers, batch) for p in _family(w)]
    _gone, alive = psutil.wait_procs({p.pid: p for p in everyone}.values(), timeout=15)
    assert alive == [], [(p.pid, p.name()) for p in alive]
    left = await redis.scard(keys.outstanding("chaos"))
    assert left == 0
    rows = await dump(pg_pool)
    async with reference_rows(settings, DATABASE_URL, src, "chaos") as ref:
        for table in ref:
            assert rows[table] == ref[table], table
