"""The cross-document batcher on its own (no model): pooling, routing, isolation.

The ``run`` function stands for a model's forward pass: deterministic per payload, so
a result delivered to the wrong caller or in the wrong order shows. The real model
goes through the same batcher in tests/test_ner_transformers.py.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from accelerated.aio import wait_for
from accelerated.ner.batcher import Batcher

TIMEOUT_S = 30.0


def _forward(batch: list[tuple[int, ...]]) -> list[int]:
    """A pure function of each payload (as a forward pass is of each window)."""
    if any(p and p[0] == -1 for p in batch):
        raise RuntimeError("poisoned window in this batch")
    return [sum(p) * 31 + len(p) for p in batch]


def _doc(d: int) -> list[tuple[int, ...]]:
    """Document ``d``: three windows of different lengths."""
    return [tuple(range(d, d + 5 + 7 * k)) for k in range(3)]


async def _submit(b: Batcher[tuple[int, ...], int], payloads: list[tuple[int, ...]]) -> list[int]:
    return await b.submit(payloads, [len(p) for p in payloads])


async def test_fifty_documents_in_flight_share_batches_and_get_their_own_results() -> None:
    b: Batcher[tuple[int, ...], int] = Batcher(
        _forward, token_budget=2_000, max_items=64, max_wait_s=0.05
    )
    try:
        together = await wait_for(
            asyncio.gather(*(_submit(b, _doc(d)) for d in range(50))), TIMEOUT_S
        )
        stats = list(b.history)
        # 150 windows, all queued within one wait: a handful of passes, each of many
        # documents, instead of one pass per document.
        assert sum(s.items for s in stats) == 150
        assert len(stats) < 15, stats
        assert max(s.sources for s in stats) >= 20, stats
        assert all(s.padded_tokens <= 2_000 or s.items == 1 for s in stats)
        alone = [await wait_for(_submit(b, _doc(d)), TIMEOUT_S) for d in range(50)]
        assert together == alone
        assert together[7] == _forward(_doc(7))
    finally:
        b.close()


async def test_a_failing_window_fails_only_its_document() -> None:
    b: Batcher[tuple[int, ...], int] = Batcher(
        _forward, token_budget=10_000, max_items=64, max_wait_s=0.05
    )
    try:
        docs = [_doc(d) for d in range(12)]
        docs[5] = [*docs[5][:2], (-1, 2, 3)]  # one poisoned window in document 5
        results = await wait_for(
            asyncio.gather(*(_submit(b, doc) for doc in docs), return_exceptions=True),
            TIMEOUT_S,
        )
        assert isinstance(results[5], RuntimeError)
        for d, r in enumerate(results):
            if d != 5:
                assert r == _forward(docs[d]), d
        # All twelve went into the first pass together; it was split to isolate the
        # poisoned window, and every other window was still answered.
        assert next(iter(b.history)).sources > 1 or len(b.history) > 1
    finally:
        b.close()


async def test_batches_hold_windows_of_similar_length() -> None:
    b: Batcher[tuple[int, ...], int] = Batcher(
        _forward, token_budget=400, max_items=64, max_wait_s=0.05
    )
    try:
        short = [tuple(range(10))] * 20
        long = [tuple(range(190))] * 4
        await wait_for(asyncio.gather(_submit(b, short), _submit(b, long)), TIMEOUT_S)
        stats = list(b.history)
        # Sorted by length: the long windows pad only each other (2 per 400 tokens);
        # the short ones fill their own passes.
        assert sum(s.items for s in stats) == 24
        assert all(s.tokens / s.padded_tokens > 0.9 for s in stats), stats
    finally:
        b.close()


async def test_a_partial_batch_waits_at_most_the_max_wait_and_a_cancelled_caller_leaves() -> None:
    gate = threading.Event()

    def slow(batch: list[tuple[int, ...]]) -> list[int]:
        gate.wait(10)
        return _forward(batch)

    b: Batcher[tuple[int, ...], int] = Batcher(
        slow, token_budget=10_000, max_items=64, max_wait_s=0.01
    )
    try:
        first = asyncio.create_task(_submit(b, _doc(1)))  # runs alone after 10 ms
        await asyncio.sleep(0.2)
        assert len(b._pending) == 0  # taken although the budget was far from full
        queued = asyncio.create_task(_submit(b, _doc(2)))
        cancelled = asyncio.create_task(_submit(b, _doc(3)))
        await asyncio.sleep(0.05)
        cancelled.cancel()
        gate.set()
        assert await wait_for(first, TIMEOUT_S) == _forward(_doc(1))
        assert await wait_for(queued, TIMEOUT_S) == _forward(_doc(2))
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert sum(s.items for s in b.history) == 6  # document 3 never ran
    finally:
        gate.set()
        b.close()
