"""The engine caches' lease on a content (``_EngineCache.exclusive``): one reader at a
time, renewed while held, freed by expiry when its holder died."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from accelerated import caches
from accelerated.caches import RedisOcrCache
from accelerated.codec import Codec
from accelerated.keys import Keys

SHA = "ab" * 32


async def test_a_second_reader_waits_while_the_lease_is_renewed(
    redis: aioredis.Redis, keys: Keys, codec: Codec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(caches, "LEASE_S", 0.6)  # renewed every 0.2 s while held
    monkeypatch.setattr(caches, "LEASE_POLL_S", 0.05)
    cache = RedisOcrCache(redis, keys, codec, ttl_s=60)
    order: list[str] = []

    async def first() -> None:
        async with cache.exclusive("eng-1", SHA):
            order.append("first in")
            await asyncio.sleep(1.5)  # past the lease's own life: only renewal keeps it
            order.append("first out")

    async def second() -> None:
        await asyncio.sleep(0.1)
        async with cache.exclusive("eng-1", SHA):
            order.append("second in")

    await asyncio.gather(first(), second())
    assert order == ["first in", "first out", "second in"]
    lease = keys.reading(keys.ocr_cache("eng-1", SHA))
    assert await redis.exists(lease) == 0  # released, not left to expire


async def test_a_dead_holders_lease_expires_and_other_contents_never_wait(
    redis: aioredis.Redis, keys: Keys, codec: Codec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(caches, "LEASE_POLL_S", 0.05)
    cache = RedisOcrCache(redis, keys, codec, ttl_s=60)
    # A holder that died: its lease is there, nobody renews it.
    await redis.set(keys.reading(keys.ocr_cache("eng-1", SHA)), b"dead-token", px=700)
    t0 = time.monotonic()
    async with cache.exclusive("eng-1", "cd" * 32):  # another content: at once
        assert time.monotonic() - t0 < 0.5
    async with cache.exclusive("eng-1", SHA):
        waited = time.monotonic() - t0
    assert 0.5 < waited < 5, waited


def test_a_lease_key_is_only_made_of_a_cache_key(keys: Keys) -> None:
    with pytest.raises(ValueError):
        keys.reading("elsewhere:cache:ocr:x")
