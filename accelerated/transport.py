"""How messages move between stages: Redis Streams, or in-process queues as a fallback.

Both transports also keep the per-document state, because a state change and the
message that causes it must move together: on Redis they share one MULTI, so a
document is never "at stage X" without a message for stage X existing somewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, ResponseError

from accelerated import state
from accelerated.errors import BackendUnavailable
from accelerated.keys import STAGES, Keys
from accelerated.models import SourceRef

PipeOps = Callable[[Pipeline], None]
_RUN_FIELDS: tuple[str, ...] = (
    state.ERROR,
    state.DONE_AT,
    *(state.attempts_field(s) for s in STAGES),
    *(state.stage_time_field(s) for s in STAGES),
)
_ref_encoder = msgspec.json.Encoder()
_ref_decoder = msgspec.json.Decoder(SourceRef)


@dataclass(frozen=True)
class Message:
    id: str
    stage: str
    ref: SourceRef


@dataclass
class Begin:
    """What a consumer learns (in one round trip) before running a stage."""

    attempts: int
    stale: bool  # the document was re-ingested since this message was sent
    input_raw: bytes | None = None  # the previous stage's output key, when asked for


class Transport(Protocol):
    async def setup(self) -> None: ...

    async def read(self, stage: str, count: int, block_ms: int) -> list[Message]: ...

    async def reclaim(self, stage: str, min_idle_ms: int, count: int) -> list[Message]: ...

    async def begin(self, msg: Message, input_key: str | None) -> Begin: ...

    async def advance(
        self,
        msg: Message,
        next_stage: str | None,
        fields: dict[str, str | float],
        terminal: tuple[str, str | None] | None = None,
        extra: PipeOps | None = None,
    ) -> None: ...

    async def retry(self, msg: Message, error: str) -> None: ...

    async def dead_letter(self, msg: Message, error: str) -> None: ...

    async def enqueue(self, refs: Sequence[SourceRef], stage: str) -> None: ...

    async def outstanding(self, project: str) -> int: ...

    async def latencies(self, refs: Sequence[SourceRef]) -> list[tuple[float, float, float]]:
        """(intake_at, done_at, compute seconds) per terminal document."""
        ...

    async def heartbeat(self) -> None: ...

    async def touch(self, stage: str, ids: Sequence[str]) -> None:
        """Renew the lease on messages still being worked on (reset their idle time)."""
        ...

    async def close(self) -> None: ...


def _now() -> str:
    return f"{time.time():.6f}"


def _redis_error(exc: Exception) -> BackendUnavailable:
    return BackendUnavailable(f"redis: {exc}")


class RedisTransport:
    """Per-stage streams with one consumer group each (XREADGROUP, XAUTOCLAIM, DLQ)."""

    HEARTBEAT_TTL_S = 10

    def __init__(self, redis: aioredis.Redis, keys: Keys, consumer: str) -> None:
        self.redis, self.keys, self.consumer = redis, keys, consumer
        self._last_dead_scan = 0.0

    async def setup(self) -> None:
        for stage in STAGES:
            try:
                await self.redis.xgroup_create(
                    self.keys.stream(stage), self.keys.group(stage), id="0", mkstream=True
                )
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise _redis_error(exc) from None
            except RedisError as exc:
                raise _redis_error(exc) from None
        await self.heartbeat()

    async def heartbeat(self) -> None:
        try:
            await self.redis.set(
                self.keys.consumer_alive(self.consumer), b"1", ex=self.HEARTBEAT_TTL_S
            )
        except RedisError as exc:
            raise _redis_error(exc) from None

    async def touch(self, stage: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        try:
            await self.redis.xclaim(
                self.keys.stream(stage),
                self.keys.group(stage),
                self.consumer,
                0,
                list(ids),
                justid=True,
            )
        except RedisError as exc:
            raise _redis_error(exc) from None

    def _messages(self, stage: str, entries: Iterable[Any]) -> list[Message]:
        out = []
        for entry_id, fields in entries:
            if not fields:  # deleted while pending: nothing to do but ack it later
                continue
            mid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            out.append(Message(mid, stage, _ref_decoder.decode(fields[b"ref"])))
        return out

    async def read(self, stage: str, count: int, block_ms: int) -> list[Message]:
        try:
            resp = await self.redis.xreadgroup(
                self.keys.group(stage),
                self.consumer,
                {self.keys.stream(stage): ">"},
                count=count,
                block=block_ms,
            )
        except RedisError as exc:
            raise _redis_error(exc) from None
        msgs: list[Message] = []
        for _stream, entries in resp or []:  # type: ignore[str-unpack]
            msgs.extend(self._messages(stage, entries))  # type: ignore[arg-type]
        return msgs

    async def reclaim(self, stage: str, min_idle_ms: int, count: int) -> list[Message]:
        """Take over messages of dead consumers at once, and of hung ones after an idle time."""
        stream, group = self.keys.stream(stage), self.keys.group(stage)
        try:
            msgs: list[Message] = []
            for info in await self.redis.xinfo_consumers(stream, group):
                name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
                if name == self.consumer or not info["pending"]:
                    continue
                if await self.redis.exists(self.keys.consumer_alive(name)):
                    continue
                pending = await self.redis.xpending_range(
                    stream, group, min="-", max="+", count=count, consumername=name
                )
                ids: list[Any] = [p["message_id"] for p in pending]
                if ids:
                    claimed = await self.redis.xclaim(stream, group, self.consumer, 0, ids)
                    msgs.extend(self._messages(stage, claimed))
                    await self._ack_deleted(stage, ids, claimed)
                if not info["pending"] or len(ids) == info["pending"]:
                    await self.redis.xgroup_delconsumer(stream, group, name)
            _next, claimed, deleted = await self.redis.xautoclaim(
                stream, group, self.consumer, min_idle_ms, "0-0", count=count
            )
            msgs.extend(self._messages(stage, claimed))
            if deleted:
                await self.redis.xack(stream, group, *deleted)
            return msgs
        except RedisError as exc:
            raise _redis_error(exc) from None

    async def _ack_deleted(self, stage: str, ids: list[Any], claimed: list[Any]) -> None:
        got = {c[0] for c in claimed if c[1]}
        gone = [i for i in ids if i not in got]
        if gone:
            await self.redis.xack(self.keys.stream(stage), self.keys.group(stage), *gone)

    async def begin(self, msg: Message, input_key: str | None) -> Begin:
        skey = self.keys.state(msg.ref.document_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hincrby(skey, state.attempts_field(msg.stage), 1)
        pipe.hget(skey, state.GENERATION)
        if input_key is not None:
            pipe.get(input_key)
        try:
            res = await pipe.execute()
        except RedisError as exc:
            raise _redis_error(exc) from None
        gen = res[1]
        stale = gen is None or int(gen) != msg.ref.generation
        return Begin(int(res[0]), stale, res[2] if input_key is not None else None)

    def _ack(self, pipe: Pipeline, msg: Message) -> None:
        stream = self.keys.stream(msg.stage)
        pipe.xack(stream, self.keys.group(msg.stage), msg.id)
        pipe.xdel(stream, msg.id)

    def _publish(self, pipe: Pipeline, stage: str, ref: SourceRef) -> None:
        pipe.xadd(self.keys.stream(stage), {b"ref": _ref_encoder.encode(ref)})

    async def advance(
        self,
        msg: Message,
        next_stage: str | None,
        fields: dict[str, str | float],
        terminal: tuple[str, str | None] | None = None,
        extra: PipeOps | None = None,
    ) -> None:
        ref = msg.ref
        pipe = self.redis.pipeline(transaction=True)
        skey = self.keys.state(ref.document_id)
        if extra is not None:
            extra(pipe)
        mapping: dict[str, str | float] = {state.UPDATED_AT: _now(), **fields}
        if terminal is not None:
            status, error = terminal
            mapping[state.STATUS] = status
            mapping[state.DONE_AT] = _now()
            if error:
                mapping[state.ERROR] = error
                pipe.hset(self.keys.failed(ref.project), str(ref.document_id), error)
            pipe.srem(self.keys.outstanding(ref.project), str(ref.document_id))
        pipe.hset(skey, mapping=mapping)  # type: ignore[arg-type]
        if next_stage is not None:
            self._publish(pipe, next_stage, ref)
        self._ack(pipe, msg)
        try:
            await pipe.execute()
        except RedisError as exc:
            raise _redis_error(exc) from None

    async def retry(self, msg: Message, error: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.keys.state(msg.ref.document_id), state.ERROR, error)
        self._publish(pipe, msg.stage, msg.ref)
        self._ack(pipe, msg)
        try:
            await pipe.execute()
        except RedisError as exc:
            raise _redis_error(exc) from None

    async def dead_letter(self, msg: Message, error: str) -> None:
        try:
            await self.redis.xadd(
                self.keys.dlq(msg.stage),
                {b"ref": _ref_encoder.encode(msg.ref), b"error": error.encode()[:4096]},
                maxlen=100_000,
                approximate=True,
            )
        except RedisError as exc:
            raise _redis_error(exc) from None

    async def enqueue(self, refs: Sequence[SourceRef], stage: str) -> None:
        for i in range(0, len(refs), 500):
            pipe = self.redis.pipeline(transaction=True)
            for ref in refs[i : i + 500]:
                skey = self.keys.state(ref.document_id)
                # Keep the stage fingerprints (they describe outputs still stored); reset
                # everything about the previous run.
                pipe.hdel(skey, *_RUN_FIELDS)
                pipe.hset(
                    skey,
                    mapping={
                        state.STATUS: state.QUEUED,
                        state.STAGE: stage,
                        state.GENERATION: ref.generation,
                        state.PROJECT: ref.project,
                        state.SOURCE: ref.source,
                        state.INTAKE_AT: _now(),
                        state.UPDATED_AT: _now(),
                    },
                )
                pipe.sadd(self.keys.outstanding(ref.project), str(ref.document_id))
                pipe.hdel(self.keys.failed(ref.project), str(ref.document_id))
                self._publish(pipe, stage, ref)
            try:
                await pipe.execute()
            except RedisError as exc:
                raise _redis_error(exc) from None

    async def outstanding(self, project: str) -> int:
        try:
            return int(await self.redis.scard(self.keys.outstanding(project)))
        except RedisError as exc:
            raise _redis_error(exc) from None

    async def latencies(self, refs: Sequence[SourceRef]) -> list[tuple[float, float, float]]:
        pipe = self.redis.pipeline(transaction=False)
        compute_fields = [state.stage_time_field(s) for s in STAGES]
        for ref in refs:
            pipe.hmget(
                self.keys.state(ref.document_id), state.INTAKE_AT, state.DONE_AT, *compute_fields
            )
        out = []
        for row in await pipe.execute():
            if row[0] is None or row[1] is None:
                continue
            out.append((float(row[0]), float(row[1]), sum(float(v) for v in row[2:] if v)))
        return out

    async def close(self) -> None:
        with contextlib.suppress(RedisError):
            await self.redis.delete(self.keys.consumer_alive(self.consumer))


class LocalTransport:
    """In-process queues: the traditional path keeps working when Redis is unreachable.

    Nothing survives the process, which is acceptable only because this path's
    every stage output is already committed in Postgres.
    """

    def __init__(self) -> None:
        self._queues: dict[str, asyncio.Queue[Message]] = {s: asyncio.Queue() for s in STAGES}
        self._state: dict[str, dict[str, Any]] = {}
        self._outstanding: dict[str, set[str]] = {}
        self._seq = 0

    async def setup(self) -> None:
        return None

    async def heartbeat(self) -> None:
        return None

    async def touch(self, stage: str, ids: Sequence[str]) -> None:
        return None

    async def close(self) -> None:
        return None

    def _put(self, stage: str, ref: SourceRef) -> None:
        self._seq += 1
        self._queues[stage].put_nowait(Message(str(self._seq), stage, ref))

    async def read(self, stage: str, count: int, block_ms: int) -> list[Message]:
        q = self._queues[stage]
        try:
            first = await asyncio.wait_for(q.get(), block_ms / 1000)
        except TimeoutError:
            return []
        out = [first]
        while len(out) < count and not q.empty():
            out.append(q.get_nowait())
        return out

    async def reclaim(self, stage: str, min_idle_ms: int, count: int) -> list[Message]:
        return []

    async def begin(self, msg: Message, input_key: str | None) -> Begin:
        st = self._state.setdefault(str(msg.ref.document_id), {})
        key = state.attempts_field(msg.stage)
        st[key] = int(st.get(key, 0)) + 1
        return Begin(st[key], st.get(state.GENERATION) != msg.ref.generation)

    async def advance(
        self,
        msg: Message,
        next_stage: str | None,
        fields: dict[str, str | float],
        terminal: tuple[str, str | None] | None = None,
        extra: PipeOps | None = None,
    ) -> None:
        if extra is not None:
            raise BackendUnavailable("the in-process transport cannot carry Redis operations")
        doc = str(msg.ref.document_id)
        st = self._state.setdefault(doc, {})
        st.update(fields)
        if terminal is not None:
            status, error = terminal
            st[state.STATUS], st[state.DONE_AT] = status, _now()
            if error:
                st[state.ERROR] = error
            self._outstanding.get(msg.ref.project, set()).discard(doc)
        if next_stage is not None:
            self._put(next_stage, msg.ref)

    async def retry(self, msg: Message, error: str) -> None:
        self._put(msg.stage, msg.ref)

    async def dead_letter(self, msg: Message, error: str) -> None:
        return None

    async def enqueue(self, refs: Sequence[SourceRef], stage: str) -> None:
        for ref in refs:
            doc = str(ref.document_id)
            self._state[doc] = {
                state.GENERATION: ref.generation,
                state.STATUS: state.QUEUED,
                state.INTAKE_AT: _now(),
            }
            self._outstanding.setdefault(ref.project, set()).add(doc)
            self._put(stage, ref)

    async def outstanding(self, project: str) -> int:
        return len(self._outstanding.get(project, ()))

    async def latencies(self, refs: Sequence[SourceRef]) -> list[tuple[float, float, float]]:
        out = []
        for ref in refs:
            st = self._state.get(str(ref.document_id), {})
            if state.DONE_AT in st:
                compute = sum(float(st.get(state.stage_time_field(s), 0.0)) for s in STAGES)
                out.append((float(st[state.INTAKE_AT]), float(st[state.DONE_AT]), compute))
        return out
