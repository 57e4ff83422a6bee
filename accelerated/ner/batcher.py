"""Feeds one model from every document in flight in the process.

A GPU (or a CPU with a vectorised BLAS) is used well only by forward passes over many
inputs of similar length. The entities stage runs for up to ``CONCURRENCY`` documents
at once; each hands its chunks' windows to :meth:`Batcher.submit` and awaits them.
The batcher pools every pending window, sorts them by length, and cuts a batch:

* full when the pending windows would pad to ``token_budget`` tokens (windows x the
  longest of them) or number ``max_items``;
* else when the oldest has waited ``max_wait_s`` (a lone document is not held back);
* built around an anchor in length order, so a batch holds windows of similar length
  (little padding): the longest pending window, or the oldest once it is overdue, so
  no window waits behind a stream of others.

One batch runs at a time, on the batcher's own thread (the model is used by one thread
only; torch releases the GIL, so the event loop goes on tokenizing and queueing the
next batch meanwhile). Results are routed back to each caller's futures. When a batch
raises, it is split in halves and each half run again, down to single windows, so the
window that fails fails only its own document; the others in the batch get their
results. A caller that is cancelled (a stage time limit) leaves the queue. The serving
task ends after ``idle_s`` without work and starts again with the next submission.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from prometheus_client import Counter

from accelerated.aio import wait_for

I = TypeVar("I")  # noqa: E741
R = TypeVar("R")

BATCHES = Counter("ner_batches_total", "Forward passes the NER batcher ran")
BATCH_ITEMS = Counter("ner_batch_windows_total", "Windows in those forward passes")


@dataclass(eq=False)
class _Pending(Generic[I, R]):
    payload: I
    cost: int
    source: int  # which submit() call (one document's chunks)
    future: asyncio.Future[R]
    since: float


@dataclass(frozen=True)
class BatchStat:
    """One forward pass: windows, distinct callers (documents), padded and real tokens."""

    items: int
    sources: int
    padded_tokens: int
    tokens: int
    seconds: float


@dataclass
class Batcher(Generic[I, R]):
    run: Callable[[list[I]], Sequence[R]]
    token_budget: int = 16_384
    max_items: int = 64
    max_wait_s: float = 0.02
    idle_s: float = 5.0
    name: str = "ner-batch"
    history: deque[BatchStat] = field(default_factory=lambda: deque(maxlen=10_000))

    def __post_init__(self) -> None:
        self._pending: list[_Pending[I, R]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sources = itertools.count()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)

    # The callers' side ---------------------------------------------------------------
    async def submit(self, payloads: Sequence[I], costs: Sequence[int]) -> list[R]:
        """Results for ``payloads`` in order; raises the first failing one's error after
        all of them are done (the others' results are not lost for other callers)."""
        if len(payloads) != len(costs):
            raise ValueError("a cost per payload")
        if not payloads:
            return []
        loop = asyncio.get_running_loop()
        self._bind(loop)
        source, now = next(self._sources), time.monotonic()
        futures: list[asyncio.Future[R]] = []
        for payload, cost in zip(payloads, costs, strict=True):
            fut: asyncio.Future[R] = loop.create_future()
            self._pending.append(_Pending(payload, max(1, int(cost)), source, fut, now))
            futures.append(fut)
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._serve(), name=f"{self.name}-serve")
        results = await asyncio.gather(*futures, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return list(results)  # type: ignore[arg-type]

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """A batcher serves the loop it is used on; a new loop (a test's) starts afresh."""
        if self._loop is loop:
            return
        self._loop, self._task, self._pending = loop, None, []
        self._wake = asyncio.Event()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # The serving side ----------------------------------------------------------------
    def _ready(self, now: float) -> bool:
        if len(self._pending) >= self.max_items:
            return True
        if sum(p.cost for p in self._pending) >= self.token_budget:
            return True
        return now - min(p.since for p in self._pending) >= self.max_wait_s

    async def _serve(self) -> None:
        batch: list[_Pending[I, R]] = []
        try:
            await self._serve_until_idle(batch)
        except BaseException as exc:
            # Cancelled (the loop is closing) or a bug: no caller may wait for ever.
            for p in [*batch, *self._pending]:
                if not p.future.done():
                    if isinstance(exc, asyncio.CancelledError):
                        p.future.cancel()
                    else:
                        p.future.set_exception(exc)
            raise

    async def _serve_until_idle(self, batch: list[_Pending[I, R]]) -> None:
        """``batch`` holds the batch in flight (so ``_serve`` can fail its callers)."""
        loop = asyncio.get_running_loop()
        while True:
            self._pending = [p for p in self._pending if not p.future.done()]
            if not self._pending:
                self._wake.clear()
                try:
                    await wait_for(self._wake.wait(), self.idle_s)
                except TimeoutError:
                    if not self._pending:
                        self._task = None
                        return
                continue
            now = time.monotonic()
            if not self._ready(now):
                self._wake.clear()
                oldest = min(p.since for p in self._pending)
                with contextlib.suppress(TimeoutError):
                    await wait_for(self._wake.wait(), max(0.0, oldest + self.max_wait_s - now))
                continue
            batch[:] = self._cut(now)
            t0 = time.perf_counter()
            results = await loop.run_in_executor(
                self._executor, _isolated, self.run, [p.payload for p in batch]
            )
            width = max(p.cost for p in batch)
            self.history.append(
                BatchStat(
                    items=len(batch),
                    sources=len({p.source for p in batch}),
                    padded_tokens=width * len(batch),
                    tokens=sum(p.cost for p in batch),
                    seconds=time.perf_counter() - t0,
                )
            )
            BATCHES.inc()
            BATCH_ITEMS.inc(len(batch))
            for p, r in zip(batch, results, strict=True):
                if p.future.done():
                    continue  # its caller was cancelled meanwhile
                if isinstance(r, _Failed):
                    p.future.set_exception(r.error)
                else:
                    p.future.set_result(r)
            batch.clear()

    def _cut(self, now: float) -> list[_Pending[I, R]]:
        """A run of similar-length windows around the anchor, within the budget."""
        ordered = sorted(self._pending, key=lambda p: (p.cost, p.since))
        oldest = min(range(len(ordered)), key=lambda i: ordered[i].since)
        overdue = now - ordered[oldest].since >= self.max_wait_s
        anchor = oldest if overdue else len(ordered) - 1
        lo = hi = anchor  # the batch is ordered[lo : hi + 1]; its width is ordered[hi]

        def fits(count: int, width: int) -> bool:
            return count <= self.max_items and count * width <= self.token_budget

        while lo > 0 and fits(hi - lo + 2, ordered[hi].cost):
            lo -= 1  # shorter windows first: they add no padding width
        while hi + 1 < len(ordered) and fits(hi - lo + 2, ordered[hi + 1].cost):
            hi += 1
        batch = ordered[lo : hi + 1]
        taken = {id(p) for p in batch}
        self._pending = [p for p in self._pending if id(p) not in taken]
        return batch


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _isolated(run: Callable[[list[Any]], Sequence[Any]], payloads: list[Any]) -> list[Any]:
    """``run`` over the payloads; on an error, halves run again down to the one that
    fails, which gets its error (the batcher's thread)."""
    try:
        out = list(run(payloads))
        if len(out) != len(payloads):
            raise RuntimeError(f"a batch of {len(payloads)} returned {len(out)} results")
        return out
    except Exception as exc:
        if len(payloads) == 1:
            return [_Failed(exc)]
    mid = len(payloads) // 2
    return _isolated(run, payloads[:mid]) + _isolated(run, payloads[mid:])
