"""What the operator tools (``status``, ``dlq``, ``export``) share: clients to the
servers a pipeline already uses.

Unlike ``batch`` these tools never start embedded servers nor fall back to another
path: they look at what a run left in Redis and Postgres, so both URLs must be given
and an unreachable server is an outage (exit 3), not a reason to start an empty one.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg  # type: ignore[import-untyped]
from redis.exceptions import RedisClusterException, RedisError

from accelerated.cli import _url_problems, load_settings
from accelerated.cluster import RedisClient
from accelerated.connect import redis_client
from accelerated.errors import BackendUnavailable, ConfigError
from accelerated.keys import Keys
from accelerated.logs import apply_log_format
from accelerated.redact import redact
from accelerated.settings import Settings
from accelerated.shards import default_shards
from accelerated.shards import resolve as shards_resolve
from persistence.pg import create_pool
from persistence.schema import migrate


@dataclass
class ToolClients:
    settings: Settings
    keys: Keys
    redis: RedisClient | None
    pool: asyncpg.Pool | None


def tool_settings() -> Settings:
    """Settings from the environment; both URLs required and well formed."""
    settings = load_settings()
    if settings.redis_url is None:
        raise ConfigError("REDIS_URL is not set: this tool reads the Redis a pipeline uses")
    if settings.database_url is None:
        raise ConfigError("DATABASE_URL is not set: this tool reads the pipeline's Postgres")
    # The URL checks of validate_startup; the stage backends are not built (not used).
    problems = _url_problems("REDIS_URL", settings.redis_url)
    problems += _url_problems("DATABASE_URL", settings.database_url)
    if problems:
        raise ConfigError("\n".join(problems))
    apply_log_format(settings.log_format)  # as batch and worker do, once settings are read
    return settings


@contextlib.asynccontextmanager
async def tool_clients(
    settings: Settings, *, need_redis: bool = True, need_pg: bool = True
) -> AsyncIterator[ToolClients]:
    async with contextlib.AsyncExitStack() as stack:
        redis = None
        if need_redis:
            assert settings.redis_url is not None
            redis = redis_client(settings.redis_url, settings)
            stack.push_async_callback(redis.aclose)
            try:
                await redis.ping()
            except (RedisError, RedisClusterException, OSError) as exc:
                raise BackendUnavailable(
                    f"Redis at {redact(settings.redis_url)}: {redact(str(exc))}", backend="redis"
                ) from None
            # The shard count the pipeline's keys were laid out with (status sums over
            # the shards, dlq replay queues into the document's own).
            shards = await shards_resolve(redis, settings.redis_prefix, settings.stream_shards)
            settings = settings.model_copy(update={"stream_shards": shards})
        pool = None
        if need_pg:
            pool = await create_pool(settings)
            stack.push_async_callback(pool.close)
            await migrate(pool, settings.pg_schema)
        keys = Keys(settings.redis_prefix, settings.stream_shards or default_shards(redis))
        yield ToolClients(settings, keys, redis, pool)
