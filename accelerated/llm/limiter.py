"""One global limit on LLM requests AND tokens, shared by every worker on every host.

A single Lua script checks and consumes both budgets atomically on the Redis
server's own clock (``TIME``), so workers with skewed clocks agree and no two can
both take the last slot. It keeps a sliding log: one sorted-set entry per call in the
window (score: the server time in ms) and its token count in a hash beside it, so
any window of ``window_s`` holds at most ``requests`` calls and ``tokens`` tokens.
(The ``limits`` library was measured for this and cannot check the two atomically:
its two keys land in different cluster slots, and its moving window stores one list
entry per token.) All keys of one provider and model share the hash tag
``{llm:<model>}``, so the script runs on Redis Cluster too.

A call reserves its prompt estimate plus ``max_tokens`` before it is sent and is
corrected from the reply's ``usage`` afterwards (a refund, or a charge when the
estimate was low). A 429's ``retry-after`` / ``retry-after-ms``, or an
``x-ratelimit-remaining-*`` of 0, sets a shared cool-down key that every worker's
next acquire honours. The same script keeps the run's token budget
(``LLM_BUDGET_TOKENS``): past it, :class:`BudgetExhausted` and no new call. The
budget is counted per project (the project the calling task works for,
:mod:`accelerated.scope`), in a key with the same hash tag, and the batch command
zeroes it when a run of the project starts (:func:`budget_key`), so the budget is
the run's, shared by every worker that serves it.

Other rate-limited services reuse it for their request rate alone, under their own
``scope`` in the keys (Textract: ``accelerated/ocr/jobs.py``, one token per request).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any, Final

from prometheus_client import Counter

from accelerated.boundary import map_driver_errors
from accelerated.cluster import RedisClient
from accelerated.errors import BudgetExhausted, ConfigError
from accelerated.ids import validate_project
from accelerated.keys import Keys
from accelerated.scope import current_project

WAIT_SECONDS: Final = Counter("llm_limiter_wait_seconds_total", "Time spent waiting on the limiter")

# KEYS[1] log     sorted set: call id -> server time (ms) the call was admitted
# KEYS[2] tokens  hash: call id -> tokens charged to it
# KEYS[3] cool    string with a PX expiry: while it exists nobody calls (a 429 was seen)
# KEYS[4] budget  integer: tokens charged to the run so far
# ARGV[1] op: "acquire" | "settle" | "cooldown"
#   acquire  ARGV[2] id, ARGV[3] tokens, ARGV[4] request limit, ARGV[5] token limit,
#            ARGV[6] window ms, ARGV[7] budget (0: none)
#            -> {1, 0} admitted | {0, wait_ms} retry later | {-1, used} budget spent
#               | {-2, limit} this one call needs more tokens than the window allows
#   settle   ARGV[2] id, ARGV[3] actual tokens, ARGV[4] reserved tokens -> {1, 0}
#   cooldown ARGV[2] ms -> {1, pttl}; only ever lengthens the cool-down
LUA: Final = """
local op = ARGV[1]
if op == 'cooldown' then
  local ms = tonumber(ARGV[2])
  local left = redis.call('PTTL', KEYS[3])
  if left < ms then redis.call('SET', KEYS[3], '1', 'PX', ms) left = ms end
  return {1, left}
end
if op == 'settle' then
  local id, actual, reserved = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
  if redis.call('HEXISTS', KEYS[2], id) == 1 then redis.call('HSET', KEYS[2], id, actual) end
  if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('INCRBY', KEYS[4], actual - reserved) end
  return {1, 0}
end
local id, need = ARGV[2], tonumber(ARGV[3])
local rlimit, tlimit = tonumber(ARGV[4]), tonumber(ARGV[5])
local window, budget = tonumber(ARGV[6]), tonumber(ARGV[7])
if need > tlimit then return {-2, tlimit} end
local cool = redis.call('PTTL', KEYS[3])
if cool > 0 then return {0, cool} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - window)
if #old > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  redis.call('HDEL', KEYS[2], unpack(old))
end
local used = tonumber(redis.call('GET', KEYS[4]) or '0')
if budget > 0 and used + need > budget then return {-1, used} end
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local count = #entries / 2
local wait = 0
if count >= rlimit then
  local s = tonumber(entries[(count - rlimit) * 2 + 2])
  wait = s + window - now
end
local total = 0
local amounts = {}
if count > 0 then
  local members = {}
  for i = 1, count do members[i] = entries[i * 2 - 1] end
  amounts = redis.call('HMGET', KEYS[2], unpack(members))
end
for i = 1, count do
  total = total + tonumber(amounts[i] or '0')
end
if total + need > tlimit then
  local freed = 0
  for i = 1, count do
    freed = freed + tonumber(amounts[i] or '0')
    if total - freed + need <= tlimit then
      local w = tonumber(entries[i * 2]) + window - now
      if w > wait then wait = w end
      break
    end
  end
end
if wait > 0 then return {0, wait} end
redis.call('ZADD', KEYS[1], now, id)
redis.call('HSET', KEYS[2], id, need)
redis.call('PEXPIRE', KEYS[1], window * 2)
redis.call('PEXPIRE', KEYS[2], window * 2)
if budget > 0 then redis.call('INCRBY', KEYS[4], need) end
return {1, 0}
"""

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_MS: Final = {"ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def parse_duration_ms(text: str) -> float | None:
    """OpenAI's reset headers: ``"1s"``, ``"6m0s"``, ``"20ms"``; a bare number is seconds."""
    text = text.strip()
    try:
        return float(text) * 1000.0
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts:
        return None
    return sum(float(n) * _UNIT_MS[u] for n, u in parts)


def cooldown_ms(headers: Mapping[str, str]) -> float | None:
    """How long every worker must hold off, from a reply's headers (None: no hint).

    ``retry-after-ms`` wins over ``retry-after`` (seconds); a remaining count of 0
    holds off until its ``x-ratelimit-reset-*``."""
    h = {k.lower(): v for k, v in headers.items()}
    for name, scale in (("retry-after-ms", 1.0), ("retry-after", 1000.0)):
        if name in h:
            try:
                return max(0.0, float(h[name]) * scale)
            except ValueError:
                continue
    longest: float | None = None
    for kind in ("requests", "tokens"):
        remaining = h.get(f"x-ratelimit-remaining-{kind}")
        if remaining is not None and remaining.strip() in ("0", "0.0"):
            reset = parse_duration_ms(h.get(f"x-ratelimit-reset-{kind}", "1s")) or 1000.0
            longest = reset if longest is None else max(longest, reset)
    return longest


def limiter_tag(model: str, scope: str = "llm") -> str:
    """The hash tag every key of one model shares (braces stripped from the name)."""
    return "{" + scope + ":" + model.replace("{", "").replace("}", "") + "}"


def budget_key(keys: Keys, model: str, project: str | None, scope: str = "llm") -> str:
    """Tokens charged to the project's run so far (same slot as the model's limiter)."""
    suffix = "used" if project is None else f"used:{validate_project(project)}"
    return keys.rate_limit(f"{limiter_tag(model, scope)}:{suffix}")


class Limiter:
    """Requests and tokens per window for one model, across processes and hosts."""

    def __init__(
        self,
        redis: RedisClient,
        keys: Keys,
        model: str,
        *,
        requests: int,
        tokens: int,
        window_s: float = 60.0,
        budget_tokens: int = 0,
        concurrency: int = 8,
        margin_s: float = 0.25,
        scope: str = "llm",
    ) -> None:
        if requests < 1 or tokens < 1 or concurrency < 1:
            raise ConfigError("LLM_RPM, LLM_TPM and LLM_CONCURRENCY must be at least 1")
        # ``scope`` names the service in the keys: "llm", or another rate-limited API that
        # reuses this limiter for requests alone (Textract: one token per call).
        tag = limiter_tag(model, scope)
        self._keys = [keys.rate_limit(f"{tag}:{part}") for part in ("log", "tok", "cool")]
        self._app_keys, self.model, self.scope = keys, model, scope
        self.requests, self.tokens = requests, tokens
        # An admitted call stays in the log for the window plus a margin: the time
        # between admission here and arrival at the server (a busy event loop, a new
        # connection). The limit holds as the server measures it while that delay is
        # under the margin, at the price of margin / (window + margin) of the rate.
        self.window_ms = max(1, int((window_s + margin_s) * 1000))
        self.budget_tokens = budget_tokens
        self._script = redis.register_script(LUA)  # EVALSHA, loaded once (as redis-py's Lock)
        self._redis = redis
        self.semaphore = asyncio.Semaphore(concurrency)  # per process: sockets, memory
        self.waited_s = 0.0

    def _budget(self, project: str | None) -> str:
        return budget_key(self._app_keys, self.model, project, self.scope)

    async def _run(self, project: str | None, *args: Any) -> list[int]:
        keys = [*self._keys, self._budget(project)]
        with map_driver_errors("redis"):
            out = await self._script(keys=keys, args=list(args))
        return [int(x) for x in out]

    async def acquire(self, tokens: int, project: str | None = None) -> str:
        """Wait until the call may go out; returns the id to :meth:`settle` it with.

        ``project`` (default: the current task's, :mod:`accelerated.scope`) is whose
        run budget the call is charged to."""
        call_id = uuid.uuid4().hex
        started = time.monotonic()
        project = project or current_project()
        try:
            while True:
                status, value = await self._run(
                    project,
                    "acquire",
                    call_id,
                    tokens,
                    self.requests,
                    self.tokens,
                    self.window_ms,
                    self.budget_tokens,
                )
                if status == 1:
                    return call_id
                if status == -1:
                    raise BudgetExhausted(
                        f"LLM token budget spent: {value} of LLM_BUDGET_TOKENS="
                        f"{self.budget_tokens} used; no new LLM call is made in this run "
                        "(raise the budget and run again to finish)",
                        backend="llm",
                    )
                if status == -2:
                    raise BudgetExhausted(
                        f"one LLM call needs {tokens} tokens, over LLM_TPM={value}",
                        backend="llm",
                    )
                # A little jitter so waiting workers do not all retry at the same ms.
                await asyncio.sleep(value / 1000.0 + random.uniform(0.0, 0.01))
        finally:
            waited = time.monotonic() - started
            self.waited_s += waited
            WAIT_SECONDS.inc(waited)

    async def settle(
        self, call_id: str, reserved: int, actual: int, project: str | None = None
    ) -> None:
        """Correct the reservation with the tokens the reply's ``usage`` reports."""
        await self._run(project or current_project(), "settle", call_id, actual, reserved)

    async def cool_down(self, ms: float) -> None:
        """Every worker holds off for ``ms`` (a 429 or an exhausted remaining count)."""
        await self._run(None, "cooldown", max(1, int(ms)))

    async def budget_used(self, project: str | None = None) -> int:
        with map_driver_errors("redis"):
            raw = await self._redis.get(self._budget(project or current_project()))
        return int(raw or 0)
