"""The write-behind writer against real Redis and Postgres.

Documents are built from real corpus text (read at test time) with simple, deterministic
stand-ins for the stages, so the rows have realistic sizes and characters.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import msgspec
import pytest
import redis.asyncio as aioredis

from accelerated import ids, state
from accelerated.aio import wait_for
from accelerated.codec import Codec
from accelerated.keys import Keys
from accelerated.models import (
    CanonicalEntity,
    Chunk,
    Chunked,
    Cleaned,
    Extracted,
    Mention,
    Mentions,
    Page,
    Related,
    Relationship,
    Resolved,
    SourceRef,
)
from accelerated.settings import Settings
from persistence import rows
from persistence.intents import (
    FIELD,
    ID_FIELD,
    Intent,
    IntentMemo,
    intent_for_document,
    queue_intent,
    upgrade_intent,
)
from persistence.schema import migrate
from persistence.writebehind import WriteBehindWriter
from tests.conftest import KINDS
from tests.support import failed_errors, outstanding_count

PROJECT = "acme-litigation"
CORPUS_TEXTS = (
    "courtlistener/opinions_txt/opinion_text.txt",
    "courtlistener/opinions_txt/txt_file_with_no_encoding__latin1.txt",
)


@dataclass
class Doc:
    source: SourceRef
    extracted: Extracted
    cleaned: Cleaned
    chunked: Chunked
    mentions: Mentions
    resolved: Resolved
    related: Related

    def intent(self, status: str = state.DONE, error: str | None = None) -> Intent:
        return intent_for_document(
            self.source,
            self.extracted,
            self.cleaned,
            self.resolved,
            self.related,
            status,
            error,
            chunked=self.chunked,
        )


def corpus_text(corpus: Path, name: str) -> str:
    return (corpus / name).read_bytes().decode("utf-8", errors="replace")


def build_document(
    text: str, source_key: str, project: str = PROJECT, generation: int = 1, max_mentions: int = 80
) -> Doc:
    """Deterministic stand-ins for the six stages; output lists in the documented order."""
    doc = ids.document_id(project, source_key)
    sha = hashlib.sha256(text.encode()).hexdigest()
    source = SourceRef(
        document_id=doc,
        project=project,
        source=f"/in/{source_key}",
        source_key=source_key,
        sha256=sha,
        size=len(text.encode()),
        format="txt",
        generation=generation,
    )
    pages = [
        Page(i + 1, s, min(s + 3000, len(text))) for i, s in enumerate(range(0, len(text), 3000))
    ]
    extracted = Extracted(
        document_id=doc,
        sha256=sha,
        format="txt",
        method="plain",
        text=text,
        pages=pages,
        metadata={"title": source_key, "encoding": "utf-8 ✓"},
    )
    clean = re.sub(r"[ \t]+", " ", text)
    cpages = [
        Page(i + 1, s, min(s + 3000, len(clean))) for i, s in enumerate(range(0, len(clean), 3000))
    ]
    cleaned = Cleaned(document_id=doc, text=clean, pages=cpages, category="opinion")
    chunks = [
        Chunk(
            id=ids.chunk_id(doc, i),
            document_id=doc,
            index=i,
            text=clean[s : s + 1000],
            start=s,
            end=min(s + 1000, len(clean)),
            page_start=s // 3000 + 1,
            page_end=(min(s + 1000, len(clean)) - 1) // 3000 + 1,
        )
        for i, s in enumerate(range(0, len(clean), 900))
    ]
    chunked = Chunked(document_id=doc, chunks=chunks)
    found: dict[uuid.UUID, Mention] = {}
    for m in re.finditer(r"\b[A-Z][a-z]{3,}(?: [A-Z][a-z]+)?\b", clean):
        etype = "ORGANIZATION" if len(m.group()) % 2 else "PERSON"
        mid = ids.mention_id(doc, etype, m.start(), m.end())
        found[mid] = Mention(
            id=mid,
            document_id=doc,
            chunk_id=chunks[min(m.start() // 900, len(chunks) - 1)].id,
            type=etype,
            text=m.group(),
            normalized=m.group().lower(),
            start=m.start(),
            end=m.end(),
        )
        if len(found) >= max_mentions:
            break
    ordered = sorted(found.values(), key=lambda m: (m.start, m.end, m.type, str(m.id)))
    mentions = Mentions(document_id=doc, chunk_ids=[c.id for c in chunks], mentions=ordered)
    canon: dict[uuid.UUID, CanonicalEntity] = {}
    resolved_mentions = []
    for m in ordered:
        cid = ids.canonical_id(project, m.type, m.normalized)
        canon.setdefault(
            cid,
            CanonicalEntity(id=cid, project=project, type=m.type, key=m.normalized, name=m.text),
        )
        resolved_mentions.append(
            Mention(
                id=m.id,
                document_id=doc,
                chunk_id=m.chunk_id,
                type=m.type,
                text=m.text,
                normalized=m.normalized,
                start=m.start,
                end=m.end,
                canonical_id=cid,
            )
        )
    resolved = Resolved(
        document_id=doc,
        chunk_ids=[c.id for c in chunks],
        mentions=resolved_mentions,
        canonicals=sorted(canon.values(), key=lambda c: (c.type, c.key)),
    )
    rels = [_rel(project, doc, "HAS_CHUNK", "DOCUMENT", doc, "CHUNK", c.id) for c in chunks]
    rels += [_rel(project, doc, "MENTIONS", "CHUNK", m.chunk_id, "MENTION", m.id) for m in ordered]
    rels += [
        _rel(project, doc, "REFERS_TO", "MENTION", m.id, "CANONICAL", m.canonical_id)
        for m in resolved_mentions
        if m.canonical_id
    ]
    return Doc(
        source,
        extracted,
        cleaned,
        chunked,
        mentions,
        resolved,
        Related(document_id=doc, relationships=rels),
    )


def _rel(
    project: str, doc: uuid.UUID, rtype: str, st: str, sid: uuid.UUID, tt: str, tid: uuid.UUID
) -> Relationship:
    return Relationship(
        id=ids.relationship_id(rtype, sid, tid, doc),
        project=project,
        document_id=doc,
        type=rtype,
        source_type=st,
        source_id=sid,
        target_type=tt,
        target_id=tid,
        weight=0.5 if rtype == "MENTIONS" else 1.0,
    )


def _parsed(table: str, row: Sequence[object]) -> tuple[object, ...]:
    """JSON columns parsed (jsonb prints ``{"a": 1}`` where msgspec writes ``{"a":1}``),
    uuids as text (rows may carry ``uuid.UUID``; the query casts them to text)."""
    return tuple(
        msgspec.json.decode(v)
        if t == "jsonb" and isinstance(v, str)
        else str(v)
        if isinstance(v, uuid.UUID)
        else v
        for v, (_c, t) in zip(row, rows.TABLES[table], strict=True)
    )


async def table_rows(pool: asyncpg.Pool, table: str) -> list[tuple[object, ...]]:
    """Rows in rows.COLUMNS order, in rows.py's JSON-safe form, sorted by id."""
    cols = ", ".join(f"{c}::text" if t in ("uuid", "jsonb") else c for c, t in rows.TABLES[table])
    got = await pool.fetch(f"SELECT {cols} FROM {table} ORDER BY id")
    return [_parsed(table, r) for r in got]


def expected_rows(docs: list[Doc], table: str) -> list[tuple[object, ...]]:
    """What the records say the table must hold (canonical names: the least one)."""
    out: dict[str, tuple[object, ...]] = {}
    for d in docs:
        for r in d.intent().tables.get(table, []):
            row = _parsed(table, r)
            if table == "canonical_entities" and row[0] in out:
                row = min(out[str(row[0])], row, key=lambda x: str(x[4]))
            out[str(row[0])] = row
    return [out[k] for k in sorted(out)]


async def start_document(redis: aioredis.Redis, keys: Keys, d: Doc) -> None:
    """What intake does in Redis: state hash with the generation, outstanding set."""
    await redis.hset(
        keys.state(d.source.document_id),
        mapping={state.GENERATION: d.source.generation, state.STATUS: state.PERSISTING},
    )
    shard = keys.shard(d.source.document_id)
    await redis.sadd(keys.outstanding(d.source.project, shard), str(d.source.document_id))


async def wb_pending(redis: aioredis.Redis, keys: Keys) -> int:
    """Entries delivered and not acked, over every shard's write-behind stream."""
    return sum([(await redis.xpending(s, keys.WB_GROUP))["pending"] for s in keys.wb_streams()])


async def queue(
    redis: aioredis.Redis,
    keys: Keys,
    codec: Codec,
    intents: list[Intent],
    memo: IntentMemo | None = None,
) -> None:
    async with redis.pipeline(transaction=False) as pipe:  # (several shards: slots)
        for it in intents:
            queue_intent(pipe, keys, codec, it, memo)
        await pipe.execute()


@pytest.fixture
async def docs(corpus: Path) -> list[Doc]:
    texts = [corpus_text(corpus, n) for n in CORPUS_TEXTS]
    return [build_document(texts[i % 2][i * 500 :], f"case-{i}.txt") for i in range(4)]


@pytest.fixture
async def writer(
    redis: aioredis.Redis,
    pg_pool: asyncpg.Pool,
    keys: Keys,
    codec: Codec,
    settings: Settings,
    pg_schema: str,
) -> WriteBehindWriter:
    await migrate(pg_pool, pg_schema)
    return WriteBehindWriter(redis, pg_pool, keys, codec, settings, consumer="w1")


# The writer on a cluster reads and acknowledges every shard's stream (its own path).
BOTH = pytest.mark.parametrize("redis_kind", KINDS, indirect=True)


@BOTH
async def test_writer_applies_intents_and_rows_equal_records(
    writer: WriteBehindWriter, redis: aioredis.Redis, keys: Keys, codec: Codec, docs: list[Doc]
) -> None:
    for d in docs:
        await start_document(redis, keys, d)
    await queue(redis, keys, codec, [d.intent() for d in docs])
    assert await writer.backlog() == len(docs)

    assert await writer.drain() == len(docs)

    assert await writer.backlog() == 0
    for table in rows.TABLE_ORDER:
        got = await table_rows(writer.pool, table)
        assert len(got) > 0, table
        assert got == expected_rows(docs, table), table
    for d in docs:
        st = await redis.hgetall(keys.state(d.source.document_id))
        assert st[state.STATUS.encode()] == b"done"
        assert float(st[state.DONE_AT.encode()]) <= time.time()
    assert await outstanding_count(redis, keys, PROJECT) == 0
    for stream in keys.wb_streams():
        assert await redis.xpending(stream, keys.WB_GROUP) == {
            "pending": 0,
            "min": None,
            "max": None,
            "consumers": [],
        }
    assert writer.stats.applied == len(docs)


async def test_reprocess_replaces_rows_and_skips_unchanged(
    writer: WriteBehindWriter, redis: aioredis.Redis, keys: Keys, codec: Codec, docs: list[Doc]
) -> None:
    d = docs[0]
    await queue(redis, keys, codec, [d.intent()])
    await writer.drain()
    before = await writer.pool.fetch("SELECT id, xmin::text FROM chunks ORDER BY id")
    # Same records again (a reprocess): no row changes, so no row versions are written.
    await queue(redis, keys, codec, [d.intent()])
    await writer.drain()
    assert await writer.pool.fetch("SELECT id, xmin::text FROM chunks ORDER BY id") == before
    # Fewer chunks now: the stale ones go, so the table is exactly the new output.
    d.chunked.chunks = d.chunked.chunks[:2]
    await queue(redis, keys, codec, [d.intent()])
    await writer.drain()
    got = await writer.pool.fetch("SELECT idx FROM chunks ORDER BY idx")
    assert [r[0] for r in got] == [0, 1]


@BOTH
async def test_redelivery_after_crash_adds_nothing_and_marks_done(
    writer: WriteBehindWriter, redis: aioredis.Redis, keys: Keys, codec: Codec, docs: list[Doc]
) -> None:
    d = docs[1]
    await start_document(redis, keys, d)
    await queue(redis, keys, codec, [d.intent()])
    # Simulate a crash between COMMIT and XACK: commit the batch, never acknowledge it.
    batch = await writer._collect(block_ms=100)
    assert len(batch.items) == 1
    await writer._commit([it for _sid, it in batch.items])
    committed = {t: await table_rows(writer.pool, t) for t in rows.TABLE_ORDER}
    assert await redis.hget(keys.state(d.source.document_id), state.STATUS) == b"persisting"
    assert await wb_pending(redis, keys) == 1

    # A fresh writer with the same consumer name (the restarted process) takes its own
    # pending entry first.
    again = WriteBehindWriter(redis, writer.pool, keys, codec, writer.settings, consumer="w1")
    assert await again.drain() == 1
    assert again.stats.applied == 0 and again.stats.redelivered == 1
    assert {t: await table_rows(writer.pool, t) for t in rows.TABLE_ORDER} == committed
    assert await writer.pool.fetchval("SELECT count(*) FROM wb_applied") == 1
    assert await redis.hget(keys.state(d.source.document_id), state.STATUS) == b"done"
    assert await again.backlog() == 0


@BOTH
async def test_autoclaim_takes_a_hung_consumers_entries(
    writer: WriteBehindWriter, redis: aioredis.Redis, keys: Keys, codec: Codec, docs: list[Doc]
) -> None:
    """A consumer whose heartbeat is still renewed but which never acks (hung) loses its
    entries only after claim_idle_ms (a dead one's are taken at once: test_faults_writer)."""
    for d in docs[:2]:
        await start_document(redis, keys, d)
    await queue(redis, keys, codec, [d.intent() for d in docs[:2]])
    hung = WriteBehindWriter(redis, writer.pool, keys, codec, writer.settings, consumer="hung")
    await redis.set(keys.consumer_alive("hung"), b"1", ex=60)
    assert len((await hung._collect(block_ms=100)).items) == 2  # read, then never acked

    t0 = time.monotonic()
    assert await writer.drain() == 2
    # claim_idle_ms is 2 s in the test settings: the entries were not taken before that.
    assert time.monotonic() - t0 >= writer.settings.claim_idle_ms / 1000 * 0.9
    assert writer.stats.applied == 2
    for d in docs[:2]:
        assert await redis.hget(keys.state(d.source.document_id), state.STATUS) == b"done"
    assert await wb_pending(redis, keys) == 0


async def test_postgres_lock_timeout_retries_and_acks_nothing_until_commit(
    redis: aioredis.Redis,
    pg_pool: asyncpg.Pool,
    keys: Keys,
    codec: Codec,
    settings: Settings,
    pg_schema: str,
    docs: list[Doc],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A real server error on every attempt (lock_timeout behind an ACCESS EXCLUSIVE lock)."""
    from tests.conftest import DATABASE_URL

    await migrate(pg_pool, pg_schema)
    impatient = await asyncpg.create_pool(
        DATABASE_URL,
        min_size=1,
        max_size=2,
        server_settings={"search_path": pg_schema, "lock_timeout": "50ms"},
    )
    fast_retry = settings.model_copy(update={"wb_retry_max_s": 0.2})
    w = WriteBehindWriter(redis, impatient, keys, codec, fast_retry, consumer="w1")
    d = docs[2]
    await start_document(redis, keys, d)
    await queue(redis, keys, codec, [d.intent()])
    locker = await pg_pool.acquire()
    tx = locker.transaction()
    await tx.start()
    await locker.execute("LOCK TABLE chunks IN ACCESS EXCLUSIVE MODE")
    stop = asyncio.Event()
    task = asyncio.create_task(w.run(stop))
    try:
        await _until(lambda: w.stats.retries >= 3)
        assert (await redis.xpending(keys.wb_stream(), keys.WB_GROUP))["pending"] == 1
        assert await redis.xlen(keys.wb_stream()) == 1
        assert await redis.hget(keys.state(d.source.document_id), state.STATUS) == b"persisting"
        assert await pg_pool.fetchval("SELECT count(*) FROM wb_applied") == 0
        outage_logs = [r for r in caplog.records if "backend unavailable" in r.getMessage()]
        assert len(outage_logs) == 1  # once per outage, not once per retry
        assert "LockNotAvailable" in outage_logs[0].getMessage()
    finally:
        await tx.rollback()
        await pg_pool.release(locker)
    await _until_async(lambda: _status(redis, keys, d), b"done")
    stop.set()
    await wait_for(task, 5)
    await impatient.close()
    assert await redis.xlen(keys.wb_stream()) == 0
    assert len(await table_rows(pg_pool, "chunks")) == len(d.chunked.chunks)


async def test_stop_with_the_stream_empty_does_not_sit_out_the_idle_read(
    redis: aioredis.Redis,
    pg_pool: asyncpg.Pool,
    keys: Keys,
    codec: Codec,
    settings: Settings,
    pg_schema: str,
    docs: list[Doc],
) -> None:
    """Input has ended: the writer's blocked read (here 30 s: the batch window) is
    abandoned on stop, and an intent queued just before stop is still committed."""
    await migrate(pg_pool, pg_schema)
    slow = settings.model_copy(update={"wb_batch_ms": 30_000})
    w = WriteBehindWriter(redis, pg_pool, keys, codec, slow, consumer="w1")
    first, last = docs[0], docs[1]
    await start_document(redis, keys, first)
    await queue(redis, keys, codec, [first.intent()])
    stop = asyncio.Event()
    task = asyncio.create_task(w.run(stop))
    await _until_async(lambda: _status(redis, keys, first), b"done")
    await asyncio.sleep(0.3)  # the writer is back in its idle read
    stop.set()
    await wait_for(task, 5)  # not the 30 s the read would block
    assert (await redis.xpending(keys.wb_stream(), keys.WB_GROUP))["pending"] == 0
    # A second writer: the entry arrives while it blocks; stop comes at once after.
    w2 = WriteBehindWriter(redis, pg_pool, keys, codec, slow, consumer="w2")
    stop2 = asyncio.Event()
    task2 = asyncio.create_task(w2.run(stop2))
    await asyncio.sleep(0.3)
    await start_document(redis, keys, last)
    await queue(redis, keys, codec, [last.intent()])
    await _until_async(lambda: _status(redis, keys, last), b"done")
    stop2.set()
    await wait_for(task2, 5)
    assert await redis.xlen(keys.wb_stream()) == 0
    assert (await redis.xpending(keys.wb_stream(), keys.WB_GROUP))["pending"] == 0


async def test_the_held_connection_and_staging_tables_are_ready_before_the_first_intent(
    writer: WriteBehindWriter, redis: aioredis.Redis, keys: Keys, codec: Codec, docs: list[Doc]
) -> None:
    """No slow start: the run's first commit does not wait for its connection and
    staging tables; they are made while the stream is still empty."""
    stop = asyncio.Event()
    task = asyncio.create_task(writer.run(stop))
    try:
        await _until(lambda: writer._conn is not None and writer._conn in writer._staged)
        assert writer.stats.applied == 0
        d = docs[0]
        await start_document(redis, keys, d)
        await queue(redis, keys, codec, [d.intent()])
        await _until_async(lambda: _status(redis, keys, d), b"done")
    finally:
        stop.set()
        await wait_for(task, 10)
    assert writer.stats.applied == 1 and writer.stats.reconnects == 0


async def test_stop_during_outage_leaves_entries_pending(
    redis: aioredis.Redis, keys: Keys, codec: Codec, settings: Settings, docs: list[Doc]
) -> None:
    """A pool whose server is gone: nothing is acked, and stop still returns promptly."""
    from tests.conftest import DATABASE_URL

    pool = await asyncpg.create_pool(DATABASE_URL, min_size=0, max_size=1)
    await pool.close()  # every acquire now fails with InterfaceError
    w = WriteBehindWriter(redis, pool, keys, codec, settings, consumer="w1")
    await queue(redis, keys, codec, [docs[0].intent()])
    stop = asyncio.Event()
    task = asyncio.create_task(w.run(stop))
    await _until(lambda: w.stats.retries >= 2)
    stop.set()
    await wait_for(task, 5)
    assert await redis.xlen(keys.wb_stream()) == 1
    assert (await redis.xpending(keys.wb_stream(), keys.WB_GROUP))["pending"] == 1


async def test_generation_mismatch_does_not_mark_reingested_document(
    writer: WriteBehindWriter, redis: aioredis.Redis, keys: Keys, codec: Codec, docs: list[Doc]
) -> None:
    d = docs[3]
    await start_document(redis, keys, d)
    await queue(redis, keys, codec, [d.intent()])
    # Re-ingested before the writer got to it: the state hash now belongs to generation 2.
    await redis.hset(
        keys.state(d.source.document_id), mapping={state.GENERATION: 2, state.STATUS: state.QUEUED}
    )
    assert await writer.drain() == 1
    st = await redis.hgetall(keys.state(d.source.document_id))
    assert st[state.STATUS.encode()] == b"queued"
    assert state.DONE_AT.encode() not in st
    assert await redis.sismember(keys.outstanding(PROJECT), str(d.source.document_id))
    # ... and a stale generation never overwrites the newer documents row.
    newer = build_document(d.extracted.text, d.source.source_key, generation=2)
    await writer.pool.execute(
        "UPDATE documents SET generation = 2, status = 'queued' WHERE id = $1", d.source.document_id
    )
    await queue(redis, keys, codec, [d.intent()])
    await writer.drain()
    assert (
        await writer.pool.fetchval(
            "SELECT status FROM documents WHERE id = $1", newer.source.document_id
        )
        == "queued"
    )


async def test_failed_document_is_recorded(
    writer: WriteBehindWriter, redis: aioredis.Redis, keys: Keys, codec: Codec, docs: list[Doc]
) -> None:
    d = docs[0]
    await start_document(redis, keys, d)
    intent = intent_for_document(
        d.source, None, None, None, None, state.FAILED, "bad_input: encrypted"
    )
    await queue(redis, keys, codec, [intent])
    assert await writer.drain() == 1
    assert (
        await redis.hget(keys.failed(PROJECT), str(d.source.document_id)) == b"bad_input: encrypted"
    )
    assert await writer.pool.fetchval("SELECT error FROM documents") == "bad_input: encrypted"
    assert await redis.hget(keys.state(d.source.document_id), state.STATUS) == b"failed"


@BOTH
async def test_poison_intent_goes_to_dlq(
    writer: WriteBehindWriter, redis: aioredis.Redis, keys: Keys, codec: Codec, docs: list[Doc]
) -> None:
    good = docs[0]
    await start_document(redis, keys, good)
    await redis.xadd(keys.wb_stream(0), {FIELD: b"not an intent"})
    await redis.xadd(keys.wb_stream(0), {FIELD: codec.encode({"intent_id": "nope"})})
    await queue(redis, keys, codec, [good.intent()])
    assert await writer.drain() == 1
    dlq = await redis.xrange(keys.wb_dlq(0))
    assert len(dlq) == 2
    assert all(b"error" in fields for _sid, fields in dlq)
    assert b"codec header" in dlq[0][1][b"error"]
    assert await writer.backlog() == 0
    assert await wb_pending(redis, keys) == 0
    assert await redis.hget(keys.state(good.source.document_id), state.STATUS) == b"done"


@BOTH
async def test_rows_postgres_rejects_are_dead_lettered_alone(
    writer: WriteBehindWriter, redis: aioredis.Redis, keys: Keys, codec: Codec, docs: list[Doc]
) -> None:
    """A data error (SQLSTATE 22) fails only its own document; the batch commits."""
    bad, good = docs[0], docs[1]
    for d in (bad, good):
        await start_document(redis, keys, d)
    broken = bad.intent()
    row = list(broken.tables["chunks"][0])
    row[3] = 2**40  # idx out of integer range
    broken.tables["chunks"][0] = row
    await queue(redis, keys, codec, [broken, good.intent()])
    assert await writer.drain() == 1
    assert await redis.hget(keys.state(good.source.document_id), state.STATUS) == b"done"
    assert await redis.hget(keys.state(bad.source.document_id), state.STATUS) == b"failed"
    err = (await failed_errors(redis, keys, PROJECT)).get(str(bad.source.document_id).encode())
    assert err is not None and err.startswith(b"persist:")
    assert (
        await writer.pool.fetchval(
            "SELECT count(*) FROM chunks WHERE document_id = $1", bad.source.document_id
        )
        == 0
    )
    bad_shard = keys.shard(bad.source.document_id)
    assert len(await redis.xrange(keys.wb_dlq(bad_shard))) == 1


async def _status(redis: aioredis.Redis, keys: Keys, d: Doc) -> bytes | None:
    value = await redis.hget(keys.state(d.source.document_id), state.STATUS)
    return value


async def _until(cond: object, limit_s: float = 10.0) -> None:
    end = time.monotonic() + limit_s
    while not cond():  # type: ignore[operator]
        if time.monotonic() > end:
            pytest.fail("condition not reached in time")
        await asyncio.sleep(0.02)


async def _until_async(fn: object, want: object, limit_s: float = 10.0) -> None:
    end = time.monotonic() + limit_s
    while await fn() != want:  # type: ignore[operator]
        if time.monotonic() > end:
            pytest.fail(f"never became {want!r}")
        await asyncio.sleep(0.02)


async def test_first_write_of_a_document_racing_another_writer_merges_cleanly(
    writer: WriteBehindWriter,
    redis: aioredis.Redis,
    pg_pool: asyncpg.Pool,
    keys: Keys,
    codec: Codec,
    settings: Settings,
    docs: list[Doc],
) -> None:
    """A new document's rows are copied straight in; a second writer applying the same
    document meanwhile must wait on its row, then merge, not collide or duplicate."""
    d = docs[0]
    first = d.intent()
    d.chunked.chunks = d.chunked.chunks[:3]
    second = d.intent()
    other = WriteBehindWriter(redis, pg_pool, keys, codec, settings, consumer="w2")
    async with pg_pool.acquire() as conn_a, pg_pool.acquire() as conn_b:
        held = conn_a.transaction()
        await held.start()
        await writer._apply(conn_a, [first])  # inserted, not yet committed: row locked
        racing = asyncio.create_task(other._apply(conn_b, [second]))
        await asyncio.sleep(0.3)
        assert not racing.done()  # waits on the uncommitted documents row
        await held.commit()
        await wait_for(racing, 10)
    got = await pg_pool.fetch("SELECT idx FROM chunks ORDER BY idx")
    assert [r[0] for r in got] == [0, 1, 2]
    mentions = await table_rows(pg_pool, "entity_mentions")
    assert len(mentions) == len(second.tables["entity_mentions"])


async def test_a_writer_in_the_queueing_process_takes_intents_without_decoding(
    redis: aioredis.Redis,
    pg_pool: asyncpg.Pool,
    keys: Keys,
    codec: Codec,
    settings: Settings,
    pg_schema: str,
    docs: list[Doc],
) -> None:
    await migrate(pg_pool, pg_schema)
    memo = IntentMemo()
    writer = WriteBehindWriter(redis, pg_pool, keys, codec, settings, consumer="w1", memo=memo)
    intents = [d.intent() for d in docs]
    await queue(redis, keys, codec, intents, memo)
    assert len(memo) == len(docs)
    assert memo.take(intents[0].intent_id.bytes) is intents[0]  # gone: read back and decoded
    memo.hits = 0
    assert await writer.drain() == len(docs)
    assert memo.hits == len(docs) - 1 and len(memo) == 0
    for table in rows.TABLE_ORDER:
        assert await table_rows(pg_pool, table) == expected_rows(docs, table), table


def test_intent_memo_is_bounded_by_rows(docs: list[Doc]) -> None:
    intents = [d.intent() for d in docs]
    memo = IntentMemo(max_rows=intents[-1].row_count())
    for it in intents:
        memo.put(it)
    assert len(memo) == 1 and memo.take(intents[-1].intent_id.bytes) is intents[-1]
    assert memo.take(intents[0].intent_id.bytes) is None


async def test_intent_queued_before_derived_edges_loses_only_the_derived_ones(
    writer: WriteBehindWriter, redis: aioredis.Redis, keys: Keys, codec: Codec, docs: list[Doc]
) -> None:
    """An intent from before schema migration 6 names the table ``relationships`` and holds
    every edge: the writer keeps its CO_OCCURS_WITH rows (into stored_relationships) and
    drops the kinds the view now derives, which would otherwise show twice."""
    d = docs[0]
    a, b = d.resolved.canonicals[0].id, d.resolved.canonicals[1].id
    co = _rel(PROJECT, d.source.document_id, "CO_OCCURS_WITH", "CANONICAL", a, "CANONICAL", b)
    edges = [*d.related.relationships, co]
    legacy = d.intent()
    del legacy.tables["stored_relationships"]
    legacy.tables["relationships"] = list(
        rows.relationship_rows(Related(document_id=d.source.document_id, relationships=edges))
    )
    await start_document(redis, keys, d)
    await redis.xadd(  # the entry as an old process wrote it (no table check on the way)
        keys.wb_stream(keys.shard(d.source.document_id)),
        {FIELD: codec.encode(legacy), ID_FIELD: legacy.intent_id.bytes},
    )
    assert await writer.drain() == 1
    stored = await table_rows(writer.pool, "stored_relationships")
    assert stored == [
        _parsed(
            "stored_relationships",
            rows.relationship_rows(Related(document_id=d.source.document_id, relationships=[co]))[
                0
            ],
        )
    ]
    derived = await writer.pool.fetchval(
        "SELECT count(*) FROM relationships WHERE type <> 'CO_OCCURS_WITH'"
    )
    linked = sum(1 for m in d.resolved.mentions if m.canonical_id is not None)
    assert derived == len(d.chunked.chunks) + len(d.resolved.mentions) + linked > 0
    fresh = d.intent()
    assert upgrade_intent(fresh).tables == d.intent().tables  # a current intent: unchanged


async def test_large_values_are_stored_lz4_compressed_fresh_and_merged(
    writer: WriteBehindWriter, redis: aioredis.Redis, keys: Keys, codec: Codec, corpus: Path
) -> None:
    """Migration 8: a document's texts go to the server as lz4, both when its rows are
    COPYed straight into the table (first write) and when they are staged and merged
    (re-processed); pglz cost the server ~4x the CPU on the writer's hot path."""
    if not await writer.pool.fetchval(
        "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
    ):
        pytest.skip("this PostgreSQL was built without lz4: migration 8 changes nothing")
    text = corpus_text(corpus, CORPUS_TEXTS[0]) * 3  # well over the 2 kB TOAST threshold
    d = build_document(text, "big.txt")
    query = (
        "SELECT pg_column_compression(text), pg_column_compression(raw_text), "
        "pg_column_compression(pages) FROM documents WHERE id = $1"
    )
    await queue(redis, keys, codec, [d.intent()])
    await writer.drain()
    assert tuple(await writer.pool.fetchrow(query, d.source.document_id)) == ("lz4",) * 3
    d.cleaned.text = d.cleaned.text.replace("the", "THE")  # changed: merged via staging
    await queue(redis, keys, codec, [d.intent()])
    await writer.drain()
    row = await writer.pool.fetchrow(query, d.source.document_id)
    assert row[0] == "lz4"
    assert (
        await writer.pool.fetchval("SELECT text FROM documents WHERE id = $1", d.source.document_id)
        == d.cleaned.text
    )
    kinds = await writer.pool.fetch(
        "SELECT DISTINCT pg_column_compression(text) FROM chunks WHERE document_id = $1",
        d.source.document_id,
    )
    assert {r[0] for r in kinds} <= {"lz4", None}  # None: a chunk too short to compress


@pytest.mark.parametrize("idle", [False, True])
async def test_a_batch_closes_at_once_when_no_intent_is_on_its_way_from_this_process(
    redis: aioredis.Redis,
    pg_pool: asyncpg.Pool,
    keys: Keys,
    codec: Codec,
    settings: Settings,
    pg_schema: str,
    idle: bool,
) -> None:
    """Intents 0.1 s apart keep a batch open (its quiet gap is longer) until its window
    ends; with the engine of this process idle (``producer_idle``: its last documents
    are committed) the batch takes what is there and goes."""
    await migrate(pg_pool, pg_schema)
    writer = WriteBehindWriter(
        redis, pg_pool, keys, codec, settings.model_copy(update={"wb_batch_ms": 5000}), "w-idle"
    )
    writer.producer_idle = (lambda: True) if idle else None
    intents = [build_document("x" * 50, f"trickle-{i}.txt").intent() for i in range(10)]
    await queue(redis, keys, codec, intents[:1])

    async def trickle() -> None:
        for it in intents[1:]:
            await asyncio.sleep(0.1)
            await queue(redis, keys, codec, [it])

    feeder = asyncio.create_task(trickle())
    try:
        batch = await wait_for(writer._collect(1000), 10)
    finally:
        await feeder
    if idle:
        assert len(batch) <= 2
    else:
        assert len(batch) == len(intents)
