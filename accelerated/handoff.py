"""The only thing the two paths do differently: how a stage gets its input and keeps its output.

Accelerated: input is the previous stage's Redis key; output goes to Redis and, at
the end, one persistence intent per document goes to the write-behind stream, all in
the same MULTI that moves the message on. Traditional: input is read back from
Postgres and output is written to Postgres synchronously before the message moves.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Final, Protocol

from accelerated import pipeline, state
from accelerated.boundary import map_driver_errors
from accelerated.cluster import RedisClient
from accelerated.codec import Codec
from accelerated.errors import BackendUnavailable, CodecError, PipelineError
from accelerated.keys import Keys
from accelerated.logs import doc_log, document_finished, elapsed_since
from accelerated.models import Extracted, SourceRef
from accelerated.pipeline import OUTPUT_KEYS, OUTPUT_TYPES
from accelerated.settings import Settings
from accelerated.transport import Message, Transport, Writes
from persistence.intents import ID_FIELD, Intent, IntentMemo, intent_entry, intent_for_document
from persistence.traditional import TraditionalStore


class MissingInput(PipelineError):
    """The previous stage's output is gone (expired or evicted): restart from extract."""


# What the last commit of a document reads back to assemble its intent.
_ASSEMBLED: Final = ("ocr", "clean", "chunks", "canonical")
# Output keys whose content is read again: a stage's input (the next stage, or a later
# ``--reprocess --from`` that stage) or the intent's assembly. The rest (relate's) is
# only checked for existence, by reprocess planning, and its rows go onto the
# write-behind stream in the same script call: for those a document's last commit
# stores a marker instead of encoding the output a second time.
CONTENT_READ: Final = frozenset(
    {s.input_key for s in pipeline.PIPELINE if s.input_key} | {*_ASSEMBLED, "structured"}
)


def input_key(stage: str) -> str | None:
    """The output key the stage reads (from the stage registry); None: the SourceRef."""
    return pipeline.stage(stage).input_key


Step = tuple[str, Any]  # (stage name, its output)


class Handoff(Protocol):
    name: str
    # Whether a consumer must check for re-ingestion before running a stage: yes where
    # the stage's writes are not atomic with the transport's advance.
    check_stale_first: bool
    # Whether the engine may run the next stage in the same task and commit the outputs
    # of both in one advance (accelerated: the outputs go into Redis together, before the
    # message moves on; traditional: every stage's rows go to Postgres as it ends).
    inline: bool

    def input_key(self, stage: str, ref: SourceRef) -> str | None: ...

    async def load(self, stage: str, ref: SourceRef, raw: bytes | None) -> Any: ...

    async def commit(
        self,
        msg: Message,
        steps: Sequence[Step],
        next_stage: str | None,
        final_status: str | None,
        fields: dict[str, str | float],
        retries: int = 0,
    ) -> bool:
        """Store the outputs of ``steps`` (the message's stage, then the stages run
        inline after it, in order) and move the document on (``retries``: attempts at
        ``next_stage`` made already); False if it went stale."""
        ...

    async def fail(self, msg: Message, error: str, status: str = state.FAILED) -> None:
        """End the document in ``status`` (failed, or budget_exhausted) with ``error``."""
        ...


class AcceleratedHandoff:
    name = "accelerated"
    check_stale_first = False  # the advance script checks, atomically with the writes
    inline = True

    def __init__(
        self,
        redis: RedisClient,
        transport: Transport,
        keys: Keys,
        codec: Codec,
        settings: Settings,
        intents: IntentMemo | None = None,
    ) -> None:
        self.redis, self.transport, self.keys, self.codec = redis, transport, keys, codec
        self.intents = intents  # shared with a write-behind writer in this process
        self.ttl = settings.ttl_stage_s
        # Outputs this process just committed, so that when it also runs the next stage
        # it skips the GET and the decode. Redis keeps the durable copy; a miss reads it.
        # New entries are refused while the budget is spent (the documents already in it
        # are the ones furthest along); entries of documents that never came back expire.
        self._recent: OrderedDict[tuple[uuid.UUID, str, int], tuple[Any, int, float]] = (
            OrderedDict()
        )
        self._recent_bytes = 0
        self._budget = settings.handoff_memo_bytes
        self._max_age = settings.handoff_memo_s
        # Whether documents go through ``structure``: its fields go into the documents row.
        self._structured = pipeline.stage("structure").enabled(settings)
        self.memo_hits = 0
        self.memo_misses = 0
        self._marker = codec.encode(None)

    def _remember(self, ref: SourceRef, stage: str, output: Any, cost: int) -> None:
        now = time.monotonic()
        while self._recent:
            key, (_out, size, at) = next(iter(self._recent.items()))
            if now - at < self._max_age:
                break
            del self._recent[key]
            self._recent_bytes -= size
        if self._recent_bytes + cost > self._budget:
            return
        self._recent[(ref.document_id, stage, ref.generation)] = (output, cost, now)
        self._recent_bytes += cost

    def _recalled(self, ref: SourceRef, stage: str) -> Any | None:
        hit = self._recent.get((ref.document_id, stage, ref.generation))
        return None if hit is None else hit[0]

    def _drop(self, ref: SourceRef, stage: str) -> None:
        hit = self._recent.pop((ref.document_id, stage, ref.generation), None)
        if hit is not None:
            self._recent_bytes -= hit[1]

    def _forget(self, ref: SourceRef) -> None:
        for key in OUTPUT_KEYS:
            self._drop(ref, key)

    def input_key(self, stage: str, ref: SourceRef) -> str | None:
        prev = input_key(stage)
        if prev is None:
            return None
        if self._recalled(ref, prev) is not None:
            self.memo_hits += 1
            return None
        self.memo_misses += 1
        return self.keys.output(ref.document_id, prev)

    async def load(self, stage: str, ref: SourceRef, raw: bytes | None) -> Any:
        prev = input_key(stage)
        if prev is None:
            return ref
        if raw is None:
            recalled = self._recalled(ref, prev)
            if recalled is not None:
                return recalled
            (value,) = await self._outputs(ref, (prev,))
            return value
        try:
            return self.codec.decode(raw, OUTPUT_TYPES[prev])
        except CodecError as exc:
            raise MissingInput(f"output of {prev} is unreadable: {exc}") from None

    async def _outputs(
        self, ref: SourceRef, stages: tuple[str, ...], have: dict[str, Any] | None = None
    ) -> list[Any]:
        """Outputs by key name (``have`` first: the outputs of this call, not yet in
        Redis; then the memo; one MGET for the rest)."""
        have = have or {}
        out: list[Any] = [have[s] if s in have else self._recalled(ref, s) for s in stages]
        missing = [s for s, v in zip(stages, out, strict=True) if v is None]
        if not missing:
            return out
        with map_driver_errors():
            raws = await self.redis.mget([self.keys.output(ref.document_id, s) for s in missing])
        fetched = dict(zip(missing, raws, strict=True))
        for i, s in enumerate(stages):
            if out[i] is not None:
                continue
            raw = fetched[s]
            if raw is None:
                raise MissingInput(f"output of {s} is missing for {ref.document_id}")
            try:
                out[i] = self.codec.decode(raw, OUTPUT_TYPES[s])  # type: ignore[arg-type]
            except CodecError as exc:
                raise MissingInput(f"output of {s} is unreadable: {exc}") from None
        return out

    async def commit(
        self,
        msg: Message,
        steps: Sequence[Step],
        next_stage: str | None,
        final_status: str | None,
        fields: dict[str, str | float],
        retries: int = 0,
    ) -> bool:
        ref = msg.ref
        outputs: dict[str, Any] = {}  # output key -> output (a later stage's replaces)
        for name, output in steps:
            outputs[pipeline.stage(name).output_key] = output
        stored: list[tuple[str, bytes]] = []
        for out_key, output in outputs.items():
            if final_status is not None and out_key not in CONTENT_READ:
                value = self._marker  # its rows are in the intent; nobody decodes it
            else:
                value = self.codec.encode(output)
            stored.append((self.keys.output(ref.document_id, out_key), value))
            if final_status is None:
                # Remembered before the message moves on: the next stage's consumer in
                # this process may receive it before this coroutine resumes.
                self._remember(ref, out_key, output, len(value))
        writes = Writes(tuple(stored), self.ttl)
        if final_status is None:
            moved = False
            try:
                moved = await self.transport.advance(msg, next_stage, fields, None, writes, retries)
            finally:
                if not moved:  # stale, or failed: nobody takes them from memory
                    for out_key in outputs:
                        self._drop(ref, out_key)
            return moved
        output = steps[-1][1]
        if isinstance(output, Extracted):  # finished before clean (needs OCR)
            intent = intent_for_document(ref, output, None, None, None, final_status, None)
        else:
            names = _ASSEMBLED
            got = await self._outputs(
                ref, (*names, "structured") if self._structured else names, outputs
            )
            extracted, cleaned, chunked, resolved = got[:4]
            intent = intent_for_document(
                ref,
                extracted,
                cleaned,
                resolved,
                output,
                final_status,
                None,
                chunked=chunked,
                structured=got[4] if self._structured else None,
            )
        fields = {**fields, state.STATUS: state.PERSISTING}
        return await self._finish(msg, fields, replace(writes, intent=self._entry(intent)))

    async def fail(self, msg: Message, error: str, status: str = state.FAILED) -> None:
        intent = intent_for_document(msg.ref, None, None, None, None, status, error)
        fields: dict[str, str | float] = {state.STATUS: state.PERSISTING, state.ERROR: error}
        await self._finish(msg, fields, Writes(intent=self._entry(intent)))

    def _entry(self, intent: Intent) -> dict[bytes, bytes]:
        return intent_entry(self.codec, intent, self.intents)

    async def _finish(self, msg: Message, fields: dict[str, str | float], writes: Writes) -> bool:
        """Last advance of a document: its intent goes onto the write-behind stream."""
        try:
            moved = await self.transport.advance(msg, None, fields, None, writes)
        finally:
            self._forget(msg.ref)
        if not moved and self.intents is not None and writes.intent is not None:
            self.intents.discard(writes.intent[ID_FIELD])  # never queued: do not keep it
        return moved


class TraditionalHandoff:
    """Database-centric: every stage reads from and writes to Postgres, synchronously."""

    name = "traditional"
    check_stale_first = True  # its Postgres writes happen before the advance
    inline = False  # each stage's rows are written as it ends, as the old pipeline did

    def __init__(self, store: TraditionalStore, transport: Transport) -> None:
        self.store, self.transport = store, transport

    def input_key(self, stage: str, ref: SourceRef) -> str | None:
        return None

    async def load(self, stage: str, ref: SourceRef, raw: bytes | None) -> Any:
        if input_key(stage) is None:
            return ref
        return await self.store.read_input(stage, ref)

    async def commit(
        self,
        msg: Message,
        steps: Sequence[Step],
        next_stage: str | None,
        final_status: str | None,
        fields: dict[str, str | float],
        retries: int = 0,
    ) -> bool:
        for name, output in steps:
            await self.store.write_output(name, msg.ref, output)
        terminal = None
        if final_status is not None:
            if final_status != state.DONE:
                await self.store.mark_status(msg.ref, final_status, None)
            terminal = (final_status, None)
        moved = await self.transport.advance(msg, next_stage, fields, terminal, None, retries)
        if moved and final_status is not None:
            await self._finished(msg, final_status, None)
        return moved

    async def fail(self, msg: Message, error: str, status: str = state.FAILED) -> None:
        await self.store.mark_status(msg.ref, status, error)
        # Only a failure goes into the project's failed hash (the transport records the
        # terminal error there); another terminal status keeps its reason in the state.
        terminal = (status, error if status == state.FAILED else None)
        if await self.transport.advance(msg, None, {state.ERROR: error}, terminal):
            await self._finished(msg, status, error)

    async def _finished(self, msg: Message, status: str, error: str | None) -> None:
        """The document's line (its rows are in Postgres already on this path); the
        intake time costs a read only when the line is shown."""
        if not doc_log.isEnabledFor(logging.INFO):
            return
        try:
            intake_at = await self.transport.intake_at(msg.ref)
        except BackendUnavailable:  # the document has moved on: never retry it for a log line
            intake_at = None
        document_finished(
            document_id=msg.ref.document_id,
            project=msg.ref.project,
            source=msg.ref.source,
            status=status,
            stage=msg.stage,
            error=error,
            elapsed_ms=elapsed_since(intake_at, time.time()),
        )
