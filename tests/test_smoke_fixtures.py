import asyncio

import asyncpg
import redis.asyncio as aioredis

from accelerated.keys import Keys


async def test_redis_and_pg_fixtures_are_isolated(
    redis: aioredis.Redis, keys: Keys, pg_pool: asyncpg.Pool, pg_schema: str
) -> None:
    await redis.set(keys.lock("x"), b"1")
    assert await redis.get(keys.lock("x")) == b"1"
    assert await pg_pool.fetchval("SELECT current_schema()") == pg_schema


async def test_loop_exception_handler_collects() -> None:
    loop = asyncio.get_running_loop()
    seen: list[object] = []
    handler = loop.get_exception_handler()
    assert handler is not None
    loop.set_exception_handler(lambda _l, ctx: seen.append(ctx))
    loop.call_exception_handler({"message": "probe"})
    assert seen
    loop.set_exception_handler(handler)
