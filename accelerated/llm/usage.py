"""LLM usage per project, counted in Redis: calls, cache hits, tokens, cost, limiter wait.

Every worker, on every host, adds to one hash per project (``Keys.llm_usage``), so
the batch summary is right whichever process made a call; a process's own
``LlmStats`` would only know its own. The batch command zeroes the hash, and the
project's token-budget counter, when a run of the project starts
(:func:`start_run`), so the numbers it prints are that run's. (Two batch commands of
one project at the same time would share them, as they share its outstanding set.)
Calls made outside any project (a test calling the client directly) are not counted
here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import msgspec
from redis.utils import str_if_bytes

from accelerated.boundary import map_driver_errors
from accelerated.cluster import RedisClient
from accelerated.keys import Keys
from accelerated.llm.limiter import budget_key


class LlmUsage(msgspec.Struct, kw_only=True):
    """One run's LLM figures (all workers together)."""

    calls: int = 0  # replies received (HTTP 200), valid or not
    cache_hits: int = 0  # answers taken from the exact response cache: no call
    tokens_in: int = 0  # prompt tokens, from the replies' usage
    tokens_out: int = 0  # completion tokens
    cost_usd: float = 0.0  # by LLM_PRICES (USD per million tokens, in and out)
    wait_s: float = 0.0  # time calls waited on the shared limiter (and its cool-downs)
    rate_limited: int = 0  # 429s received (each one cooled every worker down)
    invalid: int = 0  # replies that failed validation (a repair was asked for, or gave up)
    budget_stops: int = 0  # calls refused because LLM_BUDGET_TOKENS was spent


FLOAT_FIELDS: Final = frozenset({"cost_usd", "wait_s"})
FIELDS: Final = tuple(LlmUsage.__struct_fields__)


class UsageCounter:
    """Adds to the project's hash; one pipeline (one round trip) per event."""

    def __init__(self, redis: RedisClient, keys: Keys, ttl_s: int) -> None:
        self._redis, self._keys, self._ttl = redis, keys, ttl_s

    async def add(self, project: str | None, **amounts: float) -> None:
        if project is None:
            return
        unknown = set(amounts) - set(FIELDS)
        if unknown:
            raise ValueError(f"not an LLM usage field: {sorted(unknown)}")
        key = self._keys.llm_usage(project)
        pipe = self._redis.pipeline(transaction=False)
        for name, value in amounts.items():
            if not value:
                continue
            if name in FLOAT_FIELDS:
                pipe.hincrbyfloat(key, name, float(value))
            else:
                pipe.hincrby(key, name, int(value))
        pipe.expire(key, self._ttl)
        with map_driver_errors("redis"):
            await pipe.execute()


async def read_usage(redis: RedisClient, keys: Keys, project: str) -> LlmUsage:
    with map_driver_errors("redis"):
        raw = await redis.hgetall(keys.llm_usage(project))
    values: dict[str, float] = {}
    for k, v in raw.items():
        name = str_if_bytes(k)
        if name in FIELDS:
            text = str_if_bytes(v)
            values[name] = float(text) if name in FLOAT_FIELDS else int(float(text))
    return LlmUsage(**values)  # type: ignore[arg-type]


async def start_run(redis: RedisClient, keys: Keys, project: str, models: Iterable[str]) -> None:
    """A run of ``project`` starts: its counters and its token budget start from zero."""
    doomed = [keys.llm_usage(project)]
    doomed += [budget_key(keys, m, project) for m in sorted(set(models))]
    with map_driver_errors("redis"):
        for key in doomed:  # one by one: the budget keys live in their model's slot
            await redis.delete(key)
