"""The exact LLM response cache: a re-run makes no call; anything that can change a
reply changes the key (the known failures of LangChain's, GPTCache's and LiteLLM's
caches); a failed or invalid reply is never stored."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from accelerated.codec import MAGIC, Codec
from accelerated.errors import BackendRejected, BackendUnavailable
from accelerated.keys import Keys
from accelerated.llm.cache import ResponseCache, request_key
from accelerated.llm.client import ChatClient, InvalidReply
from accelerated.llm.limiter import Limiter
from benchmarks.llm_server import ChatServer, Reply

_OPEN: list[ChatClient] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    """Close every client on the test's loop (openai's would close itself later, from
    ``__del__``, on whatever loop runs then)."""
    yield
    while _OPEN:
        await _OPEN.pop().aclose()


def _client(
    chat_server: ChatServer,
    redis: aioredis.Redis,
    prefix: str,
    *,
    model: str = "m",
    temperature: float = 0.0,
    base_url: str | None = None,
) -> ChatClient:
    keys = Keys(prefix)
    client = ChatClient(
        base_url=base_url or chat_server.base_url,
        api_key=SecretStr("sk-cache"),
        model=model,
        limiter=Limiter(redis, keys, model, requests=1000, tokens=10**6),
        cache=ResponseCache(redis, keys, Codec(), ttl_s=600),
        max_tokens=50,
        temperature=temperature,
    )
    _OPEN.append(client)
    return client


def _req(
    c: ChatClient, text: str = "Judge Roe", *, system: str = "sys", version: str = "v1"
) -> dict[str, Any]:
    return c.request(
        [{"role": "system", "content": system}, {"role": "user", "content": text}],
        response_format={"type": "json_object"},
        prompt_version=version,
        schema_version="s1",
    )


def _valid(content: str) -> dict[str, Any]:
    value = json.loads(content)
    if not isinstance(value, dict) or "mentions" not in value:
        raise InvalidReply("no mentions", backend="openai")
    return value


async def test_rerun_makes_zero_calls(
    chat_server: ChatServer, redis: aioredis.Redis, prefix: str
) -> None:
    c = _client(chat_server, redis, prefix)
    texts = [f"Judge Name{i} wrote" for i in range(5)]
    first = [await c.complete(_req(c, t), _valid) for t in texts]
    assert len(chat_server.received) == 5
    again = _client(chat_server, redis, prefix)  # a new process, same Redis
    second = [await again.complete(_req(again, t), _valid) for t in texts]
    assert second == first
    assert len(chat_server.received) == 5
    assert again.cache is not None and (again.cache.hits, again.cache.misses) == (5, 0)
    assert again.stats.calls == 0 and again.stats.cache_hits == 5
    # Stored compressed through the codec, with a TTL.
    stored = await redis.keys(f"{prefix}:cache:llm:*")
    assert len(stored) == 5
    raw = await redis.get(stored[0])
    assert raw is not None and raw[:2] == MAGIC
    assert 0 < await redis.ttl(stored[0]) <= 600


async def test_every_request_field_that_changes_a_reply_misses(
    chat_server: ChatServer, redis: aioredis.Redis, prefix: str
) -> None:
    other = ChatServer().start()
    try:
        base = _client(chat_server, redis, prefix)
        await base.complete(_req(base), _valid)
        variants = [
            (_client(chat_server, redis, prefix, temperature=0.7), {}),  # langchain#19328
            (_client(chat_server, redis, prefix, model="m2"), {}),  # GPTCache #527
            (_client(chat_server, redis, prefix, base_url=other.base_url), {}),
            (_client(chat_server, redis, prefix), {"version": "v2"}),
            (_client(chat_server, redis, prefix), {"system": "another system prompt"}),  # #526
        ]
        for c, kw in variants:
            await c.complete(_req(c, **kw), _valid)
            assert c.cache is not None and c.cache.misses == 1 and c.cache.hits == 0
        assert len(chat_server.received) + len(other.received) == 1 + len(variants)
        assert [r.body.get("temperature") for r in chat_server.received[:2]] == [0.0, 0.7]
        # and the unchanged request still hits
        same = _client(chat_server, redis, prefix)
        await same.complete(_req(same), _valid)
        assert same.cache is not None and same.cache.hits == 1
    finally:
        other.stop()


def test_key_ignores_json_key_order() -> None:  # LiteLLM #40128
    a = {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 0}
    b = {"temperature": 0, "messages": [{"content": "x", "role": "user"}], "model": "m"}
    assert request_key(a) == request_key(b)
    assert request_key(a) != request_key({**a, "seed": 1})
    assert request_key(a) != request_key({**a, "stop": ["\n"]})
    assert request_key(a) != request_key({**a, "tools": [{"type": "function"}]})
    assert request_key(a) != request_key({**a, "top_p": 0.5})
    assert request_key(a) != request_key({**a, "max_tokens": 10})
    assert request_key(a) != request_key({**a, "schema_version": "s2"})
    with pytest.raises(ValueError, match="not part of the LLM cache key"):
        request_key({**a, "user": "u"})


async def test_failed_or_invalid_replies_are_never_cached(
    chat_server: ChatServer, redis: aioredis.Redis, prefix: str
) -> None:
    c = _client(chat_server, redis, prefix)
    chat_server.script = [
        Reply(status=500),
        Reply(content='{"not": "the schema"}'),
        Reply(raw_body=b"{this is not json"),
        Reply(content='{"mentions": []', finish_reason="length"),
    ]
    with pytest.raises(BackendUnavailable):
        await c.complete(_req(c), _valid)
    with pytest.raises(InvalidReply):
        await c.complete(_req(c), _valid)
    with pytest.raises(BackendUnavailable, match="not JSON") as bad_json:
        await c.complete(_req(c), _valid)
    assert "sk-cache" not in str(bad_json.value)
    with pytest.raises(InvalidReply, match="max_tokens"):
        await c.complete(_req(c), _valid)
    assert await redis.keys(f"{prefix}:cache:llm:*") == []
    value = await c.complete(_req(c), _valid)  # now a good one: asked again, then stored
    assert value == {"mentions": [{"type": "JUDGE", "text": "Roe", "start": 6}]}
    assert len(chat_server.received) == 5
    assert len(await redis.keys(f"{prefix}:cache:llm:*")) == 1


async def test_driver_errors_are_translated_without_the_key(
    chat_server: ChatServer, redis: aioredis.Redis, prefix: str
) -> None:
    c = _client(chat_server, redis, prefix)
    c._client = c._client.with_options(timeout=0.3)
    chat_server.script = [Reply(delay_s=1.0)]
    with pytest.raises(BackendUnavailable, match="APITimeoutError"):
        await c.complete(_req(c), _valid)
    chat_server.script = [Reply(status=401), Reply(status=400), Reply(status=503)]
    with pytest.raises(BackendRejected, match="credentials") as auth:
        await c.complete(_req(c), _valid)
    with pytest.raises(BackendRejected, match="HTTP 400"):
        await c.complete(_req(c), _valid)
    with pytest.raises(BackendUnavailable, match="HTTP 503"):
        await c.complete(_req(c), _valid)
    assert "sk-cache" not in str(auth.value) and auth.value.__cause__ is None
    dead = _client(chat_server, redis, prefix, base_url="http://127.0.0.1:9/v1")
    with pytest.raises(BackendUnavailable, match="unreachable"):
        await dead.complete(_req(dead), _valid)
