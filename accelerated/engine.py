"""The stream engine: one per process, serving both the batch command and the worker.

Per stage of the registry (:mod:`accelerated.pipeline`) it reads messages in batches,
runs the stage with bounded concurrency and a time limit, and hands the output on
through the path's ``Handoff`` to wherever the stage's route says. Failures are
sorted by what another attempt can do (``errors.is_retryable``):

* a document handed to an outside service that answers later (``Parked``): acked and
  filed in the service's waiting room; whoever finishes the work sends it back
  (``accelerated/parking.py``), so no slot is held while it waits;
* bad input (``DocumentError``) and deterministic failures (a value over a cap, data
  a server rejects): recorded against the document at once, never retried;
* the run's LLM token budget spent (``BudgetExhausted``): the document ends as
  ``budget_exhausted``, with the reason, neither failed nor dead-lettered (a re-run
  with a larger budget takes it up);
* transient errors and time-outs: retried with backoff, then dead-lettered;
* Redis or Postgres unreachable or full: nothing is counted against the document;
  the message is held and tried again, with backoff, once the server answers;
* crashes of the process: the message stays pending and another consumer reclaims it.

When the handoff can commit several outputs at once (the accelerated one), a
document's next stages run inline, in the same task, and the outputs of all of them
go into Redis in the one advance of the message that was read (``_inline`` says when;
``INLINE_STAGES=false`` hands every stage on). A stage that fails inline is handed on
to its own stream carrying the attempt (``_failed_inline``), so retries and dead
letters stay per stage.

Each stage's stream may be split into shards (``Transport.shards``; see
``accelerated/keys.py``): then each stage has one reader per shard, all sharing the
stage's concurrency. A reader holds the slots it reads into while it blocks, so with
several shards one reader takes at most its share (``read_count`` divided among them)
and an idle shard's reader cannot starve a busy one for longer than one ``block_ms``.

Every loop and background task (the write-behind writer) is supervised: one that
fails is logged and restarted, never left dead silently. On stop, in-flight work
gets ``SHUTDOWN_GRACE_S`` to finish; what is left is given back (its messages stay
pending, the heartbeat key is removed, and another worker claims them at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Histogram

from accelerated import fingerprint, state
from accelerated.aio import wait_for
from accelerated.boundary import describe
from accelerated.cpu import CpuPool
from accelerated.errors import (
    BackendUnavailable,
    BudgetExhausted,
    DocumentError,
    StageTimeout,
    StreamsMissing,
    is_retryable,
)
from accelerated.handoff import Handoff, MissingInput, Step
from accelerated.models import SourceRef
from accelerated.parking import Parked
from accelerated.pipeline import FIRST, PIPELINE, Finish, StageFn
from accelerated.scope import project_scope
from accelerated.settings import Settings
from accelerated.stages import StageContext
from accelerated.transport import Message, Transport

log = logging.getLogger(__name__)

STAGE_SECONDS = Histogram("stage_seconds", "Time inside stage code", ["stage"])
MESSAGES = Counter("stage_messages_total", "Messages handled", ["stage", "outcome"])

Background = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


@dataclass
class EngineStats:
    processed: int = 0
    failed: int = 0
    retried: int = 0
    in_flight: int = 0
    compute_s: float = 0.0
    unhandled: int = 0  # a count, not a list: a worker runs for months
    timeouts: int = 0
    budget_exhausted: int = 0  # documents ended because LLM_BUDGET_TOKENS was spent
    restarts: int = 0  # supervised loops / background tasks restarted after a failure
    given_back: int = 0  # in-flight messages left pending at shutdown
    parked: int = 0  # documents handed to an outside service to wait in its room


class _Held(Exception):
    """A backend is unreachable: hold the message and try it again later."""


@dataclass
class _Slot:
    """What a message's task counts against: the slot of the stage it was read at
    (``sem``) until its document moves on inline, then the stage it runs inline."""

    sem: asyncio.Semaphore | None
    inline_at: str | None = None


class Engine:
    def __init__(
        self,
        *,
        settings: Settings,
        transport: Transport,
        handoff: Handoff,
        context: Callable[[SourceRef], StageContext],
        stages: dict[str, StageFn] | None = None,
        background: list[Background] | None = None,
        fingerprints: Callable[[SourceRef], dict[str, str]] | None = None,
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.handoff = handoff
        self.context = context
        self.specs = {s.name: s for s in PIPELINE if s.enabled(settings)}
        overrides = stages or {}
        self.stages: dict[str, StageFn] = {
            name: overrides.get(name) or spec.resolve() for name, spec in self.specs.items()
        }
        self.limits = {
            name: float(settings.stage_time_limits.get(name, spec.time_limit_s))
            for name, spec in self.specs.items()
        }
        self.background = background or []
        self.fingerprints = fingerprints
        self.stats = EngineStats()
        # Since when a backend has been unreachable (None: all well), and why.
        self.outage_since: float | None = None
        self.outage_reason = ""
        self._sems = {s: asyncio.Semaphore(settings.concurrency) for s in self.specs}
        self._tasks: set[asyncio.Task[None]] = set()
        # Messages in hand per stage: (shard, id) -> lease deadline.
        self._working: dict[str, dict[tuple[int, str], float]] = {s: {} for s in self.specs}
        shards = max(1, transport.shards)
        self._shards = range(shards)
        self._read_share = max(1, settings.read_count // shards)
        self._stopping = asyncio.Event()
        self._inline_on = settings.inline_stages and handoff.inline
        self._inline_now = {s: 0 for s in self.specs}  # documents run inline, per stage

    # Lifecycle ---------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Consume every stage until ``stop`` is set, then drain within the grace time."""
        await self._until_available(self.transport.setup, stop)
        readers_stop, beat_stop, bg_stop = asyncio.Event(), asyncio.Event(), asyncio.Event()
        loops = [
            asyncio.create_task(
                self._supervise(self._reader_name(s, n), self._consume, readers_stop, s, n)
            )
            for s in self.specs
            for n in self._shards
        ]
        loops.append(asyncio.create_task(self._supervise("reclaim", self._reclaim, readers_stop)))
        beat = asyncio.create_task(self._supervise("heartbeat", self._heartbeat, beat_stop))
        bg = [
            asyncio.create_task(self._supervise(getattr(fn, "__qualname__", "task"), fn, bg_stop))
            for fn in self.background
        ]
        try:
            await stop.wait()
        finally:
            self._stopping.set()
            readers_stop.set()
            await asyncio.gather(*loops, return_exceptions=True)
            await self._drain()
            beat_stop.set()
            await asyncio.gather(beat, return_exceptions=True)
            bg_stop.set()
            await asyncio.gather(*bg, return_exceptions=True)
            await self.transport.close()

    async def _drain(self) -> None:
        """Give in-flight work ``shutdown_grace_s``; cancel the rest (its messages stay
        pending to this consumer, whose heartbeat ``close`` removes: claimed at once)."""
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(
            set(self._tasks), timeout=self.settings.shutdown_grace_s
        )
        if pending:
            self.stats.given_back += len(pending)
            log.warning(
                "shutdown: %d message(s) still in flight after %.0fs; giving them back",
                len(pending),
                self.settings.shutdown_grace_s,
            )
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def _reader_name(self, stage: str, shard: int) -> str:
        return f"{stage} consumer" if len(self._shards) == 1 else f"{stage} consumer {shard}"

    async def _supervise(
        self, name: str, fn: Callable[..., Any], stop: asyncio.Event, *a: Any
    ) -> None:
        """Run a loop until it returns; restart it (with backoff) whenever it fails."""
        delay = 0.5
        while True:
            try:
                await fn(*a, stop) if a else await fn(stop)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.restarts += 1
                log.error("%s failed (%s); restarting it in %.1fs", name, describe(exc), delay)
            with contextlib.suppress(TimeoutError):
                await wait_for(stop.wait(), delay)
            if stop.is_set():
                return
            delay = min(delay * 2, 10.0)

    # Outages -----------------------------------------------------------------------------
    def _outage(self, exc: BackendUnavailable) -> None:
        if self.outage_since is None:
            self.outage_since = time.monotonic()
            self.outage_reason = str(exc)
            log.warning("%s; holding work and retrying until it answers", exc)

    def _recovered(self) -> None:
        if self.outage_since is not None:
            log.warning(
                "backend answers again after %.1fs; resuming",
                time.monotonic() - self.outage_since,
            )
            self.outage_since = None
            self.outage_reason = ""

    async def _until_available(self, fn: Callable[[], Any], stop: asyncio.Event) -> None:
        delay = 0.1
        while True:
            try:
                await fn()
                self._recovered()
                return
            except BackendUnavailable as exc:
                self._outage(exc)
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await wait_for(stop.wait(), delay)
            delay = min(delay * 2, 2.0)

    async def _backoff(self, exc: BackendUnavailable, delay: float) -> float:
        """After a failed call: note the outage, re-create lost groups, wait a little."""
        self._outage(exc)
        if isinstance(exc, StreamsMissing):
            with contextlib.suppress(BackendUnavailable):
                await self.transport.setup()
                log.warning("stage streams or groups were missing (Redis restarted?): recreated")
        await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # jitter: not all at once
        return min(delay * 2, 2.0)

    # Loops ---------------------------------------------------------------------------------
    async def _heartbeat(self, stop: asyncio.Event) -> None:
        """Keep this consumer visibly alive, and renew the lease on messages in hand, but
        only within their time limit: a stage stuck past it must not be shielded."""
        interval = max(0.2, min(3.0, self.settings.claim_idle_ms / 3000))
        while not stop.is_set():
            try:
                await self.transport.heartbeat()
                now = time.monotonic()
                for stage, held in self._working.items():
                    by_shard: dict[int, list[str]] = {}
                    for (shard, mid), deadline in held.items():
                        if deadline > now:
                            by_shard.setdefault(shard, []).append(mid)
                    for shard, ids in by_shard.items():
                        await self.transport.touch(stage, ids, shard)
            except BackendUnavailable as exc:
                self._outage(exc)
            with contextlib.suppress(TimeoutError):
                await wait_for(stop.wait(), interval)

    async def _consume(self, stage: str, shard: int, stop: asyncio.Event) -> None:
        sem = self._sems[stage]
        delay = 0.1
        idle = 0  # reads in a row that found nothing
        block, share = self.settings.block_ms, self._read_share
        # One waiter on ``stop`` for all of this reader's reads (see _read).
        stopped = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                await sem.acquire()
                free = 1
                while free < share and not sem.locked():
                    await sem.acquire()
                    free += 1
                try:
                    msgs = await self._read(stage, free, block, shard, stopped)
                    delay = 0.1
                    self._recovered()
                except BackendUnavailable as exc:
                    for _ in range(free):
                        sem.release()
                    delay = await self._backoff(exc, delay)
                    continue
                except BaseException:
                    for _ in range(free):
                        sem.release()
                    raise
                for _ in range(free - len(msgs)):
                    sem.release()
                idle = 0 if msgs else idle + 1
                block, share = self._idle_read(idle)
                for msg in msgs:
                    self._spawn(msg, sem)
                if 0 < len(msgs) < free and self.settings.read_linger_ms > 0:
                    # Messages trickle in one by one while documents flow: wait a moment so
                    # the next read takes several (a read costs the loop as much CPU as a
                    # stage transition; a few ms per stage is nothing against seconds).
                    await asyncio.sleep(self.settings.read_linger_ms / 1000)
        finally:
            stopped.cancel()
            await asyncio.gather(stopped, return_exceptions=True)

    async def _read(
        self, stage: str, count: int, block: int, shard: int, stopped: asyncio.Future[Any]
    ) -> list[Message]:
        """A read that stopping (``stopped`` done) abandons: shutdown does not sit out a
        blocked read (``BLOCK_MS`` per stage). Whatever the cancelled read may have made
        ours stays pending to this consumer, as in-flight work given back at shutdown
        does, and is claimed by the next consumer once this one's heartbeat is gone."""
        read = asyncio.ensure_future(self.transport.read(stage, count, block, shard))
        try:
            await asyncio.wait({read, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not read.done():
                read.cancel()
                await asyncio.gather(read, return_exceptions=True)
        if read.cancelled():
            return []
        return read.result()

    def _idle_read(self, idle: int) -> tuple[int, int]:
        """(block ms, slots) of a reader's next read after ``idle`` empty ones.

        An idle reader blocks longer (up to 4x ``block_ms``, at most 1 s: below the
        socket timeout, redis-py#3138), since a blocked read returns as soon as a
        message arrives: fewer empty reads of stages that are mostly idle (those run
        inline, or a quiet prefix), no added latency, and stop abandons the read. An
        idle shard's reader also takes one slot, not its share, so busy shards keep
        the stage's concurrency; one reader per stage keeps its share."""
        if idle == 0:
            return self.settings.block_ms, self._read_share
        base = self.settings.block_ms
        slots = 1 if len(self._shards) > 1 else self._read_share
        return min(base * 2 ** min(idle, 2), max(base, 1000)), slots

    def _deadline(self, stage: str) -> float:
        """Until when the heartbeat renews the lease of a message running ``stage``."""
        return time.monotonic() + self.limits[stage] + 5.0

    def _spawn(self, msg: Message, sem: asyncio.Semaphore | None) -> None:
        lease = (msg.shard, msg.id)
        self._working[msg.stage][lease] = self._deadline(msg.stage)
        task = asyncio.create_task(self._process(msg, _Slot(sem)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reclaim(self, stop: asyncio.Event) -> None:
        interval = max(0.5, min(self.settings.claim_idle_ms / 2000, 5.0))
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await wait_for(stop.wait(), interval)
            if stop.is_set():
                return
            for stage in self.specs:
                for shard in self._shards:
                    try:
                        msgs = await self.transport.reclaim(
                            stage, self.settings.claim_idle_ms, self.settings.read_count, shard
                        )
                    except BackendUnavailable as exc:
                        self._outage(exc)
                        continue
                    await self._take(stage, msgs)

    async def _take(self, stage: str, msgs: list[Message]) -> None:
        """Run reclaimed messages (those not already in hand here)."""
        for msg in msgs:
            if (msg.shard, msg.id) in self._working[stage]:
                continue  # ours and still in hand: not stalled
            log.info("reclaimed %s message %s", stage, msg.id)
            await self._sems[stage].acquire()
            self._spawn(msg, self._sems[stage])

    # One message ---------------------------------------------------------------------------
    async def _process(self, msg: Message, slot: _Slot) -> None:
        self.stats.in_flight += 1
        delay = 0.1
        try:
            while True:
                try:
                    await self._handle(msg, slot)
                    self._recovered()
                    return
                except _Held as held:
                    exc = held.args[0]
                    assert isinstance(exc, BackendUnavailable)
                    if self._stopping.is_set():
                        return  # stays pending; another consumer claims it
                    delay = await self._backoff(exc, delay)
                    # Still ours: the lease is renewed while Redis answers again.
                    self._working[msg.stage][(msg.shard, msg.id)] = self._deadline(
                        slot.inline_at or msg.stage
                    )
        except Exception:  # never let one document take the consumer down
            log.exception("unhandled error on %s %s", msg.stage, msg.ref.document_id)
            self.stats.unhandled += 1
        finally:
            self.stats.in_flight -= 1
            self._working[msg.stage].pop((msg.shard, msg.id), None)
            self._leave(slot)

    def _leave(self, slot: _Slot) -> None:
        if slot.sem is not None:
            slot.sem.release()
            slot.sem = None
        if slot.inline_at is not None:
            self._inline_now[slot.inline_at] -= 1
            slot.inline_at = None

    async def _handle(self, msg: Message, slot: _Slot) -> None:
        try:
            await self._attempt(msg, slot)
        except BackendUnavailable as exc:
            raise _Held(exc) from None

    def _inline(self, msg: Message, attempts: int, stage: str, nxt: str, slot: _Slot) -> bool:
        """Whether to run ``nxt`` now, in this task, instead of handing it on: the
        handoff can commit several outputs at once, this engine serves ``nxt``, which
        takes its input from ``stage``'s output and is not one to wait on an outside
        service, fewer than ``CONCURRENCY`` documents run inline there, and this is
        the message's first delivery (a redelivered one runs its own stage alone, so a
        stage that crashes the process is found at its own stream).

        The document then counts against ``nxt`` and gives up the slot it held, so the
        stage it leaves can take another document, as when it is handed on: a stage has
        at most ``CONCURRENCY`` documents read from its stream and as many run inline.
        """
        spec = self.specs.get(nxt)
        if not (
            self._inline_on
            and spec is not None
            and spec.inline
            and attempts == 1
            and spec.input_key == self.specs[stage].output_key
            and self._inline_now[nxt] < self.settings.concurrency
        ):
            return False
        self._leave(slot)
        self._inline_now[nxt] += 1
        slot.inline_at = nxt
        self._working[msg.stage][(msg.shard, msg.id)] = self._deadline(nxt)
        return True

    async def _attempt(self, msg: Message, slot: _Slot) -> None:
        stage, ref = msg.stage, msg.ref
        begin = await self.transport.begin(
            msg, self.handoff.input_key(stage, ref), self.handoff.check_stale_first
        )
        if begin.stale:
            MESSAGES.labels(stage, "stale").inc()
            await self.transport.advance(msg, None, {})
            return
        if begin.attempts > self.settings.max_deliveries:
            error = f"gave_up: {stage} failed {begin.attempts - 1} times"
            await self.transport.dead_letter(msg, error)
            await self._fail(msg, error)
            return
        steps: list[Step] = []  # stages run so far in this task: (stage, output)
        fields: dict[str, str | float] = {state.STATUS: state.RUNNING}
        try:
            inp = await self.handoff.load(stage, ref, begin.input_raw)
            while True:
                ctx = self.context(ref)
                output, compute = await self._run_stage(stage, inp, ctx)
                STAGE_SECONDS.labels(stage).observe(compute)
                self.stats.compute_s += compute
                route = self.specs[stage].route(output, self.settings)
                nxt = route if isinstance(route, str) else None
                final = route.status if isinstance(route, Finish) else None
                steps.append((stage, output))
                fields.update(
                    {
                        state.STAGE: nxt or stage,
                        state.stage_time_field(stage): f"{compute:.6f}",
                        state.attempts_field(stage): begin.attempts,
                        **ctx.state_fields,
                    }
                )
                if self.fingerprints is not None:
                    fields[fingerprint.field(stage)] = self.fingerprints(ref)[stage]
                if nxt is None or not self._inline(msg, begin.attempts, stage, nxt, slot):
                    break
                MESSAGES.labels(stage, "ok").inc()
                self.stats.processed += 1
                stage, inp = nxt, output
            if not await self.handoff.commit(msg, steps, nxt, final, fields):
                MESSAGES.labels(stage, "stale").inc()  # re-ingested meanwhile: dropped
                return
            MESSAGES.labels(stage, "ok").inc()
            self.stats.processed += 1
        except Parked as parked:
            # The slot is free as soon as the document is in the waiting room.
            outcome = await self.transport.park(msg, parked)
            if outcome == 1:
                self.stats.parked += 1
                log.info("%s %s parked: %s", stage, ref.document_id, parked.reason)
            MESSAGES.labels(stage, "parked" if outcome == 1 else "unparked").inc()
        except DocumentError as exc:
            await self._fail(msg, f"{stage}: {exc}")
        except BudgetExhausted as exc:
            MESSAGES.labels(stage, "budget_exhausted").inc()
            self.stats.budget_exhausted += 1
            await self.handoff.fail(msg, f"{stage}: {exc}", state.BUDGET_EXHAUSTED)
        except MissingInput as exc:
            log.warning("%s; restarting %s from %s", exc, ref.document_id, FIRST)
            await self.transport.advance(msg, FIRST, {state.STAGE: FIRST})
        except BackendUnavailable:
            raise
        except Exception as exc:
            if stage != msg.stage:
                await self._failed_inline(msg, stage, steps, fields, exc)
                return
            await self._failed_attempt(msg, begin.attempts, exc)

    async def _failed_inline(
        self,
        msg: Message,
        stage: str,
        steps: list[Step],
        fields: dict[str, str | float],
        exc: Exception,
    ) -> None:
        """A stage run inline failed: the stages before it are committed and it goes
        on to its own stream, carrying this attempt, to be retried (after the same
        backoff) or dead-lettered there exactly as if it had been handed on. Where no
        retry is due (a deterministic failure, or ``MAX_DELIVERIES=1``) it runs once
        more there and is dead-lettered with its error: the dead-letter streams are
        per stage, and the message in hand is the first stage's."""
        MESSAGES.labels(stage, "error").inc()
        error = f"{type(exc).__name__}: {describe(exc).split(': ', 1)[-1]}"
        log.warning("%s on %s (attempt 1, inline): %s", stage, msg.ref.document_id, error)
        counted = is_retryable(exc) and self.settings.max_deliveries > 1
        if counted:
            self.stats.retried += 1
            await asyncio.sleep(min(0.2 * 2, 5.0))
        fields.update({state.STAGE: stage, state.ERROR: error})
        await self.handoff.commit(msg, steps, stage, None, fields, retries=int(counted))

    async def _run_stage(self, stage: str, inp: Any, ctx: StageContext) -> tuple[Any, float]:
        """The stage call under its time limit; returns the output and its CPU seconds."""
        limit = self.limits[stage]
        t0 = time.thread_time()
        try:
            # The project scope: backends that count per project (LLM usage, the run's
            # token budget) read it (accelerated.scope).
            async with asyncio.timeout(limit) as cm:
                with project_scope(ctx.project):
                    output = await self.stages[stage](inp, ctx)
        except TimeoutError:
            if not cm.expired():
                raise  # a time-out inside the stage (a client's own), not our limit
            self.stats.timeouts += 1
            if ctx.cpu_abandoned and isinstance(ctx.executor, CpuPool):
                # The cancelled call is still running in a child: only killing it stops it.
                ctx.executor.recycle(f"{stage} ran past its {limit:g}s limit")
            raise StageTimeout(f"{stage} ran past its time limit of {limit:g}s") from None
        return output, ctx.compute_seconds(time.thread_time() - t0)

    async def _failed_attempt(self, msg: Message, attempts: int, exc: Exception) -> None:
        stage, ref = msg.stage, msg.ref
        MESSAGES.labels(stage, "error").inc()
        error = f"{type(exc).__name__}: {describe(exc).split(': ', 1)[-1]}"
        if not is_retryable(exc):
            # The same input fails the same way: no retry, but dead-lettered so that it
            # can be replayed once the cause (a cap, a setting) is fixed.
            await self.transport.dead_letter(msg, error)
            await self._fail(msg, f"{stage}: {error}")
            return
        if attempts >= self.settings.max_deliveries:
            await self.transport.dead_letter(msg, error)
            await self._fail(msg, f"{stage}: gave_up after {attempts} attempts: {error}")
            return
        log.warning("%s on %s (attempt %d): %s", stage, ref.document_id, attempts, error)
        self.stats.retried += 1
        await asyncio.sleep(min(0.2 * 2**attempts, 5.0))
        await self.transport.retry(msg, error)

    async def _fail(self, msg: Message, error: str) -> None:
        MESSAGES.labels(msg.stage, "failed").inc()
        self.stats.failed += 1
        await self.handoff.fail(msg, error)
