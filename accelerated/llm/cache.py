"""Exact LLM response cache in Redis: the same request never goes out twice.

The key is the sha256 of canonical JSON (sorted keys, no whitespace) of everything
that can change a reply: base URL, model, messages (the system prompt included),
response format / schema, temperature, top_p, max_tokens, seed, stop and tools,
plus the prompt's and the schema's versions. The known failures of other caches are
tests here: a hit after the model or temperature changed (LangChain's RedisCache,
langchain#19328), a key blind to the system prompt and the model (GPTCache #526,
#527), a key that depends on JSON key order (LiteLLM #40128). Only a complete reply
that its caller validated is stored (:meth:`ResponseCache.put` is called after
validation), so a failed or malformed one is asked again next time. Values are
zstd-compressed through :class:`~accelerated.codec.Codec`. No semantic cache: for
extraction a near-identical prompt is not the same question.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

import msgspec
from prometheus_client import Counter

from accelerated.boundary import map_driver_errors
from accelerated.cluster import RedisClient
from accelerated.codec import Codec
from accelerated.errors import CodecError
from accelerated.keys import Keys

CACHE_LOOKUPS: Final = Counter("llm_cache_lookups_total", "LLM cache lookups", ["outcome"])

# The request fields that are part of the key; anything else a caller passes is not
# sent to the API either (ChatRequest.api_kwargs), so the key covers the whole call.
KEY_FIELDS: Final = (
    "base_url",
    "model",
    "messages",
    "response_format",
    "temperature",
    "top_p",
    "max_tokens",
    "seed",
    "stop",
    "tools",
    "prompt_version",
    "schema_version",
)


class CachedReply(msgspec.Struct, frozen=True):
    """A complete, validated reply and what it cost when it was first made."""

    content: str
    prompt_tokens: int
    completion_tokens: int


def request_key(request: dict[str, Any]) -> str:
    """sha256 hex of the canonical JSON of the key fields (absent fields are null)."""
    unknown = set(request) - set(KEY_FIELDS)
    if unknown:
        raise ValueError(f"not part of the LLM cache key: {sorted(unknown)}")
    canonical = json.dumps(
        {f: request.get(f) for f in KEY_FIELDS},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    def __init__(self, redis: RedisClient, keys: Keys, codec: Codec, ttl_s: int) -> None:
        self._redis, self._keys, self._codec, self._ttl = redis, keys, codec, ttl_s
        self.hits = 0
        self.misses = 0

    def _key(self, request: dict[str, Any]) -> str:
        return self._keys.llm_cache(str(request.get("model", "")), request_key(request))

    async def get(self, request: dict[str, Any]) -> CachedReply | None:
        with map_driver_errors("redis"):
            raw = await self._redis.get(self._key(request))
        reply: CachedReply | None = None
        if isinstance(raw, bytes):  # the client does not decode responses
            try:
                reply = self._codec.decode(raw, CachedReply)
            except CodecError:  # a corrupt entry is a miss, and is overwritten
                reply = None
        if reply is None:
            self.misses += 1
            CACHE_LOOKUPS.labels("miss").inc()
        else:
            self.hits += 1
            CACHE_LOOKUPS.labels("hit").inc()
        return reply

    async def put(self, request: dict[str, Any], reply: CachedReply) -> None:
        """Store a reply the caller has validated (never call it for a failed one)."""
        with map_driver_errors("redis"):
            await self._redis.set(self._key(request), self._codec.encode(reply), ex=self._ttl)
