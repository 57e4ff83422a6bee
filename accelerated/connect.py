"""The CLI edge: turn settings into live clients (starting embedded servers if needed).

This is the one place that decides what happens when Redis is unreachable at
start-up: say so, and run the traditional path instead of failing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import AuthenticationError, RedisClusterException, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from accelerated.aio import connection_class
from accelerated.cluster import (
    RedisClient,
    cluster_client,
    eviction_infos,
    is_cluster_url,
    max_connections,
)
from accelerated.embedded import EmbeddedServers, check_eviction_policy
from accelerated.errors import ConfigError
from accelerated.redact import redact
from accelerated.settings import Settings
from accelerated.shards import resolve as shards_resolve
from persistence.pg import create_pool
from persistence.schema import migrate

log = logging.getLogger(__name__)


@dataclass
class Clients:
    settings: Settings  # with the URLs actually in use
    pool: asyncpg.Pool
    redis: RedisClient | None
    notices: list[str]


def redis_client(url: str, settings: Settings) -> RedisClient:
    """The client every component shares: reconnects with jittered backoff (redis-py's
    ``Retry``), a socket timeout above the longest blocking read (a stalled server
    must time out, never hang a reader for ever; redis-py#3138), and connections
    whose write timeout keeps a task's cancellation (``accelerated.aio``). A
    ``redis+cluster://`` URL gives the cluster client (``accelerated.cluster``)."""
    socket_timeout = max(10.0, settings.block_ms / 1000 + 5.0)
    if is_cluster_url(url):
        shards = settings.stream_shards or 64  # a ceiling only: see max_connections
        return cluster_client(
            url, socket_timeout=socket_timeout, pool_size=max_connections(settings, shards)
        )
    return aioredis.Redis.from_url(
        url,
        connection_class=connection_class(url),
        socket_connect_timeout=3,
        socket_timeout=socket_timeout,
        socket_keepalive=True,
        health_check_interval=30,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), 3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


async def _redis_or_none(url: str, notices: list[str], settings: Settings) -> RedisClient | None:
    """A live client, or None (with a notice) when Redis cannot be reached.

    Wrong credentials are a configuration error, not an outage: falling back to the
    slow path would hide a typo in REDIS_URL behind a run that merely takes longer.
    """
    try:
        client = redis_client(url, settings)
    except ValueError as exc:
        raise ConfigError(f"REDIS_URL={redact(url)} is not valid: {redact(str(exc))}") from None
    try:
        await client.ping()
        infos = await eviction_infos(client)
    except AuthenticationError as exc:
        await client.aclose()
        raise ConfigError(
            f"REDIS_URL: Redis at {redact(url)} refused the credentials ({redact(str(exc))})"
        ) from None
    except (RedisError, RedisClusterException, OSError) as exc:
        await client.aclose()
        notices.append(
            f"Redis at {redact(url)} is unreachable ({redact(str(exc))}); running the "
            "traditional, database-centric path instead"
        )
        return None
    warning = next((w for w in map(check_eviction_policy, infos) if w), None)
    if warning:
        if not settings.allow_eviction:
            await client.aclose()
            raise ConfigError(f"{warning} (or set ALLOW_EVICTION=true to run anyway)")
        notices.append(warning)
    return client


@contextlib.asynccontextmanager
async def open_clients(settings: Settings) -> AsyncIterator[Clients]:
    """Connect to the configured servers, or to embedded ones started for this run."""
    need_redis = settings.redis_url is None
    need_pg = settings.database_url is None
    notices: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        if need_redis or need_pg:
            servers = await stack.enter_async_context(
                EmbeddedServers(settings.state_dir, need_redis=need_redis, need_postgres=need_pg)
            )
            updates = {}
            if need_redis:
                updates["redis_url"] = servers.redis_url
                notices.append(f"started embedded Redis at {redact(str(servers.redis_url))}")
            if need_pg:
                updates["database_url"] = servers.database_url
                notices.append(f"started embedded Postgres under {settings.state_dir}")
            settings = settings.model_copy(update=updates)
        redis = None
        if settings.redis_url is not None:
            redis = await _redis_or_none(settings.redis_url, notices, settings)
            if redis is not None:
                stack.push_async_callback(redis.aclose)
                shards = await shards_resolve(redis, settings.redis_prefix, settings.stream_shards)
                settings = settings.model_copy(update={"stream_shards": shards})
        pool = await create_pool(settings)
        stack.push_async_callback(pool.close)
        await migrate(pool, settings.pg_schema)
        yield Clients(settings, pool, redis, notices)
