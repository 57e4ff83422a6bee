"""Prometheus gauges of the shared queues, refreshed from Redis by a worker.

What ``accelerated.status`` shows for the streams, as metrics a dashboard can chart:
per stage the stream length, the messages pending (delivered, not acked), the group's
lag (not yet delivered) and the dead letters; the write-behind backlog; each summed
over the stage's stream shards. Every worker
exports the same values (they describe Redis, not the worker): aggregate with ``max``,
never ``sum``. Refreshed every ``interval_s`` by a task of the worker, so a scrape
never waits on Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from prometheus_client import Gauge
from redis.exceptions import RedisError
from redis.utils import str_if_bytes

from accelerated.aio import wait_for
from accelerated.cluster import RedisClient
from accelerated.keys import STAGES, Keys

log = logging.getLogger(__name__)

STREAM_LENGTH = Gauge("stream_length", "Entries in a stage's stream", ["stage"])
STREAM_PENDING = Gauge("stream_pending", "Delivered to a consumer, not yet acked", ["stage"])
STREAM_LAG = Gauge("stream_lag", "Not yet delivered to the stage's group", ["stage"])
DLQ_LENGTH = Gauge("dlq_length", "Dead letters of a stage", ["stage"])
WB_BACKLOG = Gauge("writebehind_backlog", "Persistence intents not yet trimmed from the stream")


@dataclass(frozen=True)
class StageSizes:
    """A stage's queue, summed over its shards' streams."""

    stream: int  # entries in the streams (acked entries are deleted)
    pending: int  # delivered to a consumer, not yet acked
    lag: int | None  # not yet delivered to the group (None: Redis could not tell)
    dead: int  # dead letters


async def stage_sizes(redis: RedisClient, keys: Keys) -> dict[str, StageSizes]:
    """Per stage: length, pending and lag over every shard, and the dead letters. Two
    pipelined commands per stream, sent at once (to every node, on a cluster)."""
    pipe = redis.pipeline(transaction=False)
    for stage in STAGES:
        pipe.xlen(keys.dlq(stage))
        for stream in keys.streams(stage):
            pipe.xlen(stream)
            pipe.xinfo_groups(stream)
    replies = iter(await pipe.execute(raise_on_error=False))
    out: dict[str, StageSizes] = {}
    for stage in STAGES:
        dead = _int(next(replies))
        length, pending, lag = 0, 0, 0
        lag_known = True
        for _stream in keys.streams(stage):
            length += _int(next(replies))
            groups = next(replies)
            ours = [] if isinstance(groups, Exception) else groups  # no stream yet
            ours = [g for g in ours if str_if_bytes(g["name"]) == keys.group(stage)]
            if not ours or ours[0].get("lag") is None:
                lag_known = False
            else:
                lag += int(ours[0]["lag"])
            pending += sum(int(g["pending"]) for g in ours)
        out[stage] = StageSizes(length, pending, lag if lag_known else None, dead)
    return out


def _int(reply: Any) -> int:
    if isinstance(reply, Exception):
        raise reply
    return int(reply)


async def refresh(redis: RedisClient, keys: Keys) -> None:
    for stage, sizes in (await stage_sizes(redis, keys)).items():
        STREAM_LENGTH.labels(stage).set(sizes.stream)
        DLQ_LENGTH.labels(stage).set(sizes.dead)
        STREAM_PENDING.labels(stage).set(sizes.pending)
        if sizes.lag is not None:
            STREAM_LAG.labels(stage).set(sizes.lag)
    WB_BACKLOG.set(await wb_backlog(redis, keys))


async def wb_backlog(redis: RedisClient, keys: Keys) -> int:
    """Intents not yet applied, over every shard's write-behind stream."""
    pipe = redis.pipeline(transaction=False)
    for stream in keys.wb_streams():
        pipe.xlen(stream)
    return sum(int(n) for n in await pipe.execute())


async def run(redis: RedisClient, keys: Keys, stop: asyncio.Event, interval_s: float = 5.0) -> None:
    """Refresh until ``stop``; an outage only leaves the last values in place."""
    while not stop.is_set():
        try:
            await refresh(redis, keys)
        except (RedisError, OSError) as exc:
            log.debug("stream metrics not refreshed: %s", exc)
        with contextlib.suppress(TimeoutError):
            await wait_for(stop.wait(), interval_s)
