"""The global LLM limiter: requests and tokens together, across processes, measured at
the server; 429 cool-downs shared by every worker; the run's token budget."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from accelerated.errors import BudgetExhausted
from accelerated.keys import Keys
from accelerated.llm.client import ChatClient
from accelerated.llm.limiter import Limiter, cooldown_ms, limiter_tag, parse_duration_ms
from benchmarks.llm_server import ChatServer, Received, Reply
from tests import conftest
from tests.llm_load import run as load_run

WINDOW_S = 2.0


def _sliding_max(arrivals: list[Received], span: float) -> tuple[int, int]:
    """Most requests and most tokens any window of ``span`` seconds received."""
    arrivals = sorted(arrivals, key=lambda r: r.at)
    most_req = most_tok = 0
    j = 0
    tok = 0
    for i, r in enumerate(arrivals):  # windows starting at each arrival
        while j < len(arrivals) and arrivals[j].at < r.at + span:
            tok += arrivals[j].tokens
            j += 1
        most_req = max(most_req, j - i)
        most_tok = max(most_tok, tok)
        tok -= r.tokens
    return most_req, most_tok


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("binding", "requests", "tokens", "prompt_chars"),
    [("requests", 30, 100_000, (100, 400)), ("tokens", 1000, 6000, (400, 1600))],
)
def test_four_processes_share_one_limit(
    chat_server: ChatServer,
    prefix: str,
    binding: str,
    requests: int,
    tokens: int,
    prompt_chars: tuple[int, int],
) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Barrier(5, timeout=90)  # four children, warmed up, and this process
    times = ctx.Array("d", 2)
    procs = [
        ctx.Process(
            target=load_run,
            args=(
                chat_server.base_url,
                conftest.REDIS_URL,
                prefix,
                requests,
                tokens,
                WINDOW_S,
                ready,
                times,
                seed,
                prompt_chars,
            ),
        )
        for seed in range(4)
    ]
    for p in procs:
        p.start()
    ready.wait()  # every child warm (its warm-up calls are before start_at)
    start_at = time.time() + 0.5
    stop_at = start_at + 7 * WINDOW_S + 0.5
    times[0], times[1] = start_at, stop_at
    ready.wait()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    got = [r for r in chat_server.ok() if start_at <= r.at <= stop_at]
    assert {r.headers.get("authorization") for r in got} == {"Bearer sk-load"}
    most_req, most_tok = _sliding_max(got, WINDOW_S)
    assert most_req <= requests, (most_req, requests)
    assert most_tok <= tokens, (most_tok, tokens)
    # Use: each full window after the first arrival holds at least 90 % of the binding limit.
    t0 = min(r.at for r in got)
    full = int((stop_at - t0) // WINDOW_S)
    per_window = [
        [r for r in got if t0 + k * WINDOW_S <= r.at < t0 + (k + 1) * WINDOW_S] for k in range(full)
    ]
    if binding == "requests":
        use = sum(len(w) for w in per_window) / (full * requests)
    else:
        use = sum(sum(r.tokens for r in w) for w in per_window) / (full * tokens)
    print(f"{binding}: most {most_req} req / {most_tok} tok per window, use {use:.1%}")
    assert use >= 0.90, use


_OPEN: list[ChatClient] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    """Close every client on the test's loop (openai's would close itself later, from
    ``__del__``, on whatever loop runs then)."""
    yield
    while _OPEN:
        await _OPEN.pop().aclose()


async def _client(
    chat_server: ChatServer, redis: aioredis.Redis, prefix: str, **kw: int
) -> ChatClient:
    limiter = Limiter(
        redis,
        Keys(prefix),
        "m",
        requests=kw.get("requests", 1000),
        tokens=kw.get("tokens", 10**6),
        window_s=60,
        budget_tokens=kw.get("budget", 0),
    )
    client = ChatClient(
        base_url=chat_server.base_url,
        api_key=SecretStr("sk-x"),
        model="m",
        limiter=limiter,
        cache=None,
        max_tokens=20,
    )
    _OPEN.append(client)
    return client


def _req(client: ChatClient, text: str) -> dict[str, object]:
    return client.request(
        [{"role": "user", "content": text}],
        response_format=None,
        prompt_version="t",
        schema_version="t",
    )


async def test_429_retry_after_cools_down_every_worker(
    chat_server: ChatServer, redis: aioredis.Redis, prefix: str
) -> None:
    chat_server.script = [Reply(status=429, headers={"retry-after-ms": "700"})]
    a = await _client(chat_server, redis, prefix)
    b = await _client(chat_server, redis, prefix)  # another worker, same limiter keys
    t = time.monotonic()
    assert await a.complete(_req(a, "one"), lambda s: s)
    assert time.monotonic() - t >= 0.65
    assert a.stats.rate_limited == 1
    # The cool-down key is shared: b waits too.
    chat_server.script = [Reply(status=429, headers={"retry-after": "1"})]
    t = time.monotonic()
    await a.complete(_req(a, "two"), lambda s: s)  # 429, sets 1 s
    assert time.monotonic() - t >= 0.95
    arrivals = [r.at for r in chat_server.received]
    assert arrivals[-1] - arrivals[-2] >= 0.95
    await b.limiter.cool_down(500)
    t = time.monotonic()
    await b.complete(_req(b, "three"), lambda s: s)
    assert time.monotonic() - t >= 0.45
    ttl = await redis.pttl(Keys(prefix).rate_limit(f"{limiter_tag('m')}:cool"))
    assert ttl == -2  # expired, nothing left behind


async def test_remaining_zero_headers_hold_off(
    chat_server: ChatServer, redis: aioredis.Redis, prefix: str
) -> None:
    chat_server.script = [
        Reply(
            headers={"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "600ms"}
        )
    ]
    c = await _client(chat_server, redis, prefix)
    await c.complete(_req(c, "a"), lambda s: s)
    t = time.monotonic()
    await c.complete(_req(c, "b"), lambda s: s)
    assert time.monotonic() - t >= 0.55


@pytest.mark.parametrize("redis_kind", conftest.KINDS, indirect=True)
async def test_budget_stops_new_calls(
    chat_server: ChatServer, redis: aioredis.Redis, prefix: str
) -> None:
    c = await _client(chat_server, redis, prefix, budget=200)
    done = 0
    with pytest.raises(BudgetExhausted, match="LLM_BUDGET_TOKENS=200"):
        for i in range(50):
            await c.complete(_req(c, f"call {i} " + "y" * 60), lambda s: s)
            done += 1
    assert done == len(chat_server.received) and 2 <= done < 50
    assert await c.limiter.budget_used() <= 200
    # A larger budget (a re-run) goes on.
    c2 = await _client(chat_server, redis, prefix, budget=10_000)
    await c2.complete(_req(c2, "more"), lambda s: s)


async def test_a_call_over_the_window_fails_at_once(
    chat_server: ChatServer, redis: aioredis.Redis, prefix: str
) -> None:
    c = await _client(chat_server, redis, prefix, tokens=50)
    with pytest.raises(BudgetExhausted, match="over LLM_TPM"):
        await c.complete(_req(c, "z" * 600), lambda s: s)
    assert chat_server.received == []


def test_header_parsing() -> None:
    assert parse_duration_ms("6m0s") == 360_000
    assert parse_duration_ms("20ms") == 20
    assert parse_duration_ms("1.5") == 1500
    assert cooldown_ms({"Retry-After-Ms": "250", "retry-after": "9"}) == 250
    assert cooldown_ms({"retry-after": "2"}) == 2000
    assert (
        cooldown_ms({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "3s"}) == 3000
    )
    assert cooldown_ms({"x-ratelimit-remaining-tokens": "5"}) is None
    assert limiter_tag("a{b}c") == "{llm:abc}"
