"""Redis Cluster: the same rows as one Redis, workers killed on it, and the layout rules.

Against the session's three-master cluster (``tests/cluster_server.py``); every test
here fails if a node replied CROSSSLOT meanwhile (the ``redis_url`` fixture checks
each node's error counters). The reference rows come from one uninterrupted run on the
session's single Redis, in a schema of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import MaxConnectionsError, ResponseError
from redis.utils import str_if_bytes

from accelerated import aio, ids
from accelerated.batch_run import BatchOptions, run_batch
from accelerated.cli import validate_startup
from accelerated.cluster import (
    DEFAULT_CLUSTER_SHARDS,
    PipelineCluster,
    RedisClient,
    cluster_client,
    mget,
)
from accelerated.connect import open_clients
from accelerated.errors import ConfigError
from accelerated.keys import STAGES, Keys
from accelerated.models import SourceRef
from accelerated.settings import Settings
from accelerated.transport import RedisTransport
from persistence.schema import migrate
from tests.conftest import DATABASE_URL, REDIS_URL
from tests.support import (
    dump,
    make_runtime,
    outstanding_count,
    reference_rows,
    sample_corpus,
    spawn,
    stop_output,
)

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("redis_kind", ["cluster"], indirect=True)]


def single_redis_rows(
    settings: Settings, inputs: Path, project: str
) -> contextlib.AbstractAsyncContextManager[dict[str, list[tuple[Any, ...]]]]:
    """Rows of one uninterrupted in-process run on the session's single Redis."""
    one = settings.model_copy(update={"redis_url": REDIS_URL})
    return reference_rows(one, DATABASE_URL, inputs, project, "one")


async def test_the_batch_command_on_a_cluster_gives_the_rows_of_one_redis(
    corpus: Path, tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool, redis: RedisClient
) -> None:
    """``REDIS_URL=redis+cluster://... python -m accelerated.batch`` over 56 corpus
    documents of every format: exactly the rows one Redis gives."""
    picked = sample_corpus(corpus, tmp_path / "in", n=56)
    assert len(picked) >= 50
    assert str(settings.redis_url).startswith("redis+cluster://")
    args = ["accelerated.batch", "--project", "cl", "--input", str(tmp_path / "in")]
    proc = spawn(args, settings)
    try:
        out = await asyncio.to_thread(proc.communicate, timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = out[0].decode(errors="replace")
    assert proc.returncode in (0, 1), log  # 1: some corpus documents fail by design
    assert "summary: path=accelerated" in log, log
    rows = await dump(pg_pool)
    assert len(rows["documents"]) == len(picked)
    assert rows["chunks"] and rows["entity_mentions"] and rows["relationships"]
    # The keys really were spread: documents of every shard, shards on every master.
    keys = Keys(settings.redis_prefix, DEFAULT_CLUSTER_SHARDS)
    shards = {keys.shard(r[0]) for r in rows["documents"]}
    assert shards == set(range(DEFAULT_CLUSTER_SHARDS))
    assert isinstance(redis, RedisCluster)
    masters = {redis.get_node_from_key(keys.stream("extract", n)).name for n in shards}
    assert len(masters) == 3
    async with single_redis_rows(settings, tmp_path / "in", "cl") as expected:
        assert rows == expected


async def test_two_workers_on_a_cluster_one_sigkilled_end_with_the_rows_of_one_redis(
    corpus: Path,
    tmp_path: Path,
    settings: Settings,
    pg_pool: asyncpg.Pool,
    redis: RedisClient,
    keys: Keys,
) -> None:
    sample_corpus(corpus, tmp_path / "in", n=16)
    await migrate(pg_pool, settings.pg_schema)
    rt = make_runtime(settings, pg_pool, redis, accelerated=True)
    assert rt.keys.shards == DEFAULT_CLUSTER_SHARDS
    batch = asyncio.create_task(
        run_batch(rt, BatchOptions("killc", [tmp_path / "in"], consume=False))
    )
    workers = [spawn(["accelerated.worker"], settings, CONCURRENCY="4") for _ in range(2)]
    logs: list[str] = []
    try:
        for _ in range(600):
            left = await outstanding_count(redis, keys, "killc")
            # Under way (one document done) and the first worker holds messages. With
            # stages run inline a worker holds one message per document, so the window
            # is narrower than when every stage was handed on.
            if 0 < left < 16 and await _pending_to(redis, keys, workers[0].pid) > 0:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("no progress within 30 s")
        workers[0].kill()  # SIGKILL mid-run: its messages stay pending to a dead consumer
        workers[0].wait(timeout=30)
        report = await aio.wait_for(batch, 240)
    finally:
        batch.cancel()
        await asyncio.gather(batch, return_exceptions=True)
        logs = [stop_output(w) for w in workers]
    assert report.done + report.needs_ocr + len(report.failed) == 16, logs
    assert "started" in logs[1] and "stopped" in logs[1], logs[1]
    rows = await dump(pg_pool)
    async with single_redis_rows(settings, tmp_path / "in", "killc") as expected:
        assert rows == expected


async def _pending_to(redis: RedisClient, keys: Keys, pid: int) -> int:
    """Stage messages pending to the consumers of process ``pid`` (host-pid-suffix)."""
    total = 0
    for stage in STAGES:
        for stream in keys.streams(stage):
            with contextlib.suppress(ResponseError):  # no group yet
                for info in await redis.xinfo_consumers(stream, keys.group(stage)):
                    if f"-{pid}-" in str_if_bytes(info["name"]):
                        total += int(info["pending"])
    return total


def _refs(project: str, n: int) -> list[SourceRef]:
    return [
        SourceRef(
            document_id=ids.document_id(project, f"d{i}"),
            project=project,
            source=f"/in/d{i}.txt",
            source_key=f"d{i}.txt",
            sha256=f"{i:064x}",
            size=1,
            format="txt",
            generation=1,
        )
        for i in range(n)
    ]


async def test_each_shard_is_read_by_its_own_reader_and_counts_add_up(
    redis: RedisClient, keys: Keys
) -> None:
    t = RedisTransport(redis, keys, "reader")
    await t.setup()
    refs = _refs("shards", 40)
    await t.enqueue(refs, "clean")
    assert await t.outstanding("shards") == 40
    by_shard: dict[int, set[str]] = {}
    for ref in refs:
        by_shard.setdefault(keys.shard(ref.document_id), set()).add(str(ref.document_id))
    assert len(by_shard) > 1
    for shard in range(keys.shards):
        msgs = await t.read("clean", 100, 10, shard)
        assert {str(m.ref.document_id) for m in msgs} == by_shard.get(shard, set())
        assert all(m.shard == shard for m in msgs)
    assert await t.outstanding_ids("shards") == {str(r.document_id) for r in refs}


async def test_a_different_shard_count_on_the_same_prefix_is_refused(
    redis: RedisClient, settings: Settings, keys: Keys
) -> None:
    await RedisTransport(redis, keys, "first").setup()
    other = Keys(keys.prefix, keys.shards * 2)
    with pytest.raises(ConfigError, match=f"laid out with {keys.shards} shards"):
        await RedisTransport(redis, other, "second").setup()
    # Unset, a process adopts the recorded count; set to another, it refuses to start.
    async with open_clients(settings) as clients:
        assert clients.settings.stream_shards == keys.shards
    wrong = settings.model_copy(update={"stream_shards": keys.shards + 1})
    with pytest.raises(ConfigError, match="STREAM_SHARDS"):
        async with open_clients(wrong):
            pass


async def test_the_cluster_client_uses_the_cancellation_safe_connections(
    redis: RedisClient,
) -> None:
    assert isinstance(redis, PipelineCluster)
    await redis.ping(target_nodes=RedisCluster.ALL_NODES)
    nodes = redis.get_nodes()
    assert len(nodes) == 3
    assert all(n.connection_class is aio.Connection for n in nodes)
    assert {type(c) for n in nodes for c in n._connections} == {aio.Connection}


async def test_a_full_node_pool_waits_instead_of_failing(redis_url: str) -> None:
    """redis-py#3135: a pool at max_connections raises at once; ours waits for one."""
    client = cluster_client(redis_url, socket_timeout=10, pool_size=2)
    try:
        key = "{pool-test}k"
        await client.set(key, b"1")
        node = client.get_node_from_key(key)
        results = await asyncio.gather(*(client.get(key) for _ in range(50)))
        assert results == [b"1"] * 50
        assert len(node._connections) <= 2
        # What redis-py itself does, without the wait:
        plain = await asyncio.gather(
            *(RedisCluster.execute_command(client, "GET", key) for _ in range(50)),
            return_exceptions=True,
        )
        assert any(isinstance(r, MaxConnectionsError) for r in plain)
    finally:
        await client.delete("{pool-test}k")
        await client.aclose()


async def test_an_mget_across_slots_works(redis: RedisClient, keys: Keys) -> None:
    names = [f"{keys.prefix}:cache:entities:v1:{i:064x}" for i in range(30)]
    for i, name in enumerate(names[:20]):
        await redis.set(name, str(i).encode())
    assert await mget(redis, names) == [str(i).encode() for i in range(20)] + [None] * 10


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+cluster://n1:7000,n2:x", "port of 'n2:x' is not a number"),
        ("redis+cluster://n1:7000/3", "only database 0"),
        ("rediss+cluster://u:s3cret@,n2:7000", "names no host"),
        ("redis+cluster://[::1:7000", "unclosed"),
    ],
)
def test_a_bad_cluster_url_is_one_line_at_start_up(url: str, why: str, settings: Settings) -> None:
    with pytest.raises(ConfigError) as info:
        validate_startup(settings.model_copy(update={"redis_url": url}))
    [line] = str(info.value).splitlines()
    assert line.startswith("REDIS_URL=") and why in line and "s3cret" not in line


async def test_an_unreachable_cluster_runs_the_traditional_path(settings: Settings) -> None:
    down = settings.model_copy(update={"redis_url": "redis+cluster://127.0.0.1:1,127.0.0.1:2"})
    async with open_clients(down) as clients:
        assert clients.redis is None
        assert any("unreachable" in n and "traditional" in n for n in clients.notices)
