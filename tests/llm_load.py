"""A load process for the limiter test: calls the test server through the shared
limiter until ``stop_at`` (run in a child process, started by ``spawn``)."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import redis.asyncio as aioredis
from pydantic import SecretStr

from accelerated.aio import wait_for
from accelerated.keys import Keys
from accelerated.llm.client import ChatClient
from accelerated.llm.limiter import Limiter


async def _load(
    base_url: str,
    redis_url: str,
    prefix: str,
    requests: int,
    tokens: int,
    window_s: float,
    ready: Any,
    times: Any,
    seed: int,
    prompt_chars: tuple[int, int],
) -> None:
    rng = random.Random(seed)
    redis = aioredis.Redis.from_url(redis_url)
    limiter = Limiter(
        redis,
        Keys(prefix),
        "load-model",
        requests=requests,
        tokens=tokens,
        window_s=window_s,
        concurrency=4,
        margin_s=0.12,
    )
    client = ChatClient(
        base_url=base_url,
        api_key=SecretStr("sk-load"),
        model="load-model",
        limiter=limiter,
        cache=None,
        max_tokens=20,
    )
    # Warm up outside the measured time: the first call of a process imports and
    # builds the client's request machinery (hundreds of ms on a loaded machine), a
    # delay between admission and arrival that the limiter cannot see; four calls at
    # once open the four connections the load tasks will use (same HTTP client).
    warm = ChatClient(
        base_url=base_url,
        api_key=SecretStr("sk-load"),
        model="warm-up",
        limiter=Limiter(redis, Keys(prefix), "warm-up", requests=100, tokens=10**6),
        cache=None,
        max_tokens=20,
    )
    warm_req = warm.request(
        [{"role": "user", "content": "hi"}],
        response_format=None,
        prompt_version="load",
        schema_version="load",
    )
    warm._client = client._client  # share the connection pool being warmed
    await asyncio.gather(*(warm.complete(warm_req, lambda s: s) for _ in range(4)))
    # Everyone warm: the parent then says when the measured time starts and ends.
    await asyncio.to_thread(ready.wait)  # all warm
    await asyncio.to_thread(ready.wait)  # the parent has written the times
    start_at, stop_at = times[0], times[1]
    await asyncio.sleep(max(0.0, start_at - time.time()))

    async def one_task() -> None:
        while time.time() < stop_at:
            text = "x" * rng.randint(*prompt_chars)
            req = client.request(
                [{"role": "user", "content": text}],
                response_format=None,
                prompt_version="load",
                schema_version="load",
            )
            remaining = stop_at - time.time()
            try:
                await wait_for(client.complete(req, lambda s: s), max(0.01, remaining))
            except TimeoutError:
                return

    await asyncio.gather(*(one_task() for _ in range(4)))
    await client.aclose()
    await redis.aclose()


def run(*args: object) -> None:
    asyncio.run(_load(*args))  # type: ignore[arg-type]
