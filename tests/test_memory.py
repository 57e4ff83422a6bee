"""Redis memory: finished documents' keys expire, a full Redis is waited out or ends
the run within a bound, and an eviction policy that could drop streams is refused."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from accelerated.aio import wait_for
from accelerated.batch_run import BatchOptions, run_batch
from accelerated.connect import open_clients
from accelerated.errors import BackendUnavailable, ConfigError
from accelerated.keys import Keys
from accelerated.settings import Settings
from persistence.schema import migrate
from tests.conftest import DATABASE_URL
from tests.faults import RedisServer
from tests.support import copy_inputs, dump, make_runtime, redis_from_url, side_store


async def test_finished_documents_keys_expire_and_come_back_to_life_when_requeued(
    tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    s = settings.model_copy(update={"ttl_done_s": 120})
    await migrate(pg_pool, s.pg_schema)
    rt = make_runtime(s, pg_pool, redis, accelerated=True)
    report = await run_batch(rt, BatchOptions("ttl", [copy_inputs(tmp_path / "in")]))
    assert report.done == report.total > 0
    ids = [r[0] for r in await pg_pool.fetch("SELECT id FROM documents")]
    total_bytes = 0
    for doc in ids:
        for key in [keys.state(doc), *keys.outputs(doc)]:
            ttl = await redis.ttl(key)
            if ttl == -2:
                continue  # an output this document never had
            assert 0 < ttl <= 120, key
            total_bytes += int(await redis.memory_usage(key) or 0)
    caches = [k async for k in redis.scan_iter(match=f"{s.redis_prefix}:cache:*")]
    assert caches
    cache_bytes = 0
    for k in caches:
        assert await redis.ttl(k) > 120  # the content caches keep their long TTLs
        cache_bytes += int(await redis.memory_usage(k) or 0)
    print(
        f"Redis bytes per done document: {total_bytes / len(ids):,.0f} until TTL_DONE_S, "
        f"then 0; content caches kept for TTL_CACHE_S: {cache_bytes / len(ids):,.0f}"
    )

    # Queued again (reprocess), the state and outputs must outlive the new run.
    refs = [r for r in await _refs(rt, ids)]
    await rt.transport.enqueue(refs, "clean")
    for doc in ids:
        assert await redis.ttl(keys.state(doc)) == -1
        assert await redis.ttl(keys.output(doc, "ocr")) > 120


async def _refs(rt: object, ids: list[object]) -> list[object]:
    from persistence.documents import project_documents

    known = await project_documents(rt.pool, "ttl")  # type: ignore[attr-defined]
    from accelerated.intake import fingerprint_all, new_generation

    files = [(Path(r.source), r.source_key) for r in known]
    return await fingerprint_all("ttl", files, new_generation())  # type: ignore[return-value]


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["fail", "wait"])
async def test_a_full_redis_is_waited_out_or_ends_the_run_within_its_bound(
    policy: str, tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool
) -> None:
    await migrate(pg_pool, settings.pg_schema)
    src = copy_inputs(tmp_path / "in")
    with RedisServer(tmp_path / "redis", maxmemory="1mb") as server:
        s = settings.model_copy(
            update={"redis_url": server.url, "redis_outage": policy, "redis_outage_limit_s": 3.0}
        )
        client = redis_from_url(server.url)
        # Fill it up to the limit with keys of our own.
        for i in range(100_000):
            try:
                await client.set(f"{s.redis_prefix}:filler:{i}", b"x" * 1000)
            except Exception:  # OOM: full
                break
        notices: list[str] = []
        rt = make_runtime(s, pg_pool, client, accelerated=True)
        t0 = time.monotonic()
        batch = asyncio.create_task(
            run_batch(rt, BatchOptions("full", [src]), notice=notices.append)
        )
        if policy == "fail":
            with pytest.raises(BackendUnavailable, match="REDIS_OUTAGE_LIMIT_S"):
                await wait_for(batch, 60)
            print(f"a full Redis ended the run after {time.monotonic() - t0:.1f}s (limit 3 s)")
            assert time.monotonic() - t0 < 3.0 + 10
        else:
            await asyncio.sleep(4.0)
            assert not batch.done()  # waiting, visibly
            await client.config_set("maxmemory", "0")  # memory freed
            freed = time.monotonic()
            report = await wait_for(batch, 60)
            print(f"done {time.monotonic() - freed:.1f}s after Redis had room again")
            assert report.done == report.total > 0
            assert any("Redis answers again" in n for n in notices)
        assert any("maxmemory" in n for n in notices), notices
        await client.aclose()


async def test_an_allkeys_eviction_policy_is_refused_at_start_up(
    tmp_path: Path, settings: Settings
) -> None:
    with RedisServer(tmp_path / "redis") as server:
        client = redis_from_url(server.url)
        await client.config_set("maxmemory-policy", "allkeys-lru")
        await client.aclose()
        s = settings.model_copy(update={"redis_url": server.url})
        with pytest.raises(ConfigError, match=r"allkeys-lru.*ALLOW_EVICTION"):
            async with open_clients(s):
                pass
        allowed = s.model_copy(update={"allow_eviction": True})
        async with open_clients(allowed) as clients:
            assert clients.redis is not None
            assert any("allkeys-lru" in n for n in clients.notices)


async def test_outputs_over_the_value_cap_spill_instead_of_failing(
    tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    """A document whose stage outputs and intent are over MAX_VALUE_BYTES is done, with
    exactly the rows it gets without the cap."""
    src = copy_inputs(tmp_path / "in")
    capped = settings.model_copy(
        update={"max_value_bytes": 4096, "spill_dir": tmp_path / "spill", "ttl_done_s": 0}
    )
    await migrate(pg_pool, capped.pg_schema)
    rt = make_runtime(capped, pg_pool, redis, accelerated=True)
    report = await run_batch(rt, BatchOptions("spill", [src]))
    assert report.failed == {} and report.done == report.total > 0
    assert rt.codec.spilled > 0 and any((tmp_path / "spill").iterdir())
    rows = await dump(pg_pool)
    async with side_store(settings, DATABASE_URL, "nocap") as (s2, pool2, redis2):
        await migrate(pool2, s2.pg_schema)
        await run_batch(
            make_runtime(s2, pool2, redis2, accelerated=True), BatchOptions("spill", [src])
        )
        assert rows == await dump(pool2)
    off = capped.model_copy(update={"spill": False, "redis_prefix": capped.redis_prefix + "x"})
    report = await run_batch(
        make_runtime(off, pg_pool, redis, accelerated=True), BatchOptions("nospill", [src])
    )
    assert report.failed and all("MAX_VALUE_BYTES" in e for e in report.failed.values())
