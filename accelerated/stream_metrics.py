"""Prometheus gauges of the shared queues, refreshed from Redis by a worker.

What ``accelerated.status`` shows for the streams, as metrics a dashboard can chart:
per stage the stream length, the messages pending (delivered, not acked), the group's
lag (not yet delivered) and the dead letters; the write-behind backlog. Every worker
exports the same values (they describe Redis, not the worker): aggregate with ``max``,
never ``sum``. Refreshed every ``interval_s`` by a task of the worker, so a scrape
never waits on Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.asyncio as aioredis
from prometheus_client import Gauge
from redis.exceptions import RedisError, ResponseError
from redis.utils import str_if_bytes

from accelerated.aio import wait_for
from accelerated.keys import STAGES, Keys

log = logging.getLogger(__name__)

STREAM_LENGTH = Gauge("stream_length", "Entries in a stage's stream", ["stage"])
STREAM_PENDING = Gauge("stream_pending", "Delivered to a consumer, not yet acked", ["stage"])
STREAM_LAG = Gauge("stream_lag", "Not yet delivered to the stage's group", ["stage"])
DLQ_LENGTH = Gauge("dlq_length", "Dead letters of a stage", ["stage"])
WB_BACKLOG = Gauge("writebehind_backlog", "Persistence intents not yet trimmed from the stream")


async def refresh(redis: aioredis.Redis, keys: Keys) -> None:
    for stage in STAGES:
        stream = keys.stream(stage)
        STREAM_LENGTH.labels(stage).set(await redis.xlen(stream))
        DLQ_LENGTH.labels(stage).set(await redis.xlen(keys.dlq(stage)))
        with contextlib.suppress(ResponseError):  # no stream yet
            for g in await redis.xinfo_groups(stream):
                if str_if_bytes(g["name"]) == keys.group(stage):
                    STREAM_PENDING.labels(stage).set(int(g["pending"]))
                    if g.get("lag") is not None:
                        STREAM_LAG.labels(stage).set(int(g["lag"]))
    WB_BACKLOG.set(await redis.xlen(keys.wb_stream()))


async def run(
    redis: aioredis.Redis, keys: Keys, stop: asyncio.Event, interval_s: float = 5.0
) -> None:
    """Refresh until ``stop``; an outage only leaves the last values in place."""
    while not stop.is_set():
        try:
            await refresh(redis, keys)
        except (RedisError, OSError) as exc:
            log.debug("stream metrics not refreshed: %s", exc)
        with contextlib.suppress(TimeoutError):
            await wait_for(stop.wait(), interval_s)
