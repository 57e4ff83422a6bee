"""The stream engine: one per process, serving both the batch command and the worker.

Per stage it reads messages in batches, runs the stage with bounded concurrency and
hands the output on through the path's ``Handoff``. Failures are sorted into three
kinds: bad input (recorded against the document at once), transient errors
(retried with backoff, then dead-lettered) and crashes (the message stays pending
and another consumer reclaims it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Histogram

from accelerated import fingerprint, state
from accelerated.errors import BackendUnavailable, DocumentError
from accelerated.handoff import Handoff, MissingInput
from accelerated.keys import STAGES
from accelerated.models import Extracted, SourceRef
from accelerated.settings import Settings
from accelerated.stages import StageContext
from accelerated.transport import Message, Transport

log = logging.getLogger(__name__)

StageFn = Callable[[Any, StageContext], Awaitable[Any]]

STAGE_SECONDS = Histogram("stage_seconds", "Time inside stage code", ["stage"])
MESSAGES = Counter("stage_messages_total", "Messages handled", ["stage", "outcome"])


def load_stages() -> dict[str, StageFn]:
    """Import the six stage functions (late, so a worker starts only what it runs)."""
    from accelerated.stages import chunk, clean, entities, extract, relate, resolve

    return {
        "extract": extract.run,
        "clean": clean.run,
        "chunk": chunk.run,
        "entities": entities.run,
        "resolve": resolve.run,
        "relate": relate.run,
    }


def next_stage(stage: str, output: Any) -> tuple[str | None, str | None]:
    """(next stage, final status if the document is finished after this stage)."""
    if stage == "extract" and isinstance(output, Extracted) and output.needs_ocr:
        return None, state.NEEDS_OCR
    i = STAGES.index(stage)
    if i + 1 < len(STAGES):
        return STAGES[i + 1], None
    return None, state.DONE


@dataclass
class EngineStats:
    processed: int = 0
    failed: int = 0
    retried: int = 0
    in_flight: int = 0
    compute_s: float = 0.0
    unhandled: int = 0  # a count, not a list: a worker runs for months


class Engine:
    def __init__(
        self,
        *,
        settings: Settings,
        transport: Transport,
        handoff: Handoff,
        context: Callable[[SourceRef], StageContext],
        stages: dict[str, StageFn] | None = None,
        background: list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] | None = None,
        fingerprints: Callable[[SourceRef], dict[str, str]] | None = None,
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.handoff = handoff
        self.context = context
        self.stages = stages or load_stages()
        self.background = background or []
        self.fingerprints = fingerprints
        self.stats = EngineStats()
        self._sems = {s: asyncio.Semaphore(settings.concurrency) for s in STAGES}
        self._tasks: set[asyncio.Task[None]] = set()
        self._working: dict[str, set[str]] = {s: set() for s in STAGES}  # message ids in hand

    async def run(self, stop: asyncio.Event) -> None:
        """Consume every stage until ``stop`` is set, then finish in-flight work."""
        await self.transport.setup()
        readers_stop = asyncio.Event()
        loops = [asyncio.create_task(self._consume(s, readers_stop)) for s in STAGES]
        loops.append(asyncio.create_task(self._reclaim(readers_stop)))
        loops.append(asyncio.create_task(self._heartbeat(readers_stop)))
        bg_stop = asyncio.Event()
        bg: list[asyncio.Task[None]] = [asyncio.create_task(fn(bg_stop)) for fn in self.background]
        try:
            await stop.wait()
        finally:
            readers_stop.set()
            await asyncio.gather(*loops, return_exceptions=True)
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            bg_stop.set()
            for res in await asyncio.gather(*bg, return_exceptions=True):
                if isinstance(res, BaseException):
                    log.error("background task failed: %r", res)
            await self.transport.close()

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        """Keep this consumer visibly alive, and renew the lease on messages in hand so a
        slow stage is never mistaken for a hung one and run twice."""
        interval = max(0.2, min(3.0, self.settings.claim_idle_ms / 3000))
        while True:
            with contextlib.suppress(BackendUnavailable):
                await self.transport.heartbeat()
                for stage, ids in self._working.items():
                    if ids:
                        await self.transport.touch(stage, list(ids))
            if stop.is_set():
                if not self._tasks:
                    return
                await asyncio.sleep(0.1)  # draining: renew until the last task ends
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    async def _consume(self, stage: str, stop: asyncio.Event) -> None:
        sem = self._sems[stage]
        backoff = 0.1
        while not stop.is_set():
            await sem.acquire()
            free = 1
            while free < self.settings.read_count and not sem.locked():
                await sem.acquire()
                free += 1
            try:
                msgs = await self.transport.read(stage, free, self.settings.block_ms)
                backoff = 0.1
            except BackendUnavailable as exc:
                for _ in range(free):
                    sem.release()
                log.warning("reading %s failed (%s); retrying in %.1fs", stage, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            for _ in range(free - len(msgs)):
                sem.release()
            for msg in msgs:
                self._spawn(msg, sem)
            if 0 < len(msgs) < free and self.settings.read_linger_ms > 0:
                # Messages trickle in one by one while documents flow: wait a moment so
                # the next read takes several (a read costs the loop as much CPU as a
                # stage transition; a few ms per stage is nothing against seconds).
                await asyncio.sleep(self.settings.read_linger_ms / 1000)

    def _spawn(self, msg: Message, sem: asyncio.Semaphore | None) -> None:
        self._working[msg.stage].add(msg.id)
        task = asyncio.create_task(self._process(msg, sem))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reclaim(self, stop: asyncio.Event) -> None:
        interval = max(0.5, min(self.settings.claim_idle_ms / 2000, 5.0))
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            if stop.is_set():
                return
            for stage in STAGES:
                try:
                    msgs = await self.transport.reclaim(
                        stage, self.settings.claim_idle_ms, self.settings.read_count
                    )
                except BackendUnavailable as exc:
                    log.warning("reclaim on %s failed: %s", stage, exc)
                    continue
                for msg in msgs:
                    if msg.id in self._working[stage]:
                        continue  # ours and still in hand: not stalled
                    log.info("reclaimed %s message %s", stage, msg.id)
                    await self._sems[stage].acquire()
                    self._spawn(msg, self._sems[stage])

    async def _process(self, msg: Message, sem: asyncio.Semaphore | None) -> None:
        self.stats.in_flight += 1
        try:
            await self._handle(msg)
        except Exception:  # never let one document take the consumer down
            log.exception("unhandled error on %s %s", msg.stage, msg.ref.document_id)
            self.stats.unhandled += 1
        finally:
            self.stats.in_flight -= 1
            self._working[msg.stage].discard(msg.id)
            if sem is not None:
                sem.release()

    async def _handle(self, msg: Message) -> None:
        stage, ref = msg.stage, msg.ref
        try:
            begin = await self.transport.begin(
                msg, self.handoff.input_key(stage, ref), self.handoff.check_stale_first
            )
        except BackendUnavailable:
            return  # stays pending; reclaimed once the backend is back
        if begin.stale:
            MESSAGES.labels(stage, "stale").inc()
            await self.transport.advance(msg, None, {})
            return
        if begin.attempts > self.settings.max_deliveries:
            error = f"gave_up: {stage} failed {begin.attempts - 1} times"
            await self.transport.dead_letter(msg, error)
            await self._fail(msg, error)
            return
        try:
            inp = await self.handoff.load(stage, ref, begin.input_raw)
            ctx = self.context(ref)
            t0 = time.thread_time()
            output = await self.stages[stage](inp, ctx)
            compute = ctx.compute_seconds(time.thread_time() - t0)
            STAGE_SECONDS.labels(stage).observe(compute)
            self.stats.compute_s += compute
            nxt, final = next_stage(stage, output)
            fields: dict[str, str | float] = {
                state.STAGE: nxt or stage,
                state.STATUS: state.RUNNING,
                state.stage_time_field(stage): f"{compute:.6f}",
                state.attempts_field(stage): begin.attempts,
            }
            if self.fingerprints is not None:
                fields[fingerprint.field(stage)] = self.fingerprints(ref)[stage]
            if not await self.handoff.commit(msg, output, nxt, final, fields):
                MESSAGES.labels(stage, "stale").inc()  # re-ingested meanwhile: dropped
                return
            MESSAGES.labels(stage, "ok").inc()
            self.stats.processed += 1
        except DocumentError as exc:
            await self._fail(msg, f"{stage}: {exc}")
        except MissingInput as exc:
            log.warning("%s; restarting %s from extract", exc, ref.document_id)
            await self.transport.advance(msg, STAGES[0], {state.STAGE: STAGES[0]})
        except Exception as exc:
            MESSAGES.labels(stage, "error").inc()
            error = f"{type(exc).__name__}: {exc}"
            if begin.attempts >= self.settings.max_deliveries:
                await self.transport.dead_letter(msg, error)
                await self._fail(msg, f"{stage}: gave_up after {begin.attempts} attempts: {error}")
                return
            log.warning("%s on %s (attempt %d): %s", stage, ref.document_id, begin.attempts, error)
            self.stats.retried += 1
            await asyncio.sleep(min(0.2 * 2**begin.attempts, 5.0))
            with contextlib.suppress(BackendUnavailable):
                await self.transport.retry(msg, error)

    async def _fail(self, msg: Message, error: str) -> None:
        MESSAGES.labels(msg.stage, "failed").inc()
        self.stats.failed += 1
        await self.handoff.fail(msg, error)
