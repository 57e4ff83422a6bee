"""One chat call through the cache and the limiter, on the ``openai`` async client.

The order is fixed: cache (a hit costs nothing and waits for nothing), then the
limiter (reserve prompt estimate + ``max_tokens``), the call, the settlement from the
reply's ``usage``, the caller's validation, and only then the cache write. The
client's own retries are off (``max_retries=0``): a 429 must reach the shared
cool-down, not be retried by one worker on its own. openai's exceptions are
translated at the boundary (``register_mapper("openai", ...)``); the API key never
appears in a message: credential errors are reported without the server's text.
Every cache hit, call, token, 429 and second spent waiting on the limiter is also
added to the current project's counters in Redis (:mod:`accelerated.llm.usage`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import openai
from pydantic import SecretStr

from accelerated.boundary import describe, map_driver_errors, register_mapper
from accelerated.errors import (
    BackendError,
    BackendRejected,
    BackendUnavailable,
    BudgetExhausted,
    InvalidOutput,
)
from accelerated.llm.cache import CachedReply, ResponseCache
from accelerated.llm.limiter import Limiter, cooldown_ms
from accelerated.llm.usage import UsageCounter
from accelerated.redact import redact
from accelerated.scope import current_project

T = TypeVar("T")
MAX_RATE_LIMITED: Final = 6  # 429s in a row for one call, then BackendUnavailable


class InvalidReply(InvalidOutput):
    """The model's reply is not what the schema asks for (after the repair attempt)."""

    content: str | None = None  # the reply, for a repair prompt (set by ChatClient)


def _openai(exc: BaseException) -> BackendError | None:
    if isinstance(exc, openai.APIConnectionError):  # APITimeoutError is a subclass
        return BackendUnavailable(f"LLM API unreachable: {type(exc).__name__}", backend="openai")
    if isinstance(exc, openai.RateLimitError):
        return BackendUnavailable("LLM API still rate limited after retries", backend="openai")
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        # The server's text may quote the key (OpenAI quotes a masked one): not repeated.
        return BackendRejected(
            f"LLM API refused the credentials (HTTP {exc.status_code}): check OPENAI_API_KEY",
            backend="openai",
        )
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code >= 500:
            return BackendUnavailable(f"LLM API failed (HTTP {exc.status_code})", backend="openai")
        return BackendRejected(
            f"LLM API refused the call (HTTP {exc.status_code}): {describe(exc)[:300]}",
            backend="openai",
        )
    if isinstance(exc, openai.APIError):  # malformed bodies, validation of the reply
        return BackendRejected(f"LLM API reply unusable: {describe(exc)[:300]}", backend="openai")
    if isinstance(exc, ValueError):  # the HTTP body is not JSON (a proxy's page, a cut reply)
        return BackendUnavailable(
            f"LLM API sent a body that is not JSON: {type(exc).__name__}", backend="openai"
        )
    return None


register_mapper("openai", _openai)


def _format_refused(exc: openai.APIStatusError, response_format: Any) -> str | None:
    """The message for a call refused because of the reply schema it carried, else None.

    Servers differ in the forms they take, and say so differently: HTTP 400 or 422,
    or (llama-cpp-python's server, for OpenAI's ``json_schema``) HTTP 500 with a
    validation error naming ``response_format``. Such a refusal is final (a
    :class:`BackendRejected`, not an outage to wait out) and names the setting."""
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_schema":
        mode = "json_schema"
    elif "schema" in response_format:
        mode = "json_object_schema"
    else:
        return None
    text = redact(" ".join(str(exc).split()))  # the server's text may span lines
    if exc.status_code not in (400, 422) and "response_format" not in text:
        return None
    return (
        f"LLM API refused the call (HTTP {exc.status_code}), which carried the reply's "
        f"schema as LLM_RESPONSE_FORMAT={mode}: this server may take another (json_schema, "
        f"json_object_schema, json_object, none): {text[:300]}"
    )


def estimate_prompt_tokens(messages: Sequence[Mapping[str, str]]) -> int:
    """An upper-leaning estimate: about 3 characters a token, plus per-message framing."""
    return sum(len(m.get("content", "")) // 3 + 8 for m in messages) + 3


def cost_usd(prices: Mapping[str, tuple[float, float]], model: str, prompt: int, out: int) -> float:
    """USD for one call by the price table (USD per million tokens, in and out)."""
    price_in, price_out = prices.get(model, (0.0, 0.0))
    return (prompt * price_in + out * price_out) / 1e6


@dataclass
class LlmStats:
    """This process's own figures (the run's, across workers, are in Redis)."""

    calls: int = 0
    cache_hits: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    rate_limited: int = 0
    cost_usd: float = 0.0
    wait_s: float = 0.0
    prices: dict[str, tuple[float, float]] = field(default_factory=dict)

    def add(self, model: str, prompt: int, completion: int) -> float:
        self.calls += 1
        self.tokens_in += prompt
        self.tokens_out += completion
        cost = cost_usd(self.prices, model, prompt, completion)
        self.cost_usd += cost
        return cost


class ChatClient:
    """JSON chat completions for one base URL and model, cached and rate limited."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: SecretStr,
        model: str,
        limiter: Limiter,
        cache: ResponseCache | None,
        max_tokens: int = 1024,
        temperature: float = 0.0,
        timeout_s: float = 60.0,
        prices: dict[str, tuple[float, float]] | None = None,
        usage: UsageCounter | None = None,
    ) -> None:
        self.base_url, self.model = base_url.rstrip("/"), model
        self.max_tokens, self.temperature = max_tokens, temperature
        self.limiter, self.cache, self.usage = limiter, cache, usage
        self.stats = LlmStats(prices=dict(prices or {}))
        self._client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=api_key.get_secret_value(),
            max_retries=0,
            timeout=timeout_s,
        )

    def request(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        response_format: dict[str, Any] | None,
        prompt_version: str,
        schema_version: str,
    ) -> dict[str, Any]:
        """The full request: the cache key and the API call are built from the same dict."""
        return {
            "base_url": self.base_url,
            "model": self.model,
            "messages": [dict(m) for m in messages],
            "response_format": response_format,
            "temperature": self.temperature,
            "top_p": None,
            "max_tokens": self.max_tokens,
            "seed": None,
            "stop": None,
            "tools": None,
            "prompt_version": prompt_version,
            "schema_version": schema_version,
        }

    async def _count(self, **amounts: float) -> None:
        if self.usage is not None:
            await self.usage.add(current_project(), **amounts)

    async def complete(self, request: dict[str, Any], validate: Callable[[str], T]) -> T:
        """``validate(content)`` the reply; only a reply it accepts is cached.

        At most ``LLM_CONCURRENCY`` of these run at once in the process (the limiter's
        semaphore), cache lookups included: each holds Redis connections from the pool
        the whole pipeline shares, and a document of many chunks starts all of them."""
        async with self.limiter.semaphore:
            return await self._complete(request, validate)

    async def _complete(self, request: dict[str, Any], validate: Callable[[str], T]) -> T:
        if self.cache is not None:
            hit = await self.cache.get(request)
            if hit is not None:
                self.stats.cache_hits += 1
                await self._count(cache_hits=1)
                return validate(hit.content)
        content: str | None = None
        try:
            content, prompt, completion = await self._call(request)
            value = validate(content)  # raises for an invalid reply: nothing is cached
        except InvalidReply as exc:
            exc.content = content
            await self._count(invalid=1)
            raise
        if self.cache is not None:
            await self.cache.put(request, CachedReply(content, prompt, completion))
        return value

    async def remember(self, request: dict[str, Any], content: str) -> None:
        """Store ``content``, already validated by the caller, as the reply to ``request``
        (a repaired answer under the question first asked)."""
        if self.cache is not None:
            await self.cache.put(request, CachedReply(content, 0, 0))

    async def _acquire(self, reserved: int) -> tuple[str, float]:
        """The limiter's admission, and the seconds it took (counted with the call)."""
        started = time.monotonic()
        try:
            call_id = await self.limiter.acquire(reserved)
        except BudgetExhausted:
            waited = time.monotonic() - started
            self.stats.wait_s += waited
            await self._count(budget_stops=1, wait_s=waited)
            raise
        waited = time.monotonic() - started
        self.stats.wait_s += waited
        return call_id, waited

    async def _call(self, request: dict[str, Any]) -> tuple[str, int, int]:
        """The API call (the caller holds the limiter's semaphore)."""
        kwargs: dict[str, Any] = {
            k: v
            for k, v in request.items()
            if k not in ("base_url", "prompt_version", "schema_version") and v is not None
        }
        reserved = estimate_prompt_tokens(request["messages"]) + self.max_tokens
        for _attempt in range(MAX_RATE_LIMITED):
            call_id, waited = await self._acquire(reserved)
            try:
                with map_driver_errors("openai"):
                    try:
                        raw = await self._client.chat.completions.with_raw_response.create(**kwargs)
                    except openai.RateLimitError as exc:
                        self.stats.rate_limited += 1
                        wait = cooldown_ms(exc.response.headers) or 1000.0
                        await self.limiter.settle(call_id, reserved, 0)
                        await self.limiter.cool_down(wait)
                        await self._count(rate_limited=1, wait_s=waited)
                        continue
                    except openai.APIStatusError as exc:
                        why = _format_refused(exc, request.get("response_format"))
                        if why is None:
                            raise
                        raise BackendRejected(why, backend="openai") from None
                    completion = raw.parse()
            except BackendError:
                # The server may have done the work (a timeout): the reservation
                # stands until it leaves the window.
                await self._count(wait_s=waited)
                raise
            usage = completion.usage
            prompt = usage.prompt_tokens if usage else reserved - self.max_tokens
            out = usage.completion_tokens if usage else self.max_tokens
            await self.limiter.settle(call_id, reserved, prompt + out)
            cost = self.stats.add(self.model, prompt, out)
            await self._count(
                calls=1, tokens_in=prompt, tokens_out=out, cost_usd=cost, wait_s=waited
            )
            hint = cooldown_ms(raw.headers)
            if hint:
                await self.limiter.cool_down(hint)
            choice = completion.choices[0] if completion.choices else None
            if choice is None or choice.message.content is None:
                raise InvalidReply("LLM reply has no content", backend="openai")
            if choice.finish_reason == "length":
                raise InvalidReply(
                    f"LLM reply cut at max_tokens={self.max_tokens} (LLM_MAX_TOKENS)",
                    backend="openai",
                )
            return choice.message.content, prompt, out
        raise BackendUnavailable(
            f"LLM API rate limited {MAX_RATE_LIMITED} times in a row", backend="openai"
        )

    async def aclose(self) -> None:
        await self._client.close()
        await asyncio.sleep(0)
