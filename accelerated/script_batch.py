"""Calls of one Lua script from many coroutines, sent to Redis in shared round trips.

Every stage transition of every document is one call of the advance script
(``accelerated/transport.py``), and the resolve stage's registry lookup one more. With
16 documents in flight per stage, several such calls are issued in the same turn of
the event loop, or while the previous one is on the wire. Sent one by one, each pays
a round trip's fixed costs in this process (a connection out of the pool, a write,
waking up for the reply) and in redis-server (a read and a write per command).
Measured on the benchmark: these scripts' round trips went from 6.77 to 2.03 per
document; this process's Redis CPU stayed within the noise, since most of it is per
command (packing the arguments, parsing the reply), which a pipeline still pays.

``ScriptBatch`` queues the calls and sends what is queued as one non-transactional
pipeline of EVALSHAs, one pipeline in flight at a time (group commit): while it is on
the wire the next calls queue up, so the batch grows with the load and a lone call
waits for nothing but one turn of the loop. Each call is still its own script run,
atomic by itself; a pipeline only shares the round trip, so nothing about what each
call guarantees changes:

* a call's reply (or its error: a script error, a server that forgot the script, a
  full Redis) is that call's; a server that forgot the script (restarted) gets it
  loaded once and the calls that hit that error are sent again;
* a lost connection fails every call of that pipeline with the driver's error, which
  the caller maps (``map_driver_errors``) as it would a single call's; the scripts
  that did run before the connection dropped are exactly the ones a lost reply to a
  single call leaves behind, which the scripts already handle (the advance script
  returns 0 for a message it advanced before);
* a call cancelled while queued (a time limit, a shutdown) is never sent.

A cluster client sends each call on its own: redis-py refuses EVALSHA in a cluster
pipeline, and the keys of one call share a slot but those of a batch do not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Final

from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from accelerated.cluster import RedisClient

MAX_BATCH: Final = 256  # calls per pipeline: bounds one reply's size and parse time

_Call = tuple[Sequence[Any], Sequence[Any], "asyncio.Future[Any]"]


class ScriptBatch:
    """``await batch(keys, args)`` runs the script like ``AsyncScript(keys=, args=)``."""

    def __init__(self, redis: RedisClient, script: str) -> None:
        self.redis = redis
        self.script: AsyncScript = redis.register_script(script)  # type: ignore[assignment]
        self._queue: list[_Call] = []
        self._flusher: asyncio.Task[None] | None = None
        self._direct = isinstance(redis, RedisCluster)
        self.calls = 0
        self.round_trips = 0

    async def __call__(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        self.calls += 1
        if self._direct:
            self.round_trips += 1
            return await self.script(keys=list(keys), args=list(args))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((keys, args, fut))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await fut

    async def _flush(self) -> None:
        try:
            while self._queue:
                # One turn of the loop: the coroutines woken with the caller queue theirs.
                await asyncio.sleep(0)
                batch = [c for c in self._queue[:MAX_BATCH] if not c[2].done()]
                del self._queue[:MAX_BATCH]
                if batch:
                    await self._send(batch, reload=True)
        finally:
            self._flusher = None
            # Left only when cancelled mid-way (the loop shutting down): nobody may
            # wait for ever on a call that will not be sent.
            for _k, _a, fut in self._queue:
                fut.cancel()
            self._queue.clear()

    async def _send(self, batch: list[_Call], *, reload: bool) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for keys, args, _fut in batch:
            pipe.evalsha(self.script.sha, len(keys), *keys, *args)
        self.round_trips += 1
        try:
            results = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:
            for *_ka, fut in batch:
                fut.cancel()
            raise
        except BaseException as exc:  # the connection: every call of the pipeline failed
            for *_ka, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        again = [c for c, r in zip(batch, results, strict=True) if isinstance(r, NoScriptError)]
        if again and reload:
            try:
                await self.redis.script_load(self.script.script)
            except asyncio.CancelledError:
                for *_ka, fut in again:
                    fut.cancel()
                raise
            except BaseException as exc:
                for *_ka, fut in again:
                    if not fut.done():
                        fut.set_exception(exc)
                again = []
            else:
                await self._send(again, reload=False)
        # The calls sent again (or failed with the load's error) are done already.
        for (_k, _a, fut), res in zip(batch, results, strict=True):
            if fut.done():
                continue
            if isinstance(res, BaseException):
                fut.set_exception(res)
            else:
                fut.set_result(res)
