"""The write-behind writer: intents on a Redis stream -> committed Postgres rows.

At-least-once delivery, exactly-once effect: the intent ids of a batch are inserted
into ``wb_applied`` in the same transaction as the rows, so a redelivered intent (a
crash between COMMIT and XACK, or a claim from a dead consumer) skips the SQL and only
repeats the idempotent Redis marking. Nothing is acknowledged before its rows commit;
while Postgres is down the entries stay pending and the writer retries with backoff.

Faults are survived without a restart: a connection Postgres or a pooler dropped is
thrown away and a fresh pool connection taken (its staging tables made again); a failed
background read is dropped and redone, and the entries it may have taken are read back
from this consumer's pending list; Redis out of memory is waited out with one log line;
a consumer whose heartbeat lapsed has its pending intents taken over at once, and is
removed from the group. Anything else stops the writer with a logged error.

Shards: the intents of a document go to its shard's stream (``Keys.wb_stream(n)``,
written by the stage transition's script, which must touch one cluster slot). The
writer reads every shard's stream into one batch, so batches stay as large as with
one stream; an entry is known by (shard, id), since ids are per stream. With one
shard a read blocks on the stream, as before; with several, one non-blocking read
per shard is sent at once (a read of streams in several slots is refused by a
cluster) and repeated at a short, growing interval until ``block`` has passed. The
acknowledgement is one MULTI per shard (the entries of that shard's stream and the
marks of that shard's documents), each retried whole on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg  # type: ignore[import-untyped]
import redis.asyncio as aioredis
from redis.exceptions import (
    OutOfMemoryError,
    RedisClusterException,
    ResponseError,
    SlotNotCoveredError,
)
from redis.utils import str_if_bytes

from accelerated import state
from accelerated.aio import wait_for
from accelerated.cluster import RedisClient, queue_script
from accelerated.codec import Codec
from accelerated.errors import CodecError
from accelerated.keys import Keys
from accelerated.logs import doc_log, document_finished, elapsed_since
from accelerated.settings import Settings
from accelerated.transport import RedisTransport
from persistence import rows
from persistence.intents import FIELD, ID_FIELD, Intent, IntentMemo, upgrade_intent
from persistence.pg import describe, is_transient, redact
from persistence.schema import quote_schema

log = logging.getLogger(__name__)

PRUNE_AFTER: Final = "7 days"
_QUIET_GAP_MS: Final = 250
_IDLE: Final = asyncio.Event()  # always set: "Postgres is idle" for _collect
_IDLE.set()
PRUNE_EVERY_S: Final = 3600.0
# Backoff ceiling while a backend is down, whatever wb_retry_max_s says: work must
# resume within 15 s of a fault ending, so no wait may be much longer than this.
RESUME_WITHIN_S: Final = 5.0
# Entries longer than this are kept out of the dead-letter stream (only their size is
# recorded): copying an oversize value there would fill Redis a second time.
DLQ_RAW_MAX: Final = 1 << 20
# How long a dead consumer's entry must have been idle before we XCLAIM it: a second
# writer that claimed it a moment ago has reset its idle time, so only one of them wins.
_DEAD_CLAIM_IDLE_MS: Final = 200
# Several shards: the interval between reads of all of them while they are empty.
_POLL_MIN_S: Final = 0.005
_POLL_MAX_S: Final = 0.25  # the batch window's quiet gap: no later than one would wait
# An entry pending to us this long that no batch holds is an orphan (see _orphans).
_ORPHAN_IDLE_MS: Final = 1000
# InternalClientError: a connection the server ended mid-operation can be left in a
# protocol state asyncpg refuses to leave; like a detached one, it is replaced.
_DB_ERRORS: Final = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)
# What asyncpg raises while encoding a value the column type cannot hold (bad rows).
_ENCODE_ERRORS: Final = (OverflowError, ValueError, TypeError)

# Marks a document terminal once its rows are committed, unless it was re-ingested
# meanwhile (a newer generation owns the state hash then).
MARK_LUA: Final = f"""
-- KEYS[1] state hash, KEYS[2] project outstanding set, KEYS[3] project failed hash,
-- KEYS[4..] the document's stage output keys
-- ARGV[1] generation, ARGV[2] status, ARGV[3] now (epoch s), ARGV[4] doc id, ARGV[5] error,
-- ARGV[6] seconds the state and outputs of a finished document stay (0: keep their TTLs)
-- Returns 0 (re-ingested: not marked), else {{1 (marked now) or 2 (it was already: a
-- redelivered intent), source, stage, intake_at}} for the document's log line.
if redis.call('HGET', KEYS[1], '{state.GENERATION}') ~= ARGV[1] then return 0 end
local was = redis.call('HGET', KEYS[1], '{state.STATUS}')
-- Finished and committed: Postgres has the rows, so the document's keys need stay only
-- a while (for a --reprocess soon after); the content caches keep their long TTLs.
local ttl = tonumber(ARGV[6])
if ttl > 0 then
  for i = 1, #KEYS do
    if i == 1 or i > 3 then redis.call('EXPIRE', KEYS[i], ttl) end
  end
end
redis.call('HSET', KEYS[1], '{state.STATUS}', ARGV[2], '{state.DONE_AT}', ARGV[3],
           '{state.UPDATED_AT}', ARGV[3])
redis.call('SREM', KEYS[2], ARGV[4])
if ARGV[2] == '{state.FAILED}' then
  redis.call('HSET', KEYS[1], '{state.ERROR}', ARGV[5])
  redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
else
  redis.call('HDEL', KEYS[3], ARGV[4])
end
local info = redis.call('HMGET', KEYS[1], '{state.SOURCE}', '{state.STAGE}', '{state.INTAKE_AT}')
return {{was == ARGV[2] and 2 or 1, info[1] or '', info[2] or '', info[3] or ''}}
"""

# Removes a consumer from the group only if it still has no heartbeat and nothing
# pending, in one step: deleting a consumer deletes its pending entries, which would
# then never be delivered again.
# (The heartbeat key is checked just before, by the caller: it is in another slot. A
# consumer that renews it in between and has nothing pending loses only its group
# entry, which its next read makes again; one that read something is not removed.)
DELCONSUMER_LUA: Final = """
-- KEYS[1] stream; ARGV[1] group, ARGV[2] consumer
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #p > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


@dataclass
class WriterStats:
    applied: int = 0  # intents whose rows this writer committed
    redelivered: int = 0  # intents found already applied (SQL skipped, marking repeated)
    dead: int = 0  # poison intents moved to the dead-letter stream
    rows: int = 0  # rows handed to Postgres (after de-duplication)
    copied_rows: int = 0  # per-document rows of first-written documents: COPY into the table
    merged_rows: int = 0  # per-document rows of re-processed documents: merged via staging
    retries: int = 0
    reconnects: int = 0  # Postgres connections dropped after an error and replaced
    taken_over: int = 0  # entries claimed from consumers whose heartbeat lapsed
    consumers_removed: int = 0  # dead consumers deleted from the group
    orphans: int = 0  # own pending entries no batch held (a read reply lost), re-read


Sid = tuple[int, bytes]  # (shard, stream entry id): entry ids are per stream
Entry = tuple[Sid, dict[bytes, bytes]]


@dataclass
class _Batch:
    items: list[tuple[Sid, Intent]] = field(default_factory=list)
    poison: list[tuple[Sid, bytes, str]] = field(default_factory=list)  # sid, raw, error
    empty: list[Sid] = field(default_factory=list)  # entries deleted while pending
    rows: int = 0

    def __len__(self) -> int:
        return len(self.items) + len(self.poison) + len(self.empty)


@dataclass
class _AckPart:
    """One shard's acknowledgement: entries of its stream, marks of its documents."""

    shard: int
    sids: list[bytes] = field(default_factory=list)
    dead: list[tuple[bytes, bytes, str]] = field(default_factory=list)  # id, raw, error
    marks: list[tuple[str, str, Intent]] = field(default_factory=list)  # status, error


class _Stopped(Exception):
    """Stop was requested while waiting out an outage: leave the batch pending."""


class WriteBehindWriter:
    def __init__(
        self,
        redis: RedisClient,
        pool: asyncpg.Pool,
        keys: Keys,
        codec: Codec,
        settings: Settings,
        consumer: str,
        memo: IntentMemo | None = None,
        heartbeat_ttl_s: float = RedisTransport.HEARTBEAT_TTL_S,
    ) -> None:
        self.redis = redis
        self.memo = memo
        self.pool = pool
        self.keys = keys
        self.codec = codec
        self.settings = settings
        self.consumer = consumer
        self.streams = keys.wb_streams()  # one per shard
        self.group = keys.WB_GROUP
        self.stats = WriterStats()
        self._schema = quote_schema(settings.pg_schema)
        self._mark = redis.register_script(MARK_LUA)
        self._delconsumer = redis.register_script(DELCONSUMER_LUA)
        # The engine's heartbeat key, renewed by this writer too while it runs (a writer
        # used alone has no engine), so engine and writer agree on who is alive.
        self.heartbeat_ttl_s = heartbeat_ttl_s
        self._alive_key = keys.consumer_alive(consumer)
        self._last_dead_check = -heartbeat_ttl_s
        self._group_ready = False
        self._check_own_pending = True  # first read takes our own unacked entries
        # Entries read into a batch and not yet acknowledged: any other entry pending to
        # this consumer was delivered by a read whose reply was lost (redis-py retries
        # a read after a dropped connection, so the writer may never see an error).
        self._in_hand: set[Sid] = set()
        self._last_claim = 0.0
        self._idle_read = False  # blocked on a read with an empty batch (see _collected)
        # Set by the runtime when an engine shares this process: True while it has no
        # document in flight, so no intent of its is on the way and a batch that has
        # entries need not wait out its window (the run's last documents).
        self.producer_idle: Callable[[], bool] | None = None
        self._warm: asyncio.Task[None] | None = None  # see _prepare
        self._last_prune = -PRUNE_EVERY_S
        self._rows_per_intent = 64.0
        self._in_outage = False
        self._sql = {t: _upsert_sql(self._schema, t) for t in rows.COLUMNS}
        self._probe_sql = _probe_sql(self._schema)
        self._conn: asyncpg.Connection | None = None
        self._hold = False  # run()/drain() keep one connection for their whole lifetime
        self._staged: set[asyncpg.Connection] = set()

    # Public API -----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then finish the batch in hand."""
        await self._serve(stop, max(self.settings.wb_batch_ms, 200), until_empty=False)

    async def drain(self, idle_ms: int = 100) -> int:
        """Process until the stream holds nothing; returns the intents processed."""
        return await self._serve(asyncio.Event(), idle_ms, until_empty=True)

    async def _serve(self, stop: asyncio.Event, idle: int, *, until_empty: bool) -> int:
        """The loop of run() and drain(): read the next batch while this one commits.

        A read that fails (in the read-ahead task or not) is dropped, never awaited
        again, and this consumer's pending entries are read back, since a read whose
        reply was lost has still made them ours. Faults of either backend are waited
        out; any other error is logged at once and ends the writer.
        """
        done = 0
        ahead: asyncio.Task[_Batch] | None = None
        self._hold = True
        beat = asyncio.create_task(self._heartbeat(), name=f"wb-heartbeat-{self.consumer}")
        self._warm = asyncio.create_task(self._prepare(), name=f"wb-prepare-{self.consumer}")
        try:
            await self._beat()
            while not stop.is_set():
                try:
                    await self._maybe_prune()
                    task, ahead = ahead, None
                    # Postgres idle (the first batch, or after a quiet spell): no window,
                    # the batch goes as soon as it has entries.
                    batch = await self._collected(task or self._collect(idle, _IDLE), stop)
                    if len(batch):
                        if not stop.is_set():
                            # Read and decode the next batch while Postgres works on
                            # this one (with the whole window: fewer, larger batches).
                            ahead = asyncio.create_task(self._collect(idle))
                        done += await self._process(batch, stop)
                        continue
                    if until_empty:
                        if await self.backlog() == 0:
                            return done
                        # Entries pending to another consumer: wait until it is found
                        # dead (heartbeat) or XAUTOCLAIM may take them.
                        await asyncio.sleep(min(self.heartbeat_ttl_s / 4, 0.5))
                except _Stopped:
                    return done
                except Exception as exc:
                    if not _is_outage(exc):
                        log.error(
                            "write-behind writer %s stopped: %s", self.consumer, describe(exc)
                        )
                        raise
                    await _settle(ahead)
                    ahead = None
                    self._after_redis_error(exc)
                    await self._outage(exc, stop)
            if ahead is not None:  # already read (pending to us): finish it too
                task, ahead = ahead, None
                try:
                    done += await self._process(await self._collected(task, stop), stop)
                except _Stopped:
                    pass
                except Exception as exc:  # left pending: read again or taken over
                    if not _is_outage(exc):
                        log.error(
                            "write-behind writer %s stopped: %s", self.consumer, describe(exc)
                        )
                        raise
            return done
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
            await _settle(ahead)
            await self._prepared()
            await self.close()

    async def _collected(
        self, collect: asyncio.Task[_Batch] | Coroutine[Any, Any, _Batch], stop: asyncio.Event
    ) -> _Batch:
        """The batch being collected; once ``stop`` is set, an idle read is not sat out.

        A collect still waiting on its first entries (the stream was empty: input has
        ended) is abandoned at once instead of blocking for the rest of its read, so
        stopping takes no batch window. A read cancelled in flight may still have made
        entries ours: they are read back from this consumer's pending list, and
        finished as the batch in hand.
        """
        task = collect if isinstance(collect, asyncio.Task) else asyncio.create_task(collect)
        if not task.done() and not stop.is_set():
            stopped = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
            except BaseException:  # our own cancellation: the read goes with us
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise
            finally:
                stopped.cancel()
                await asyncio.gather(stopped, return_exceptions=True)
        if task.done() or not self._idle_read:
            return await task
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        batch = _Batch()
        self._add(batch, await self._read("0", None))
        return batch

    async def _prepare(self) -> None:
        """While the first intents are still on their way: the held connection and its
        staging tables, which the run's first commit would otherwise wait for (about a
        second on a schema this server has not served yet). A failure here is left to
        the first commit, which handles it as always."""
        try:
            conn = await self._connection()
        except Exception:
            return
        try:
            await self._ensure_temp_tables(conn)
        except Exception:
            if self._conn is conn:  # in an unknown state: never reused
                self._conn = None
            self._staged.discard(conn)
            with contextlib.suppress(Exception):
                conn.terminate()
            with contextlib.suppress(Exception):
                await self.pool.release(conn)

    async def _prepared(self) -> None:
        """Wait for ``_prepare`` (it uses the held connection: one user at a time)."""
        warm, self._warm = self._warm, None
        if warm is not None:
            with contextlib.suppress(Exception):
                await warm

    def _after_redis_error(self, exc: BaseException) -> None:
        """The batches in hand are dropped; what they held and what a lost reply
        delivered is pending to us: read it back next. A Redis that came back empty has
        no group: make it again."""
        self._in_hand.clear()
        self._check_own_pending = True
        if _is_nogroup(exc):
            self._group_ready = False

    async def _beat(self) -> None:
        with contextlib.suppress(aioredis.RedisError):
            await self.redis.set(self._alive_key, b"1", px=int(self.heartbeat_ttl_s * 1000))

    async def _heartbeat(self) -> None:
        """Renew the heartbeat key while the writer runs (Redis errors: try again)."""
        while True:
            await asyncio.sleep(self.heartbeat_ttl_s / 3)
            await self._beat()

    async def backlog(self) -> int:
        """Intents not yet applied (applied entries are XDELed, so this is XLEN), summed
        over the shards' streams."""
        if len(self.streams) == 1:
            return int(await self.redis.xlen(self.streams[0]))
        pipe = self.redis.pipeline(transaction=False)
        for stream in self.streams:
            pipe.xlen(stream)
        return sum(int(n) for n in await pipe.execute())

    # Reading ----------------------------------------------------------------------------
    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        for stream in self.streams:
            try:
                await self.redis.xgroup_create(stream, self.group, id="0", mkstream=True)
            except ResponseError as exc:
                # A full Redis refuses XGROUP CREATE before it looks for the group: one
                # that exists still lets the writer read and commit while memory is short.
                if "BUSYGROUP" not in str(exc) and not (
                    _is_oom(exc) and await self._group_exists(stream)
                ):
                    raise
        self._group_ready = True

    async def _group_exists(self, stream: str) -> bool:
        try:
            groups = await self.redis.xinfo_groups(stream)
        except ResponseError:  # no such key
            return False
        return any(str_if_bytes(g["name"]) == self.group for g in groups)

    async def _collect(self, block_ms: int, committed: asyncio.Event | None = None) -> _Batch:
        """Gather entries up to ``wb_batch_rows`` rows or ``wb_batch_ms`` after the first.

        ``committed`` set (no batch is being committed: Postgres is idle, as for the
        run's first batch or after a quiet spell) closes a batch that has entries at
        once, so the first document is not held back for a window (no slow start). A
        batch read ahead while the one before commits keeps the whole window: closing
        it when that commit ends made batches smaller and cost Postgres more CPU per
        document.
        """
        await self._ensure_group()
        batch = _Batch()
        if self._check_own_pending:
            self._check_own_pending = False
            self._add(batch, await self._read("0", None))
        now = time.monotonic()
        if now - self._last_dead_check >= min(1.0, self.heartbeat_ttl_s / 2):
            self._last_dead_check = now
            self._add(batch, await self._orphans())
            self._add(batch, await self._take_over())
        if now - self._last_claim >= self.settings.claim_idle_ms / 2000:
            self._last_claim = now
            self._add(batch, await self._claim())
        deadline = time.monotonic() + self.settings.wb_batch_ms / 1000 if len(batch) else None
        while batch.rows < self.settings.wb_batch_rows:
            if deadline is None:
                block: int | None = block_ms
            elif self.producer_idle is not None and self.producer_idle():
                block = None  # nothing more on its way from here: take what is there
            else:
                # Keep the batch open while intents keep coming, up to wb_batch_ms;
                # a quiet gap closes it early, so a lone intent is not held back.
                left = int((deadline - time.monotonic()) * 1000)
                block = min(left, _QUIET_GAP_MS) if left >= 1 else None
            # Only a read with nothing gathered yet may be abandoned on stop (_collected).
            self._idle_read = not len(batch)
            try:
                entries = await self._read(">", block)
            finally:
                self._idle_read = False
            if not entries:
                break
            self._add(batch, entries)
            if deadline is None:
                deadline = time.monotonic() + self.settings.wb_batch_ms / 1000
            elif time.monotonic() >= deadline:
                break
            if committed is not None and committed.is_set():
                break
        return batch

    async def _read(self, start: str, block: int | None) -> list[Entry]:
        want = (self.settings.wb_batch_rows) / max(self._rows_per_intent, 1.0)
        count = max(1, min(1000, int(want)))
        if len(self.streams) == 1:
            resp: Any = await self.redis.xreadgroup(
                self.group, self.consumer, {self.streams[0]: start}, count=count, block=block
            )
            return [((0, sid), f) for sid, f in _entries(resp)]
        # Several shards: one read per shard, sent together (a cluster refuses a read of
        # streams in several slots), polled until ``block`` has passed.
        per_shard = -(-count // len(self.streams))
        deadline = time.monotonic() + (block or 0) / 1000
        delay = _POLL_MIN_S
        while True:
            pipe = self.redis.pipeline(transaction=False)
            for stream in self.streams:
                pipe.xreadgroup(self.group, self.consumer, {stream: start}, count=per_shard)
            replies = await pipe.execute()
            out = [((n, sid), f) for n, resp in enumerate(replies) for sid, f in _entries(resp)]
            left = deadline - time.monotonic()
            if out or block is None or start != ">" or left <= 0:
                return out
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, _POLL_MAX_S)

    async def _claim(self) -> list[Entry]:
        """Take entries idle past ``claim_idle_ms`` (their consumer died mid-batch)."""
        out: list[Entry] = []
        for shard, stream in enumerate(self.streams):
            cursor: bytes | str = "0-0"
            while len(out) < 5000:
                resp = await self.redis.xautoclaim(
                    stream,
                    self.group,
                    self.consumer,
                    self.settings.claim_idle_ms,
                    cursor,
                    count=500,
                )
                cursor = resp[0]
                out.extend(((shard, sid), f) for sid, f in resp[1])
                if cursor in (b"0-0", "0-0"):
                    break
        return out

    async def _orphans(self) -> list[Entry]:
        """Our own pending entries that no batch holds (a read's reply was lost)."""
        out: list[Entry] = []
        for shard, stream in enumerate(self.streams):
            pending = await self.redis.xpending_range(
                stream,
                self.group,
                min="-",
                max="+",
                count=1000,
                consumername=self.consumer,
                idle=_ORPHAN_IDLE_MS,
            )
            ids: list[Any] = [
                p["message_id"] for p in pending if (shard, p["message_id"]) not in self._in_hand
            ]
            if not ids:
                continue
            claimed: Any = await self.redis.xclaim(stream, self.group, self.consumer, 0, ids)
            out.extend(((shard, sid), f) for sid, f in claimed)
        if out:
            self.stats.orphans += len(out)
            log.info(
                "write-behind writer %s: re-read %d intents delivered by a lost reply",
                self.consumer,
                len(out),
            )
        return out

    async def _take_over(self) -> list[Entry]:
        """Claim at once the entries of consumers whose heartbeat key is gone (like
        RedisTransport.reclaim for the stage streams), and delete those consumers
        from the group once they have nothing pending."""
        out: list[Entry] = []
        groups: list[tuple[int, str, list[tuple[dict[str, Any], str]]]] = []
        for shard, stream in enumerate(self.streams):
            infos: list[dict[str, Any]] = await self.redis.xinfo_consumers(stream, self.group)
            others = [(i, str_if_bytes(i["name"])) for i in infos]
            others = [(i, n) for i, n in others if n != self.consumer]
            if others:
                groups.append((shard, stream, others))
        names = sorted({n for _s, _st, others in groups for _i, n in others})
        if not names:
            return out
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.exists(self.keys.consumer_alive(name))
        alive = {n for n, a in zip(names, await pipe.execute(), strict=True) if a}
        for shard, stream, others in groups:
            for info, name in others:
                if name in alive:
                    continue
                if info["pending"]:
                    out += await self._claim_dead(shard, stream, name)
                removed = await self._delconsumer(keys=[stream], args=[self.group, name])
                self.stats.consumers_removed += int(removed)
        return out

    async def _claim_dead(self, shard: int, stream: str, name: str) -> list[Entry]:
        pending = await self.redis.xpending_range(
            stream, self.group, min="-", max="+", count=1000, consumername=name
        )
        ids: list[Any] = [p["message_id"] for p in pending]
        if not ids:
            return []
        claimed: Any = await self.redis.xclaim(
            stream, self.group, self.consumer, _DEAD_CLAIM_IDLE_MS, ids
        )
        self.stats.taken_over += len(claimed)
        log.info(
            "write-behind writer %s: took over %d intents of %s (heartbeat lapsed)",
            self.consumer,
            len(claimed),
            name,
        )
        return [((shard, sid), f) for sid, f in claimed]

    def _add(self, batch: _Batch, entries: list[Entry]) -> None:
        for sid, fields in entries:
            if sid in self._in_hand:  # already in a batch (claimed or re-read again)
                continue
            self._in_hand.add(sid)
            raw = fields.get(FIELD) if fields else None
            if not fields:
                batch.empty.append(sid)
                continue
            if raw is None:
                batch.poison.append((sid, b"", f"entry has no {FIELD!r} field"))
                continue
            iid = fields.get(ID_FIELD)
            known = self.memo.take(iid) if self.memo is not None and iid else None
            if known is not None:
                self._take(batch, sid, known)
                continue
            try:
                intent = upgrade_intent(self.codec.decode(raw, Intent))
                bad = set(intent.tables) - set(rows.COLUMNS)
                if bad:
                    raise CodecError(f"unknown tables {sorted(bad)}")
            except CodecError as exc:
                batch.poison.append((sid, raw, str(exc)))
                continue
            self._take(batch, sid, intent)

    def _take(self, batch: _Batch, sid: Sid, intent: Intent) -> None:
        n = intent.row_count()
        batch.items.append((sid, intent))
        batch.rows += n
        self._rows_per_intent = 0.8 * self._rows_per_intent + 0.2 * max(n, 1)

    # Applying ---------------------------------------------------------------------------
    async def _process(self, batch: _Batch, stop: asyncio.Event) -> int:
        """Commit, then ack + mark; returns intents processed (not counting poison)."""
        dead: list[tuple[Sid, bytes, str, Intent | None]] = [
            (sid, raw, err, None) for sid, raw, err in batch.poison
        ]
        items = batch.items
        if items:
            rejected = await self._commit_with_retry(items, stop)
            if rejected:
                bad = {sid for sid, _i, _e in rejected}
                items = [(sid, it) for sid, it in items if sid not in bad]
                dead += [(sid, self.codec.encode(it), e, it) for sid, it, e in rejected]
        for part in self._ack_parts(items, dead, batch.empty):
            await self._retry(stop, self._acknowledge, part)
        self._in_hand.difference_update(sid for sid, _it in batch.items)
        self._in_hand.difference_update(sid for sid, _r, _e in batch.poison)
        self._in_hand.difference_update(batch.empty)
        return len(items)

    async def _commit_with_retry(
        self, items: list[tuple[Sid, Intent]], stop: asyncio.Event
    ) -> list[tuple[Sid, Intent, str]]:
        """Commit the batch; on a data error, commit intents one by one and reject the bad."""
        try:
            await self._retry(stop, self._commit, [it for _s, it in items])
            return []
        except _DataRejected as exc:
            if len(items) == 1:
                sid, it = items[0]
                log.error("write-behind intent %s rejected by Postgres: %s", it.intent_id, exc)
                return [(sid, it, f"persist: {exc}")]
        rejected: list[tuple[Sid, Intent, str]] = []
        for item in items:
            rejected += await self._commit_with_retry([item], stop)
        return rejected

    async def _retry(self, stop: asyncio.Event, fn: Any, *args: Any) -> None:
        delay = 0.05
        while True:
            try:
                await fn(*args)
            except _DB_ERRORS as exc:
                if not is_transient(exc):
                    raise _DataRejected(describe(exc)) from exc
                await self._wait(exc, delay, stop)
            except _ENCODE_ERRORS as exc:
                raise _DataRejected(describe(exc)) from exc
            except (aioredis.RedisError, RedisClusterException) as exc:
                if not _is_outage(exc):
                    raise
                if _is_nogroup(exc):
                    self._group_ready = False
                # The batch is still in hand (no need to read our pending entries back);
                # a read in flight fails on its own and is redone by _serve.
                await self._wait(exc, delay, stop)
            else:
                if self._in_outage:
                    log.warning("write-behind writer %s: backend back, resuming", self.consumer)
                    self._in_outage = False
                return
            delay = min(delay * 2, self._max_delay())

    def _max_delay(self) -> float:
        return max(0.05, min(self.settings.wb_retry_max_s, RESUME_WITHIN_S))

    async def _wait(self, exc: BaseException, delay: float, stop: asyncio.Event) -> None:
        self.stats.retries += 1
        if not self._in_outage:
            self._in_outage = True
            if _is_oom(exc):
                what = (
                    "Redis is full (maxmemory reached, noeviction: it refuses writes); "
                    "raise maxmemory or free memory"
                )
            elif isinstance(exc, ResponseError):
                what = f"Redis refused ({redact(_reply(exc))})"
            else:
                what = f"backend unavailable ({describe(exc)})"
            log.warning(
                "write-behind writer %s: %s; keeping the backlog and retrying with backoff "
                "up to %.0fs",
                self.consumer,
                what,
                self._max_delay(),
            )
        if stop.is_set():
            raise _Stopped
        # Jitter: writers that lost the same backend do not come back in lockstep.
        with contextlib.suppress(TimeoutError):
            await wait_for(stop.wait(), delay * random.uniform(0.5, 1.0))
        if stop.is_set():
            raise _Stopped

    async def _outage(self, exc: BaseException, stop: asyncio.Event) -> None:
        with contextlib.suppress(_Stopped):
            await self._wait(exc, min(1.0, self._max_delay()), stop)

    async def _commit(self, intents: list[Intent]) -> None:
        """One transaction: record intent ids, then upsert the new intents' rows.

        After any error but bad data the connection is thrown away: whether Postgres
        ended it (pg_terminate_backend, a failover, a pooler) or a timeout left it
        mid-protocol, a fresh pool connection is cheaper than finding out.
        """
        if self._hold:
            await self._prepared()
            conn = await self._connection()
            try:
                await self._apply(conn, intents)
            except _DB_ERRORS as exc:
                if is_transient(exc):
                    await self._drop(conn)
                raise
        else:
            async with self.pool.acquire() as conn:
                try:
                    await self._apply(conn, intents)
                finally:
                    self._staged.discard(conn)  # a proxy is not reused by the next acquire

    async def _apply(self, conn: asyncpg.Connection, intents: list[Intent]) -> None:
        s = self._schema
        await self._ensure_temp_tables(conn)
        async with conn.transaction():
            new = {
                str(r[0])
                for r in await conn.fetch(
                    f"INSERT INTO {s}.wb_applied (intent_id) SELECT unnest($1::uuid[]) "
                    "ON CONFLICT DO NOTHING RETURNING intent_id",
                    list({str(i.intent_id) for i in intents}),
                )
            }
            latest: dict[uuid.UUID, Intent] = {}  # an intent is a document's full row set
            for it in intents:
                if str(it.intent_id) in new:
                    latest[it.document_id] = it
            fresh: set[uuid.UUID] = set()  # documents with no rows yet in per-document tables
            for table in rows.TABLE_ORDER:
                owners = [it for it in latest.values() if table in it.tables]
                if owners:
                    self.stats.rows += await self._load(conn, table, owners, fresh)
        self.stats.applied += len(new)
        self.stats.redelivered += len(intents) - len(new)

    async def _ensure_temp_tables(self, conn: asyncpg.Connection) -> None:
        """Per-connection staging tables, made once (emptied at every commit)."""
        if conn in self._staged:
            return
        await conn.execute(
            "".join(
                f"CREATE TEMP TABLE IF NOT EXISTS _wb_{t} ON COMMIT DELETE ROWS AS "
                f"SELECT {', '.join(cols)} FROM {self._schema}.{t} WITH NO DATA;"
                for t, cols in rows.COLUMNS.items()
            )
        )
        if conn.get_server_version() >= (14,):
            # A staged value is compressed when it is staged and copied as it is into the
            # table, so staging compresses as the table's column does (migration 8).
            lz4 = await conn.fetch(
                "SELECT c.relname, a.attname FROM pg_attribute a "
                "JOIN pg_class c ON c.oid = a.attrelid "
                "WHERE c.relnamespace = $1::regnamespace AND a.attcompression = 'l'",
                self.settings.pg_schema,
            )
            alter = "".join(
                f"ALTER TABLE _wb_{t} ALTER COLUMN {col} SET COMPRESSION lz4;"
                for t, col in lz4
                if col in rows.COLUMNS.get(t, ())
            )
            if alter:
                await conn.execute(alter)
        self._staged.add(conn)

    async def _load(
        self, conn: asyncpg.Connection, table: str, owners: list[Intent], fresh: set[uuid.UUID]
    ) -> int:
        """Rows of ``table`` for ``owners`` (one intent per document, in this batch)."""
        cols = rows.COLUMNS[table]
        if table not in rows.PER_DOCUMENT:
            if table == "canonical_entities":  # shared across documents: least name wins
                records = rows.least_names([r for it in owners for r in it.tables[table]])
            else:
                records = [r for it in owners for r in it.tables[table]]
            if not records:
                return 0
            await conn.copy_records_to_table(f"_wb_{table}", records=records, columns=cols)
            await conn.execute(self._sql[table])
            if table == "documents":
                # The upsert has locked every document of the batch (rows it did not need
                # to change included) until commit, so a writer racing on one of them waits
                # here; this next statement, with a fresh snapshot, then sees its rows.
                ids = [it.document_id for it in owners]
                have = {r[0] for r in await conn.fetch(self._probe_sql, ids)}
                fresh.update(d for d in ids if d not in have)
            return len(records)
        # A document seen for the first time has no rows to merge with: its rows go
        # straight into the table. Re-processed documents are merged, so unchanged rows
        # are not rewritten and rows the new output lacks are deleted. (Row ids are unique
        # within a document's rows and carry the document's id, so no two owners share one.)
        new = [it for it in owners if it.document_id in fresh]
        old = [it for it in owners if it.document_id not in fresh]
        new_rows = [r for it in new for r in it.tables[table]]
        if new_rows:
            await conn.copy_records_to_table(
                table, records=new_rows, columns=cols, schema_name=self.settings.pg_schema
            )
        old_rows = [r for it in old for r in it.tables[table]]
        self.stats.copied_rows += len(new_rows)
        self.stats.merged_rows += len(old_rows)
        if old_rows:
            await conn.copy_records_to_table(f"_wb_{table}", records=old_rows, columns=cols)
        if old:
            await conn.execute(self._sql[table], [str(it.document_id) for it in old])
        return len(new_rows) + len(old_rows)

    async def _connection(self) -> asyncpg.Connection:
        """One connection for a run()/drain(): no pool reset round trip per batch."""
        conn = self._conn
        if conn is not None and not _usable(conn):
            await self._drop(conn)
            conn = None
        if conn is None:
            self._conn = conn = await self.pool.acquire()
        return conn

    async def _drop(self, conn: asyncpg.Connection) -> None:
        """Terminate a held connection and give its slot back to the pool.

        Never released as if healthy: a release resets the connection, which fails on a
        broken one; terminate() needs no round trip, and releasing what asyncpg already
        detached is a no-op.
        """
        if self._conn is conn:
            self._conn = None
        self._staged.discard(conn)
        self.stats.reconnects += 1
        with contextlib.suppress(Exception):
            conn.terminate()
        with contextlib.suppress(Exception):
            await self.pool.release(conn)

    async def close(self) -> None:
        self._hold = False
        conn, self._conn = self._conn, None
        if conn is not None:
            self._staged.discard(conn)
            try:
                await self.pool.release(conn)
            except Exception:  # a broken one: terminate, never reuse
                with contextlib.suppress(Exception):
                    conn.terminate()

    def _ack_parts(
        self,
        items: list[tuple[Sid, Intent]],
        dead: list[tuple[Sid, bytes, str, Intent | None]],
        empty: list[Sid],
    ) -> list[_AckPart]:
        """What each shard's MULTI acknowledges and marks (a shard's keys: one slot)."""
        parts: dict[int, _AckPart] = {}

        def part(shard: int) -> _AckPart:
            return parts.setdefault(shard, _AckPart(shard))

        for sid, it in items:
            part(sid[0]).sids.append(sid[1])
            if it.status:
                part(self.keys.shard(it.document_id)).marks.append((it.status, it.error or "", it))
        for sid, raw, err, maybe in dead:
            part(sid[0]).sids.append(sid[1])
            part(sid[0]).dead.append((sid[1], raw, err))
            if maybe is not None:
                part(self.keys.shard(maybe.document_id)).marks.append((state.FAILED, err, maybe))
        for sid in empty:
            part(sid[0]).sids.append(sid[1])
        return [parts[n] for n in sorted(parts)]

    async def _acknowledge(self, part: _AckPart) -> None:
        """One MULTI per shard: dead-letter the poison, XACK + XDEL, mark documents
        terminal."""
        n = part.shard
        now = f"{time.time():.3f}"
        async with self.redis.pipeline(transaction=True) as pipe:
            # A write Redis refuses when full, queued first: at maxmemory the whole
            # MULTI is then refused at EXEC (nothing acked, nothing marked), never run
            # in part.
            pipe.set(self.keys.wb_probe(n), b"1", px=int(self.heartbeat_ttl_s * 1000))
            for sid, raw, err in part.dead:
                pipe.xadd(self.keys.wb_dlq(n), _dead_letter(sid, raw, err))
            if part.sids:
                pipe.xack(self.streams[n], self.group, *part.sids)
                pipe.xdel(self.streams[n], *part.sids)
            for status, error, it in part.marks:
                shard = self.keys.shard(it.document_id)
                await queue_script(
                    pipe,
                    self._mark,
                    [
                        self.keys.state(it.document_id),
                        self.keys.outstanding(it.project, shard),
                        self.keys.failed(it.project, shard),
                        *self.keys.outputs(it.document_id),
                    ],
                    [
                        it.generation,
                        status,
                        now,
                        str(it.document_id),
                        error,
                        self.settings.ttl_done_s,
                    ],
                )
            replies = await pipe.execute()
        self.stats.dead += len(part.dead)
        if part.marks and doc_log.isEnabledFor(logging.INFO):
            _log_marked(part.marks, replies[-len(part.marks) :], float(now))

    async def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now - self._last_prune < PRUNE_EVERY_S:
            return
        self._last_prune = now
        try:
            await self.pool.execute(
                f"DELETE FROM {self._schema}.wb_applied "
                f"WHERE applied_at < now() - interval '{PRUNE_AFTER}'"
            )
        except _DB_ERRORS as exc:  # pruning is housekeeping: never fail the writer for it
            log.info("write-behind writer: pruning wb_applied skipped: %s", describe(exc))


def _log_marked(marks: list[tuple[str, str, Intent]], replies: list[Any], now: float) -> None:
    """One line per document this acknowledgement made terminal (not the re-ingested,
    not a redelivered intent's document, marked before)."""
    for (status, error, it), reply in zip(marks, replies, strict=True):
        if not isinstance(reply, list) or int(reply[0]) != 1:
            continue
        source, stage, intake_at = (str_if_bytes(v) for v in reply[1:4])
        document_finished(
            document_id=it.document_id,
            project=it.project,
            source=source,
            status=status,
            stage=stage or None,
            error=error or None,
            elapsed_ms=elapsed_since(intake_at, now),
        )


async def _settle(task: asyncio.Task[_Batch] | None) -> None:
    """Let a read in flight finish (cancelling one mid-reply would drop its connection);
    its entries stay pending to this consumer and are read again or claimed."""
    if task is not None:
        with contextlib.suppress(Exception):
            await task


def _entries(resp: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The entries of an XREADGROUP reply (RESP2 or RESP3)."""
    if not resp:
        return []
    if isinstance(resp, dict):  # RESP3
        return [e for entries in resp.values() for e in entries[0]]
    return [e for _name, entries in resp for e in entries]


def _dead_letter(sid: bytes, raw: bytes, err: str) -> dict[Any, Any]:
    """A DLQ entry: the intent as it was, unless it is too big to copy."""
    entry: dict[Any, Any] = {b"id": sid, b"error": err.encode(), b"size": str(len(raw)).encode()}
    if len(raw) <= DLQ_RAW_MAX:
        entry[FIELD] = raw
    return entry


def _usable(conn: asyncpg.Connection) -> bool:
    """False for a connection that is closed or that asyncpg already detached from its
    proxy (a lost connection returns its holder to the pool by itself; the proxy then
    raises InterfaceError on every call, is_closed() included)."""
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:
        return False


# Redis replies that mean "not now", not "never": out of memory under noeviction, a
# restarted server still loading or one that lost the group (empty restart), a replica
# after a failover, a failed background save with stop-writes-on-bgsave-error.
_REDIS_NOT_NOW: Final = (
    "OOM",
    "NOGROUP",
    "LOADING",
    "READONLY",
    "MISCONF",
    "TRYAGAIN",
    "CLUSTERDOWN",  # a cluster failing over, or a slot no node serves
    "MASTERDOWN",
)
_OUTAGE_ERRORS: Final = (*_DB_ERRORS, aioredis.ConnectionError, aioredis.TimeoutError)


def _reply(exc: BaseException) -> str:
    """A Redis error reply without redis-py's pipeline annotation ("Command # 1 (...)
    of pipeline caused error: ...")."""
    text = str(exc)
    return text.split(" caused error: ", 1)[1] if " caused error: " in text else text


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, OutOfMemoryError) or (
        isinstance(exc, ResponseError) and _reply(exc).startswith("OOM")
    )


def _is_nogroup(exc: BaseException) -> bool:
    return isinstance(exc, ResponseError) and _reply(exc).startswith("NOGROUP")


def _is_outage(exc: BaseException) -> bool:
    """Errors the writer waits out (a backend down, full or restarting)."""
    if isinstance(exc, _OUTAGE_ERRORS) or _is_oom(exc):
        return True
    if isinstance(exc, RedisClusterException):  # the cluster client's own: no node reachable
        return isinstance(exc, SlotNotCoveredError) or "cannot be connected" in str(exc)
    return isinstance(exc, ResponseError) and _reply(exc).startswith(_REDIS_NOT_NOW)


class _DataRejected(Exception):
    """Postgres rejected the rows themselves (SQLSTATE 22/23)."""


def _probe_sql(schema: str) -> str:
    """Which of the documents in $1 already have rows in a per-document table."""
    exists = " OR ".join(
        f"EXISTS (SELECT 1 FROM {schema}.{t} WHERE document_id = d)" for t in rows.PER_DOCUMENT
    )
    return f"SELECT d FROM unnest($1::uuid[]) AS d WHERE {exists}"


def _upsert_sql(schema: str, table: str) -> str:
    """Upsert from the staging table; for per-document tables the same statement
    deletes the documents' ($1) rows that their new output no longer has."""
    cols = rows.COLUMNS[table]
    names = ", ".join(cols)
    head = (
        # In id order, so two writers lock shared rows (canonical entities) in the same
        # order and never deadlock.
        f"INSERT INTO {schema}.{table} AS t ({names}) SELECT {names} FROM _wb_{table} "
        "ORDER BY id ON CONFLICT (id) DO UPDATE SET "
    )
    if table in rows.PER_DOCUMENT:
        head = (
            f"WITH gone AS (DELETE FROM {schema}.{table} t WHERE t.document_id = ANY($1::uuid[]) "
            f"AND NOT EXISTS (SELECT 1 FROM _wb_{table} n WHERE n.id = t.id)) " + head
        )
    if table == "canonical_entities":
        return head + "name = LEAST(t.name, EXCLUDED.name) WHERE EXCLUDED.name < t.name"
    rest = [c for c in cols if c != "id"]
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in rest)
    changed = (
        f"({', '.join('t.' + c for c in rest)}) IS DISTINCT FROM "
        f"({', '.join('EXCLUDED.' + c for c in rest)})"
    )
    if table == "documents":  # never let a stale generation overwrite a re-ingested one
        newer = "t.generation <= EXCLUDED.generation"
        return f"{head}{sets}, updated_at = now() WHERE {newer} AND {changed}"
    return f"{head}{sets} WHERE {changed}"
