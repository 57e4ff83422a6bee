"""Any registered entity backend on a chunked document, for ``benchmarks.quality``.

The rules backend runs in this process as the pool would run it (with the document
context). Async backends (``llm``) and the batched one (``transformers``) are awaited
on one event loop for the whole evaluation, and split backends (``rules+llm``,
``rules+transformers``) run both parts and merge them by span, as the entities stage
does. A backend that needs the runtime's clients (the LLM backends: the response
cache and the global limiter live in Redis) gets a client for ``REDIS_URL`` under a
key prefix of its own, which is removed at the end (its cached replies with it: each
evaluation pays for its calls), unless the caller names a prefix to keep
(``--llm-cache``): then a later evaluation asking the same questions (``llm`` after
``rules+llm``: the same prompt, chunks and settings) is answered from the replies the
first one validated, and makes no call.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from accelerated.backends import (
    AsyncEntityBackend,
    BackendClients,
    EntityBackend,
    NeedsClients,
    SplitBackend,
    entity_mode,
)
from accelerated.connect import redis_client
from accelerated.entities import RawMention
from accelerated.keys import Keys
from accelerated.models import Chunked
from accelerated.settings import Settings
from accelerated.stages.entities import backend_results


async def results(backend: EntityBackend, doc: Chunked) -> list[list[RawMention]]:
    """Uncached results per chunk, wherever the backend's mode says it runs."""
    texts = [c.text for c in doc.chunks]
    if isinstance(backend, SplitBackend):
        cpu = backend_results(backend.cpu_part, doc)
        other = await backend.async_part.extract_async(texts)
        return [backend.merge(a, b) for a, b in zip(cpu, other, strict=True)]
    if entity_mode(backend) == "pool":
        return backend_results(backend, doc)
    assert isinstance(backend, AsyncEntityBackend)
    return await backend.extract_async(texts)


def llm_figures(backend: EntityBackend) -> dict[str, object] | None:
    """What the LLM part of ``backend`` did (None: it has none): the settings that shape
    its replies, its calls and cache hits, the chunks still invalid after their repair
    and the mentions dropped (a type outside the vocabulary, a text not in the chunk).
    Read before the backend is closed (its client's counters go with it)."""
    from accelerated.llm.entities import LlmEntityBackend

    parts = (backend, getattr(backend, "llm", None), getattr(backend, "async_part", None))
    llm = next((p for p in parts if isinstance(p, LlmEntityBackend)), None)
    if llm is None:
        return None
    s, stats = llm.settings, llm.stats
    return {
        "model": llm.llm_model,
        "response_format": s.llm_response_format,
        "max_tokens": s.llm_max_tokens,
        "temperature": s.llm_temperature,
        "calls": stats.calls if stats else 0,
        "cache_hits": stats.cache_hits if stats else 0,
        "tokens_in": stats.tokens_in if stats else 0,
        "tokens_out": stats.tokens_out if stats else 0,
        "failed_chunks": llm.failed_chunks,
        "dropped_types": llm.dropped_types,
        "dropped_spans": llm.dropped_spans,
    }


def _needing_clients(backend: EntityBackend) -> list[NeedsClients]:
    parts: list[object] = [backend]
    if isinstance(backend, SplitBackend):
        parts += [backend.cpu_part, backend.async_part]
    return [p for p in parts if isinstance(p, NeedsClients)]


@asynccontextmanager
async def bound(
    backend: EntityBackend, settings: Settings, keep_prefix: str | None = None
) -> AsyncIterator[EntityBackend]:
    """``backend`` with the clients it needs for the block; closed after, and its keys
    removed unless they are under ``keep_prefix``."""
    needy = _needing_clients(backend)
    if not needy:
        yield backend
        return
    if settings.redis_url is None:
        from accelerated.errors import ConfigError

        raise ConfigError("this entity backend needs REDIS_URL (its cache and limiter)")
    prefix = keep_prefix or f"bench-quality-{uuid.uuid4().hex[:8]}"
    client = redis_client(settings.redis_url, settings)
    try:
        clients = BackendClients(client, Keys(prefix), caches=True)
        for part in needy:
            part.bind(clients)
        yield backend
    finally:
        for part in needy:
            await part.aclose()
        if keep_prefix is None:
            keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
            for i in range(0, len(keys), 500):
                await client.delete(*keys[i : i + 500])
        await client.aclose()
