"""How messages move between stages: Redis Streams, or in-process queues as a fallback.

Both transports also keep the per-document state, because a state change and the
message that causes it must move together: on Redis they share one MULTI, so a
document is never "at stage X" without a message for stage X existing somewhere.

On Redis each stage's stream is split into ``keys.shards`` shards, and a document's
messages always go to its own shard's streams (``Keys.shard``). Every MULTI and
script here then touches the keys of one shard, one cluster slot (see
``accelerated/keys.py``): an advance, a retry, one shard's part of an enqueue. The
operations that span shards (setup, outstanding counts) are one command per shard.
Readers name the shard they read (the engine runs one per stage per shard): a
stream read across slots is refused by a cluster. With one shard (a single Redis's
default) every call is the one it was before shards existed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import msgspec
from redis.exceptions import RedisError
from redis.utils import str_if_bytes

from accelerated import shards, state
from accelerated.aio import wait_for
from accelerated.boundary import map_driver_errors
from accelerated.cluster import AnyPipeline, RedisClient
from accelerated.errors import BackendUnavailable, ConfigError
from accelerated.keys import STAGES, Keys
from accelerated.models import SourceRef
from accelerated.parking import PARK_LUA, Parked, waiter_field
from accelerated.script_batch import ScriptBatch

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
    # Deliveries of this document to this stage so far, this one included: the retries
    # carried in the entry plus the stream's own delivery count (a consumer that died
    # mid-stage leaves it pending; the claim counts as a delivery).
    attempts: int = 1
    shard: int = 0  # the stream shard it was read from (message ids are per stream)


@dataclass(frozen=True)
class Writes:
    """What an advance stores besides state: the outputs of the stages run since the
    message was read (one, or several when the engine ran the next stages inline), as
    (key, value) pairs, and, at the end, the document's persistence intent (the
    write-behind stream entry)."""

    outputs: tuple[tuple[str, bytes], ...] = ()
    ttl_s: int = 0
    intent: dict[bytes, bytes] | None = None


@dataclass
class Begin:
    """What a consumer learns (in one round trip) before running a stage."""

    attempts: int
    stale: bool  # the document was re-ingested since this message was sent
    input_raw: bytes | None = None  # the previous stage's output key, when asked for


class Transport(Protocol):
    shards: int  # stream shards per stage: a reader per stage per shard

    async def setup(self) -> None: ...

    async def read(
        self, stage: str, count: int, block_ms: int, shard: int = 0
    ) -> list[Message]: ...

    async def reclaim(
        self, stage: str, min_idle_ms: int, count: int, shard: int = 0
    ) -> list[Message]: ...

    async def begin(self, msg: Message, input_key: str | None, check_stale: bool) -> Begin:
        """What the consumer needs before running the stage. ``check_stale`` asks now
        whether the document was re-ingested; without it only ``advance`` checks (and
        then atomically, so nothing of a stale run is ever stored)."""
        ...

    async def advance(
        self,
        msg: Message,
        next_stage: str | None,
        fields: dict[str, str | float],
        terminal: tuple[str, str | None] | None = None,
        writes: Writes | None = None,
        retries: int = 0,
    ) -> bool:
        """Ack the message, store ``writes`` and the state, publish the next stage's
        message (carrying ``retries``: attempts at that stage made already): all or
        nothing. False when the document was re-ingested meanwhile (then only the ack
        happens)."""
        ...

    async def retry(self, msg: Message, error: str) -> None: ...

    async def park(self, msg: Message, parked: Parked) -> int:
        """Ack the message and file its document in ``parked.room`` until woken, or,
        when the room's work is over already, send it back to its stage (see
        ``accelerated/parking.py``): 1 parked, 2 sent back, 0 not pending any more."""
        ...

    async def dead_letter(self, msg: Message, error: str) -> None: ...

    async def enqueue(self, refs: Sequence[SourceRef], stage: str) -> None: ...

    async def outstanding(self, project: str) -> int: ...

    async def latencies(self, refs: Sequence[SourceRef]) -> list[tuple[float, float, float]]:
        """(intake_at, done_at, compute seconds) per terminal document."""
        ...

    async def intake_at(self, ref: SourceRef) -> str | None:
        """The document's ``intake_at`` (epoch seconds), for its finished line."""
        ...

    async def stage_backlog(self, stages: Sequence[str]) -> dict[str, int]:
        """Per stage: messages queued at it or in work there (all projects)."""
        ...

    async def failed_ids(self, project: str) -> set[str]:
        """The project's documents that ended failed (and were not queued since)."""
        ...

    async def heartbeat(self) -> None: ...

    async def touch(self, stage: str, ids: Sequence[str], shard: int = 0) -> None:
        """Renew the lease on messages still being worked on (reset their idle time)."""
        ...

    async def close(self) -> None: ...


_ATTEMPTS: Final = b"n"  # stream entry field: attempts made before this entry (retries)

# One script per stage transition instead of a MULTI of six to eight commands: one
# command for the client to pack and parse, and the re-ingestion check is atomic with
# the writes it guards.
ADVANCE_LUA: Final = f"""
-- All keys of the document's shard (one cluster slot):
-- KEYS[1] state hash, KEYS[2] this stage's stream, KEYS[3] next stage's stream,
-- KEYS[4] write-behind stream, KEYS[5] project outstanding set, KEYS[6] project failed
-- hash, KEYS[7 ..] output keys (m of them: #KEYS - 6)
-- ARGV[1] group, ARGV[2] message id, ARGV[3] generation, ARGV[4] next message ref
-- ('' = none), ARGV[5] its attempts made already ('0': none), ARGV[6] output ttl (s),
-- ARGV[7] terminal ('' = no), ARGV[8] document id, ARGV[9] error ('' = none),
-- ARGV[10] count of intent field/value items n, ARGV[11 .. 10+n] intent entry,
-- ARGV[11+n .. 10+n+m] output values (for KEYS[7 ..]), ARGV[11+n+m ..] state
-- field/values
local state, stream, next_stream = KEYS[1], KEYS[2], KEYS[3]
local wb, outstanding, failed = KEYS[4], KEYS[5], KEYS[6]
local group, id, generation, next_ref, retries = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local ttl, terminal, doc, err = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local n = tonumber(ARGV[10])
local m = #KEYS - 6
-- Not pending any more: this message was advanced already (a reply lost to a dropped
-- connection, then the same attempt again; or another consumer took it over).
if redis.call('XACK', stream, group, id) == 0 then return 0 end
redis.call('XDEL', stream, id)
if redis.call('HGET', state, '{state.GENERATION}') ~= generation then return 0 end
for i = 1, m do redis.call('SET', KEYS[6 + i], ARGV[10 + n + i], 'EX', ttl) end
if n > 0 then redis.call('XADD', wb, '*', unpack(ARGV, 11, 10 + n)) end
if terminal ~= '' then
  if err ~= '' then redis.call('HSET', failed, doc, err) end
  redis.call('SREM', outstanding, doc)
end
redis.call('HSET', state, unpack(ARGV, 11 + n + m))
if next_ref == '' then return 1 end
if retries == '0' then
  redis.call('XADD', next_stream, '*', 'ref', next_ref)
else
  redis.call('XADD', next_stream, '*', 'ref', next_ref, '{_ATTEMPTS.decode()}', retries)
end
return 1
"""


def _now() -> str:
    return f"{time.time():.6f}"


_NO_WRITES: Final = Writes()


class RedisTransport:
    """Per-stage streams with one consumer group each (XREADGROUP, XAUTOCLAIM, DLQ)."""

    HEARTBEAT_TTL_S = 10

    def __init__(
        self, redis: RedisClient, keys: Keys, consumer: str, ttl_stage_s: int = 7 * 24 * 3600
    ) -> None:
        self.redis, self.keys, self.consumer = redis, keys, consumer
        self.shards = keys.shards
        self.ttl_stage_s = ttl_stage_s
        # Advances of documents in flight share round trips (accelerated/script_batch.py).
        self._advance = ScriptBatch(redis, ADVANCE_LUA)
        self._park = redis.register_script(PARK_LUA)

    async def setup(self) -> None:
        """Record the shard layout, create every stage's stream and group of every shard
        (again, after Redis lost them)."""
        await shards.record(self.redis, self.keys)
        with map_driver_errors():
            pipe = self.redis.pipeline(transaction=False)
            for stage in STAGES:
                for stream in self.keys.streams(stage):
                    pipe.xgroup_create(stream, self.keys.group(stage), id="0", mkstream=True)
            for res in await pipe.execute(raise_on_error=False):
                if isinstance(res, Exception) and "BUSYGROUP" not in str(res):
                    raise res
        await self.heartbeat()

    async def heartbeat(self) -> None:
        with map_driver_errors():
            await self.redis.set(
                self.keys.consumer_alive(self.consumer), b"1", ex=self.HEARTBEAT_TTL_S
            )

    async def touch(self, stage: str, ids: Sequence[str], shard: int = 0) -> None:
        if not ids:
            return
        with map_driver_errors():
            await self.redis.xclaim(
                self.keys.stream(stage, shard),
                self.keys.group(stage),
                self.consumer,
                0,
                list(ids),
                justid=True,
            )

    def _messages(
        self,
        stage: str,
        shard: int,
        entries: Iterable[Any],
        deliveries: dict[str, int] | None = None,
    ) -> list[Message]:
        out = []
        for entry_id, fields in entries:
            if not fields:  # deleted while pending: nothing to do but ack it later
                continue
            mid = str_if_bytes(entry_id)
            before = int(fields.get(_ATTEMPTS, 0))
            delivered = deliveries.get(mid, 1) if deliveries is not None else 1
            ref = _ref_decoder.decode(fields[b"ref"])
            out.append(Message(mid, stage, ref, before + delivered, shard))
        return out

    async def _deliveries(self, stage: str, shard: int, entries: list[Any]) -> dict[str, int]:
        """The stream's delivery counts of entries just claimed (now pending to us)."""
        ids = [str_if_bytes(e[0]) for e in entries if e[1]]
        if not ids:
            return {}
        stream, group = self.keys.stream(stage, shard), self.keys.group(stage)
        pipe = self.redis.pipeline(transaction=False)
        for mid in ids:
            pipe.xpending_range(stream, group, min=mid, max=mid, count=1)
        out = {}
        for pending in await pipe.execute():
            for p in pending:
                out[str_if_bytes(p["message_id"])] = int(p["times_delivered"])
        return out

    async def read(self, stage: str, count: int, block_ms: int, shard: int = 0) -> list[Message]:
        with map_driver_errors():
            resp = await self.redis.xreadgroup(
                self.keys.group(stage),
                self.consumer,
                {self.keys.stream(stage, shard): ">"},
                count=count,
                block=block_ms,
            )
        msgs: list[Message] = []
        for _stream, entries in resp or []:  # type: ignore[str-unpack]
            msgs.extend(self._messages(stage, shard, entries))  # type: ignore[arg-type]
        return msgs

    async def reclaim(
        self, stage: str, min_idle_ms: int, count: int, shard: int = 0
    ) -> list[Message]:
        """Take over messages of dead consumers at once, and of hung ones after an idle time."""
        stream, group = self.keys.stream(stage, shard), self.keys.group(stage)
        with map_driver_errors():
            msgs: list[Message] = []
            for info in await self.redis.xinfo_consumers(stream, group):
                name = str_if_bytes(info["name"])
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
                    counts = await self._deliveries(stage, shard, claimed)
                    msgs.extend(self._messages(stage, shard, claimed, counts))
                    await self._ack_deleted(stream, group, ids, claimed)
                if not info["pending"] or len(ids) == info["pending"]:
                    await self.redis.xgroup_delconsumer(stream, group, name)
            _next, claimed, deleted = await self.redis.xautoclaim(
                stream, group, self.consumer, min_idle_ms, "0-0", count=count
            )
            counts = await self._deliveries(stage, shard, claimed)
            msgs.extend(self._messages(stage, shard, claimed, counts))
            if deleted:
                await self.redis.xack(stream, group, *deleted)
            return msgs

    async def _ack_deleted(
        self, stream: str, group: str, ids: list[Any], claimed: list[Any]
    ) -> None:
        got = {c[0] for c in claimed if c[1]}
        gone = [i for i in ids if i not in got]
        if gone:
            await self.redis.xack(stream, group, *gone)

    async def begin(self, msg: Message, input_key: str | None, check_stale: bool) -> Begin:
        if input_key is None and not check_stale:
            return Begin(msg.attempts, False)  # nothing to ask Redis
        pipe = self.redis.pipeline(transaction=False)
        if check_stale:
            pipe.hget(self.keys.state(msg.ref.document_id), state.GENERATION)
        if input_key is not None:
            pipe.get(input_key)
        with map_driver_errors():
            res = await pipe.execute()
        stale = False
        if check_stale:
            gen = res.pop(0)
            stale = gen is None or int(gen) != msg.ref.generation
        return Begin(msg.attempts, stale, res[0] if input_key is not None else None)

    def _ack(self, pipe: AnyPipeline, msg: Message) -> None:
        stream = self.keys.stream(msg.stage, msg.shard)
        pipe.xack(stream, self.keys.group(msg.stage), msg.id)
        pipe.xdel(stream, msg.id)

    def _publish(self, pipe: AnyPipeline, stage: str, ref: SourceRef, attempts: int = 0) -> None:
        fields = {b"ref": _ref_encoder.encode(ref)}
        if attempts:
            fields[_ATTEMPTS] = str(attempts).encode()
        shard = self.keys.shard(ref.document_id)
        pipe.xadd(self.keys.stream(stage, shard), fields)  # type: ignore[arg-type]

    async def advance(
        self,
        msg: Message,
        next_stage: str | None,
        fields: dict[str, str | float],
        terminal: tuple[str, str | None] | None = None,
        writes: Writes | None = None,
        retries: int = 0,
    ) -> bool:
        ref = msg.ref
        mapping: dict[str, str | float] = {state.UPDATED_AT: _now(), **fields}
        error = ""
        if terminal is not None:
            status, err = terminal
            mapping[state.STATUS] = status
            mapping[state.DONE_AT] = _now()
            if err:
                mapping[state.ERROR] = error = err
        w = writes or _NO_WRITES
        intent: list[bytes] = [x for kv in (w.intent or {}).items() for x in kv]
        args: list[Any] = [
            self.keys.group(msg.stage),
            msg.id,
            ref.generation,
            _ref_encoder.encode(ref) if next_stage is not None else b"",
            retries,
            w.ttl_s,
            b"1" if terminal is not None else b"",
            str(ref.document_id),
            error,
            len(intent),
            *intent,
            *(value for _key, value in w.outputs),
        ]
        for k, v in mapping.items():
            args += (k, v)
        shard = self.keys.shard(ref.document_id)
        keys = [
            self.keys.state(ref.document_id),
            self.keys.stream(msg.stage, msg.shard),
            self.keys.stream(next_stage or msg.stage, shard),
            self.keys.wb_stream(shard),
            self.keys.outstanding(ref.project, shard),
            self.keys.failed(ref.project, shard),
            *(key for key, _value in w.outputs),
        ]
        with map_driver_errors():
            return bool(await self._advance(keys, args))

    async def retry(self, msg: Message, error: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.keys.state(msg.ref.document_id), state.ERROR, error)
        self._publish(pipe, msg.stage, msg.ref, msg.attempts)
        self._ack(pipe, msg)
        with map_driver_errors():
            await pipe.execute()

    async def park(self, msg: Message, parked: Parked) -> int:
        args: list[str | bytes | int] = [
            self.keys.group(msg.stage),
            msg.id,
            waiter_field(msg.ref),
            _ref_encoder.encode(msg.ref),
            parked.ticket,
            parked.ttl_s,
        ]
        # The room is a key of the document's shard, as the stream is: one slot.
        keys = [self.keys.stream(msg.stage, msg.shard), parked.room]
        with map_driver_errors():
            return int(await self._park(keys=keys, args=args))

    async def dead_letter(self, msg: Message, error: str) -> None:
        with map_driver_errors():
            await self.redis.xadd(
                self.keys.dlq(msg.stage),
                {
                    b"ref": _ref_encoder.encode(msg.ref),
                    b"error": error.encode()[:4096],
                    b"attempts": str(msg.attempts).encode(),  # shown by `dlq show`
                },
                maxlen=100_000,
                approximate=True,
            )

    async def enqueue(self, refs: Sequence[SourceRef], stage: str) -> None:
        """Queue ``refs`` at ``stage``: one MULTI per shard per 500 documents."""
        by_shard: dict[int, list[SourceRef]] = {}
        for ref in refs:
            by_shard.setdefault(self.keys.shard(ref.document_id), []).append(ref)
        for shard, group in sorted(by_shard.items()):
            for i in range(0, len(group), 500):
                await self._enqueue(group[i : i + 500], stage, shard)

    async def _enqueue(self, refs: Sequence[SourceRef], stage: str, shard: int) -> None:
        pipe = self.redis.pipeline(transaction=True)
        for ref in refs:
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
            # A finished document's keys were given a short TTL: queued again, they
            # must live until this run is done.
            pipe.persist(skey)
            for key in self.keys.outputs(ref.document_id):
                pipe.expire(key, self.ttl_stage_s)
            pipe.sadd(self.keys.outstanding(ref.project, shard), str(ref.document_id))
            pipe.hdel(self.keys.failed(ref.project, shard), str(ref.document_id))
            self._publish(pipe, stage, ref)
        with map_driver_errors():
            await pipe.execute()

    async def outstanding(self, project: str) -> int:
        """Documents of ``project`` not yet terminal, summed over the shards."""
        with map_driver_errors():
            if self.shards == 1:
                return int(await self.redis.scard(self.keys.outstanding(project, 0)))
            pipe = self.redis.pipeline(transaction=False)
            for key in self.keys.outstanding_all(project):
                pipe.scard(key)
            return sum(int(n) for n in await pipe.execute())

    async def outstanding_ids(self, project: str) -> set[str]:
        """The ids behind :meth:`outstanding` (the union over shards)."""
        with map_driver_errors():
            if self.shards == 1:
                members = await self.redis.smembers(self.keys.outstanding(project, 0))
                return {str_if_bytes(m) for m in members}
            pipe = self.redis.pipeline(transaction=False)
            for key in self.keys.outstanding_all(project):
                pipe.smembers(key)
            return {str_if_bytes(m) for members in await pipe.execute() for m in members}

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

    async def intake_at(self, ref: SourceRef) -> str | None:
        with map_driver_errors():
            value = await self.redis.hget(self.keys.state(ref.document_id), state.INTAKE_AT)
        return None if value is None else str_if_bytes(value)

    async def stage_backlog(self, stages: Sequence[str]) -> dict[str, int]:
        """XLEN of each stage's streams, summed over the shards: acked entries are
        deleted, so this is what waits at the stage plus what is in work there. One
        pipeline (a command per stream)."""
        pipe = self.redis.pipeline(transaction=False)
        for stage in stages:
            for stream in self.keys.streams(stage):
                pipe.xlen(stream)
        with map_driver_errors():
            lengths = iter(await pipe.execute())
        return {stage: sum(int(next(lengths)) for _ in range(self.shards)) for stage in stages}

    async def failed_count(self, project: str) -> int:
        """Entries of the project's failed hashes (HLEN per shard)."""
        pipe = self.redis.pipeline(transaction=False)
        for n in range(self.shards):
            pipe.hlen(self.keys.failed(project, n))
        with map_driver_errors():
            return sum(int(x) for x in await pipe.execute())

    async def failed_ids(self, project: str) -> set[str]:
        pipe = self.redis.pipeline(transaction=False)
        for n in range(self.shards):
            pipe.hkeys(self.keys.failed(project, n))
        with map_driver_errors():
            return {str_if_bytes(k) for keys in await pipe.execute() for k in keys}

    async def close(self) -> None:
        with contextlib.suppress(RedisError):
            await self.redis.delete(self.keys.consumer_alive(self.consumer))


class LocalTransport:
    """In-process queues: the traditional path keeps working when Redis is unreachable.

    Nothing survives the process, which is acceptable only because this path's
    every stage output is already committed in Postgres.
    """

    shards = 1

    def __init__(self) -> None:
        self._queues: dict[str, asyncio.Queue[Message]] = {s: asyncio.Queue() for s in STAGES}
        self._state: dict[str, dict[str, Any]] = {}
        self._outstanding: dict[str, set[str]] = {}
        self._seq = 0

    async def setup(self) -> None:
        return None

    async def heartbeat(self) -> None:
        return None

    async def touch(self, stage: str, ids: Sequence[str], shard: int = 0) -> None:
        return None

    async def close(self) -> None:
        return None

    def _put(self, stage: str, ref: SourceRef, attempts: int = 1) -> None:
        self._seq += 1
        self._queues[stage].put_nowait(Message(str(self._seq), stage, ref, attempts))

    async def read(self, stage: str, count: int, block_ms: int, shard: int = 0) -> list[Message]:
        q = self._queues[stage]
        try:
            first = await wait_for(q.get(), block_ms / 1000)
        except TimeoutError:
            return []
        out = [first]
        while len(out) < count and not q.empty():
            out.append(q.get_nowait())
        return out

    async def reclaim(
        self, stage: str, min_idle_ms: int, count: int, shard: int = 0
    ) -> list[Message]:
        return []

    async def begin(self, msg: Message, input_key: str | None, check_stale: bool) -> Begin:
        st = self._state.get(str(msg.ref.document_id), {})
        return Begin(msg.attempts, st.get(state.GENERATION) != msg.ref.generation)

    async def advance(
        self,
        msg: Message,
        next_stage: str | None,
        fields: dict[str, str | float],
        terminal: tuple[str, str | None] | None = None,
        writes: Writes | None = None,
        retries: int = 0,
    ) -> bool:
        if writes is not None:
            raise BackendUnavailable("the in-process transport cannot store stage outputs")
        doc = str(msg.ref.document_id)
        st = self._state.setdefault(doc, {})
        if st.get(state.GENERATION) != msg.ref.generation:
            return False
        st.update(fields)
        if terminal is not None:
            status, error = terminal
            st[state.STATUS], st[state.DONE_AT] = status, _now()
            if error:
                st[state.ERROR] = error
            self._outstanding.get(msg.ref.project, set()).discard(doc)
        if next_stage is not None:
            self._put(next_stage, msg.ref, retries + 1)
        return True

    async def retry(self, msg: Message, error: str) -> None:
        self._put(msg.stage, msg.ref, msg.attempts + 1)

    async def park(self, msg: Message, parked: Parked) -> int:
        raise ConfigError(
            f"{parked.reason}: documents can wait on an outside service only through Redis "
            "(set REDIS_URL)"
        )

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

    async def intake_at(self, ref: SourceRef) -> str | None:
        value = self._state.get(str(ref.document_id), {}).get(state.INTAKE_AT)
        return None if value is None else str(value)

    async def stage_backlog(self, stages: Sequence[str]) -> dict[str, int]:
        """Queued messages per stage (those in work have left their queue)."""
        return {stage: self._queues[stage].qsize() for stage in stages}

    async def failed_ids(self, project: str) -> set[str]:
        # One process, one run: every failed document here is the caller's project's.
        return {doc for doc, st in self._state.items() if st.get(state.STATUS) == state.FAILED}

    async def latencies(self, refs: Sequence[SourceRef]) -> list[tuple[float, float, float]]:
        out = []
        for ref in refs:
            st = self._state.get(str(ref.document_id), {})
            if state.DONE_AT in st:
                compute = sum(float(st.get(state.stage_time_field(s), 0.0)) for s in STAGES)
                out.append((float(st[state.INTAKE_AT]), float(st[state.DONE_AT]), compute))
        return out
