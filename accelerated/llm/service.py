"""The LLM connection one backend uses: settings checked at start-up, clients bound later.

A backend is built by the CLI edge before any server is connected, so that a missing
``OPENAI_BASE_URL`` stops the program at once; the runtime then hands it the Redis
client it was given (:meth:`LlmService.bind`): the global limiter, the response cache
(accelerated path only: the traditional path has no LLM cache) and the per-project
usage counters all use that one client, never one of their own. The HTTP client
(``openai.AsyncOpenAI``) binds to the event loop it first runs on, so there is one
per loop, made on first use and closed by :meth:`aclose`, which the runtime calls
on shutdown.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import SecretStr

from accelerated.backends import BackendClients
from accelerated.cluster import RedisClient
from accelerated.codec import Codec
from accelerated.errors import ConfigError
from accelerated.keys import Keys
from accelerated.llm.ask import ask_json, response_format
from accelerated.llm.cache import ResponseCache
from accelerated.llm.client import ChatClient, LlmStats
from accelerated.llm.limiter import Limiter
from accelerated.llm.usage import UsageCounter
from accelerated.settings import Settings

T = TypeVar("T")


class LlmService:
    """One OpenAI-compatible endpoint and model, for the backend named by ``setting``."""

    def __init__(self, settings: Settings, setting: str) -> None:
        if not settings.openai_base_url:
            raise ConfigError(f"{setting} needs OPENAI_BASE_URL (e.g. https://api.openai.com/v1)")
        if not settings.llm_model:
            raise ConfigError(f"{setting} needs LLM_MODEL (e.g. gpt-4o-mini)")
        if settings.openai_api_key is None or not settings.openai_api_key.get_secret_value():
            raise ConfigError(
                f"{setting} needs OPENAI_API_KEY (any value for a server without auth)"
            )
        self.settings, self.setting = settings, setting
        self.base_url = settings.openai_base_url.rstrip("/")
        self.model: str = settings.llm_model
        self._api_key: SecretStr = settings.openai_api_key
        self._clients: BackendClients | None = None
        self._client: ChatClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def identity(self, *texts: str) -> str:
        """A short digest of everything besides the prompt's version that changes a
        reply (endpoint, model, temperature, max_tokens) and of ``texts`` (the prompt
        and the ``response_format`` sent, schema included): part of a backend's
        version, hence of the fingerprints."""
        s = self.settings
        ident = f"{self.base_url}|{self.model}|{s.llm_temperature}|{s.llm_max_tokens}"
        return hashlib.sha256("|".join((ident, *texts)).encode()).hexdigest()[:12]

    def bind(self, clients: BackendClients) -> None:
        """Take the runtime's clients (called once, before the first call). Without
        Redis (it was unreachable and the run fell back to the traditional path) the
        program stops here, at start-up, rather than failing every document."""
        if clients.redis is None:
            raise ConfigError(
                f"{self.setting} needs Redis (the limit shared by every worker, the usage "
                "counters and the token budget): Redis is not available to this run"
            )
        self._clients = clients
        self._client = self._loop = None  # rebuilt on the new clients at first use

    def bind_redis(self, redis: RedisClient, *, caches: bool | None = None) -> None:
        """``bind`` for a caller holding only a Redis client (tests, tools)."""
        s = self.settings
        cache = s.enable_redis_acceleration if caches is None else caches
        self.bind(BackendClients(redis, Keys(s.redis_prefix), cache))

    @property
    def bound(self) -> bool:
        return self._clients is not None and self._clients.redis is not None

    def client(self) -> ChatClient:
        """This loop's chat client (made on first use, on the bound clients)."""
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is loop:
            return self._client
        clients = self._clients
        if clients is None or clients.redis is None:
            raise ConfigError(
                f"{self.setting} needs Redis (the limit shared by every worker, the response "
                "cache and the usage counters): the runtime binds its client; none was given"
            )
        s, redis = self.settings, clients.redis
        limiter = Limiter(
            redis,
            clients.keys,
            self.model,
            requests=s.llm_rpm,
            tokens=s.llm_tpm,
            budget_tokens=s.llm_budget_tokens,
            concurrency=s.llm_concurrency,
            margin_s=s.llm_window_margin_s,
        )
        cache = (
            ResponseCache(redis, clients.keys, Codec(), s.ttl_cache_s) if clients.caches else None
        )
        self._client = ChatClient(
            base_url=self.base_url,
            api_key=self._api_key,
            model=self.model,
            limiter=limiter,
            cache=cache,
            max_tokens=s.llm_max_tokens,
            temperature=s.llm_temperature,
            timeout_s=s.llm_timeout_s,
            prices=dict(s.llm_prices),
            usage=UsageCounter(redis, clients.keys, s.ttl_cache_s),
        )
        self._loop = loop
        return self._client

    @property
    def keys(self) -> Keys:
        return self._clients.keys if self._clients is not None else Keys(self.settings.redis_prefix)

    @property
    def redis(self) -> RedisClient | None:
        return self._clients.redis if self._clients is not None else None

    @property
    def caches(self) -> bool:
        return self._clients is not None and self._clients.caches

    @property
    def stats(self) -> LlmStats | None:
        return self._client.stats if self._client is not None else None

    async def aclose(self) -> None:
        """Close the HTTP client on its loop (openai's would otherwise close itself from
        ``__del__`` on whatever loop runs then); idempotent."""
        client, loop = self._client, self._loop
        self._client = self._loop = None
        if client is not None and loop is asyncio.get_running_loop():
            await client.aclose()


class LlmComponent:
    """What every LLM-backed component shares (the ``llm`` entity backend, the
    structured extractor, the resolver): its :class:`LlmService`, checked at
    construction; a system prompt; the ``response_format`` its questions carry, built
    from ``LLM_RESPONSE_FORMAT`` and the reply's schema (``schema_version`` names it);
    a version built from both (``llm-<prompt version>-<identity>``, part of the
    fingerprints: a constrained reply may differ from a free one); ``llm_model`` (named
    in the run's usage counters); ``bind``/``aclose`` for the runtime; ``redis=`` binds
    a client at once, for callers without a runtime (tests, tools)."""

    def __init__(
        self,
        settings: Settings,
        setting: str,
        *,
        prompt: str,
        prompt_version: str,
        schema_version: str,
        schema: dict[str, Any],
        redis: RedisClient | None = None,
    ) -> None:
        self.service = LlmService(settings, setting)
        self.settings = settings
        self.prompt = prompt
        self.prompt_version, self.schema_version = prompt_version, schema_version
        self.response_format = response_format(settings.llm_response_format, schema_version, schema)
        sent = json.dumps(self.response_format, sort_keys=True)
        self.version = f"llm-{prompt_version}-{self.service.identity(prompt, sent)}"
        self.llm_model = self.service.model
        if redis is not None:
            self.service.bind_redis(redis)

    def bind(self, clients: BackendClients) -> None:
        self.service.bind(clients)

    def client(self) -> ChatClient:
        return self.service.client()

    async def aclose(self) -> None:
        await self.service.aclose()

    @property
    def stats(self) -> LlmStats | None:
        return self.service.stats

    async def ask(
        self,
        messages: list[dict[str, str]],
        decode: Callable[[str], T],
        *,
        what: str,
        shape: str,
    ) -> T:
        """One question with this component's versions and ``response_format``
        (:func:`~accelerated.llm.ask.ask_json`: validated, repaired once)."""
        return await ask_json(
            self.client(),
            messages,
            decode,
            response_format=self.response_format,
            prompt_version=self.prompt_version,
            schema_version=self.schema_version,
            what=what,
            shape=shape,
        )

    def conversation(self, user: str) -> list[dict[str, str]]:
        """The messages of one question: the system prompt, then ``user``."""
        return [{"role": "system", "content": self.prompt}, {"role": "user", "content": user}]
