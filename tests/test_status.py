"""``accelerated.status``: what it reports equals what Postgres and the streams hold,
while documents wait in a stream and after a run."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from accelerated import status
from accelerated.aio import wait_for
from accelerated.batch_run import BatchOptions, run_batch
from accelerated.intake import discover, fingerprint_all, new_generation
from accelerated.keys import STAGES, Keys
from accelerated.settings import Settings
from persistence.schema import migrate
from tests.conftest import EXAMPLES, KINDS
from tests.support import (
    PYTHON,
    gated_clean,
    make_runtime,
    outstanding_count,
    stream_length,
    subprocess_env,
    wb_length,
)


async def _truth(pool: asyncpg.Pool, project: str) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT status, count(*) AS n FROM documents WHERE project=$1 GROUP BY status", project
    )
    return {r["status"]: r["n"] for r in rows}


@pytest.mark.parametrize("redis_kind", KINDS, indirect=True)
async def test_status_matches_streams_while_queued_and_database_after_a_run(
    settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    await migrate(pg_pool, settings.pg_schema)
    rt = make_runtime(settings, pg_pool, redis, accelerated=True)
    await rt.transport.setup()
    refs = await fingerprint_all("st", discover([EXAMPLES]).files, new_generation())
    await rt.transport.enqueue(refs[:3], "extract")  # queued, no consumer yet
    st = await status.collect(redis, pg_pool, keys, "st")
    assert st.stages["extract"].stream == 3 == await stream_length(redis, keys, "extract")
    assert st.stages["extract"].lag == 3 and st.stages["extract"].pending == 0
    assert st.outstanding == 3
    assert rt.consumer in st.workers  # setup() wrote its heartbeat
    await redis.xadd(keys.dlq("clean"), {b"ref": b"{}", b"error": b"x"})
    assert (await status.collect(redis, pg_pool, keys, "st")).stages["clean"].dead == 1
    await redis.delete(keys.dlq("clean"))

    report = await run_batch(rt, BatchOptions("st", [EXAMPLES]))
    env = subprocess_env(settings)
    out = await asyncio.to_thread(
        lambda: subprocess.run(
            [PYTHON, "-m", "accelerated.status", "--project", "st", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["documents"] == await _truth(pg_pool, "st")
    assert got["total"] == report.total == len(refs)
    assert got["outstanding"] == await outstanding_count(redis, keys, "st") == 0
    for stage in STAGES:
        assert got["stages"][stage]["stream"] == await stream_length(redis, keys, stage)
        assert got["stages"][stage]["pending"] == 0
    assert got["writer_backlog"] == await wb_length(redis, keys)
    assert got["dlq_total"] == 0
    assert got["done_last_minute"] == report.total and got["eta_s"] == 0.0
    assert got["per_second"] > 0

    # The table form renders the same numbers.
    out = await asyncio.to_thread(
        lambda: subprocess.run(
            [PYTHON, "-m", "accelerated.status", "--project", "st"],
            env=env | {"COLUMNS": "120"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    )
    assert out.returncode == 0 and "project st" in out.stdout and "docs/s" in out.stdout


def test_status_without_urls_is_a_configuration_error(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run(
        [PYTHON, "-m", "accelerated.status", "--project", "p", "--json"],
        env=env | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert out.returncode == 2 and "REDIS_URL is not set" in out.stderr


@pytest.mark.parametrize("inline", [False, True])
async def test_status_during_a_run_matches_postgres_and_the_streams(
    settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys, inline: bool
) -> None:
    """Every document held at ``clean`` (a gate in the stage): the run is frozen mid-way,
    so what status reports can be compared exactly, then the run is let go. Run inline
    after extract, the documents' messages are extract's (pending there) until their
    stages commit together."""
    await migrate(pg_pool, settings.pg_schema)
    settings = settings.model_copy(update={"inline_stages": inline})
    rt = make_runtime(settings, pg_pool, redis, accelerated=True)
    held, other = ("extract", "clean") if inline else ("clean", "extract")
    gate = asyncio.Event()
    gated = gated_clean(gate)
    rt.stage_overrides["clean"] = gated
    n = len(discover([EXAMPLES]).files)
    run = asyncio.create_task(run_batch(rt, BatchOptions("mid", [EXAMPLES])))
    try:
        for _ in range(200):
            if gated.held == n and await redis.xlen(keys.stream(held)) == n:
                break
            await asyncio.sleep(0.05)
        st = await status.collect(redis, pg_pool, keys, "mid")
        assert st.documents == await _truth(pg_pool, "mid") == {"queued": n}
        assert st.outstanding == n and st.eta_s is None  # nothing finished yet: no rate
        held_st = st.stages[held]
        assert held_st.stream == n and held_st.pending + (held_st.lag or 0) == n
        assert held_st.pending >= 1  # the engine holds some, blocked in the stage
        assert st.stages[other].stream == 0 and st.dlq_total == 0
        assert rt.consumer in st.workers
    finally:
        gate.set()
        report = await wait_for(run, 120)
    st = await status.collect(redis, pg_pool, keys, "mid")
    assert st.documents == {"done": report.total} and st.outstanding == 0


async def test_watch_redraws_until_ctrl_c_and_exits_0(
    settings: Settings, pg_pool: asyncpg.Pool
) -> None:
    await migrate(pg_pool, settings.pg_schema)
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "accelerated.status", "--project", "w", "--watch", "--interval", "0.2",
        env=subprocess_env(settings) | {"COLUMNS": "120"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await asyncio.sleep(3)
        assert proc.returncode is None  # still watching
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = await wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err
    assert "workers alive" in out.decode()  # (without a tty Live shows the last frame only)


def test_tools_exit_3_when_redis_is_down_and_never_print_its_password(
    settings: Settings,
) -> None:
    from tests.faults import free_port

    url = f"redis://:s3cretpw@127.0.0.1:{free_port()}/0"
    for tool in (["accelerated.status", "--project", "p", "--json"], ["accelerated.dlq", "list"]):
        out = subprocess.run(
            [PYTHON, "-m", *tool],
            env=subprocess_env(settings) | {"REDIS_URL": url},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 3, (tool, out.stderr)
        assert "unavailable" in out.stderr and "s3cretpw" not in out.stderr + out.stdout
