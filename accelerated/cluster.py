"""Redis Cluster: the URL form, the client, and the few calls that differ from one Redis.

``REDIS_URL=redis+cluster://[user:password@]host1:port1,host2:port2,...[/0][?opt=v]``
(``rediss+cluster://`` for TLS) names seed nodes; the client discovers the rest of the
cluster from them. Query options are redis-py's URL options, as for ``redis://``.

What makes the pipeline work on a cluster is the key layout (``accelerated.keys``:
every script's and MULTI's keys share one slot) and one reader per stream shard
(``accelerated.engine``); this module only builds the client and covers the calls
whose cluster form differs:

* The connections are :mod:`accelerated.aio`'s cancellation-safe classes, as for one
  Redis. ``RedisCluster`` hard-codes redis-py's own, so they are swapped in the node
  keyword arguments before any connection exists (nodes found later copy them).
* ``socket_timeout`` stays above the longest blocking read, as for one Redis
  (redis-py#3138: a blocking XREADGROUP otherwise times out and reconnects).
* The async cluster client raises ``MaxConnectionsError`` when a node's pool is full
  instead of waiting (redis-py#3135); its pipelines even treat that as a node failure
  and close the whole client. So ``max_connections`` per node is sized from the
  settings above what one process can have in flight at once (every stream reader
  blocked, every stage at full concurrency: :func:`max_connections`), and a single
  command that still meets a full pool waits for a free connection instead of failing.
* Multi-key reads across slots (the entity cache's MGET) use ``mget_nonatomic``;
  Lua inside a cluster MULTI is sent as EVAL (redis-py refuses EVALSHA in cluster
  pipelines, and a NOSCRIPT inside a MULTI would fail one command after the others
  ran): :func:`queue_script`.
* SCAN in ``scan_iter`` already visits every primary on the cluster client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias
from urllib.parse import unquote

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import AsyncScript
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError
from redis.exceptions import TimeoutError as RedisTimeoutError

from accelerated import aio
from accelerated.pipeline import STAGE_NAMES

CLUSTER_SCHEMES: Final = ("redis+cluster", "rediss+cluster")
# Shards when STREAM_SHARDS is unset: one on a single Redis (nothing changes there);
# on a cluster enough to spread the streams over a few masters (about 3 per master
# of a three-master cluster) without a blocked reader per stage per shard costing much.
DEFAULT_CLUSTER_SHARDS: Final = 8

RedisClient: TypeAlias = aioredis.Redis | RedisCluster
AnyPipeline: TypeAlias = Pipeline | ClusterPipeline


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def is_cluster(redis: RedisClient | None) -> bool:
    return isinstance(redis, RedisCluster)


@dataclass(frozen=True)
class ClusterURL:
    nodes: list[tuple[str, int]]
    options: dict[str, Any] = field(default_factory=dict)  # redis-py connection options
    tls: bool = False


def parse_cluster_url(url: str) -> ClusterURL:
    """``redis+cluster://[user:pw@]h1:p1,h2:p2[/0][?options]``; ValueError says what is wrong."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in CLUSTER_SCHEMES:
        raise ValueError(f"scheme must be {' or '.join(s + '://' for s in CLUSTER_SCHEMES)}")
    tls = scheme.lower() == "rediss+cluster"
    end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, tail = rest[:end], rest[end:]
    userinfo, at, hostlist = netloc.rpartition("@")
    if not at:
        userinfo = ""
    path, _q, query = tail.partition("?")
    if path not in ("", "/", "/0"):
        raise ValueError(f"a cluster has only database 0, not {unquote(path[1:])!r}")
    nodes: list[tuple[str, int]] = []
    for part in hostlist.split(","):
        part = part.strip()
        if not part:
            raise ValueError("names no host (expected host:port,host:port,...)")
        if part.startswith("["):  # [IPv6]:port
            host, bracket, after = part[1:].partition("]")
            if not bracket:
                raise ValueError(f"unclosed '[' in {part!r}")
            port_text = after[1:] if after.startswith(":") else ""
        else:
            host, _c, port_text = part.rpartition(":") if ":" in part else (part, "", "")
        if not host:
            raise ValueError(f"no host in {part!r}")
        try:
            port = int(port_text) if port_text else 6379
        except ValueError:
            raise ValueError(f"port of {part!r} is not a number") from None
        if not 0 < port < 65536:
            raise ValueError(f"port of {part!r} is out of range")
        nodes.append((host, port))
    # The options, parsed by redis-py as for a single-node URL of the first node.
    first_host, first_port = nodes[0]
    hostpart = f"[{first_host}]" if ":" in first_host else first_host
    single = f"{'rediss' if tls else 'redis'}://{userinfo + '@' if at else ''}"
    single += f"{hostpart}:{first_port}/0" + (f"?{query}" if query else "")
    options = dict(parse_url(single))  # type: ignore[no-untyped-call]
    for k in ("host", "port", "db", "path", "connection_class"):
        options.pop(k, None)
    return ClusterURL(nodes, options, tls)


def max_connections(settings: Any, shards: int) -> int:
    """Connections one node's pool may open: above what this process can have in flight
    at once (redis-py#3135: a full pool raises instead of waiting). A blocked reader
    per stage per shard, every stage at full concurrency with one command each, the
    writer's readers, and a margin for the loops (heartbeat, reclaim, batch, gauges).
    Only a ceiling: connections are opened when needed."""
    stages = len(STAGE_NAMES)
    bound = stages * (shards + int(settings.concurrency)) + 2 * shards + 64
    return max(128, 2 * bound)


class PipelineCluster(RedisCluster):
    """``RedisCluster`` with the pipeline's connections, and a wait for a free
    connection where redis-py raises ``MaxConnectionsError`` (a single command fails
    to get one before anything is sent, so trying again is safe)."""

    POOL_WAIT_S: Final = 10.0

    def use_connection_class(self, cls: type[Any]) -> None:
        """Connections of every node, known now or found later, are made of ``cls``."""
        self.connection_kwargs["connection_class"] = cls
        self.nodes_manager.connection_kwargs["connection_class"] = cls
        for node in [*self.nodes_manager.startup_nodes.values(), *self.startup_nodes]:
            node.connection_class = cls
        for node in self.nodes_manager.nodes_cache.values():
            node.connection_class = cls

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        delay, deadline = 0.001, time.monotonic() + self.POOL_WAIT_S
        while True:
            try:
                return await super().execute_command(*args, **kwargs)
            except MaxConnectionsError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)


def cluster_client(url: str, *, socket_timeout: float, pool_size: int) -> PipelineCluster:
    """The cluster client every component of a process shares (see the module notes)."""
    parsed = parse_cluster_url(url)
    opts = dict(parsed.options)
    opts.setdefault("socket_connect_timeout", 3)
    opts.setdefault("socket_keepalive", True)
    opts.setdefault("health_check_interval", 30)
    opts["socket_timeout"] = socket_timeout
    client = PipelineCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in parsed.nodes],
        ssl=parsed.tls,
        max_connections=pool_size,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), 3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        **opts,
    )
    client.use_connection_class(aio.SSLConnection if parsed.tls else aio.Connection)
    return client


async def mget(redis: RedisClient, keys: Sequence[str]) -> list[bytes | None]:
    """MGET; across slots on a cluster (one MGET per slot, sent per node at once)."""
    values: list[Any]
    if isinstance(redis, RedisCluster):
        values = list(await redis.mget_nonatomic(list(keys)))
    else:
        values = list(await redis.mget(list(keys)))
    return values


async def queue_script(
    pipe: AnyPipeline, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]
) -> None:
    """Queue ``script`` on a MULTI: EVALSHA (loaded first by redis-py) on one Redis,
    EVAL with the text on a cluster, where redis-py refuses EVALSHA in pipelines."""
    if isinstance(pipe, ClusterPipeline):
        pipe.eval(script.script, len(keys), *keys, *args)  # type: ignore[arg-type]
        return
    await script(keys=list(keys), args=list(args), client=pipe)  # type: ignore[arg-type]


async def eviction_infos(redis: RedisClient) -> list[dict[str, Any]]:
    """``INFO memory`` of every primary (one entry on a single Redis)."""
    if isinstance(redis, RedisCluster):
        per_node = await redis.info("memory", target_nodes=RedisCluster.PRIMARIES)
        return [dict(v) for v in per_node.values()]
    return [dict(await redis.info("memory"))]
