"""The traditional store: every stage's record round-trips exactly, and the rows it
writes are the rows the write-behind writer writes for the same records."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import msgspec
import pytest
import redis.asyncio as aioredis

from accelerated import state
from accelerated.codec import Codec
from accelerated.errors import DocumentError
from accelerated.keys import Keys
from accelerated.settings import Settings
from persistence import rows
from persistence.documents import project_documents, register_documents
from persistence.schema import migrate
from persistence.traditional import TraditionalStore
from persistence.writebehind import WriteBehindWriter
from tests.test_writebehind import (
    CORPUS_TEXTS,
    PROJECT,
    Doc,
    build_document,
    corpus_text,
    queue,
    table_rows,
)

# (stage whose output is written, stage that reads it back, attribute of Doc)
PAIRS = (
    ("extract", "clean", "extracted"),
    ("clean", "chunk", "cleaned"),
    ("chunk", "entities", "chunked"),
    ("entities", "resolve", "mentions"),
    ("resolve", "relate", "resolved"),
)


@pytest.fixture
async def store(pg_pool: asyncpg.Pool, pg_schema: str) -> TraditionalStore:
    await migrate(pg_pool, pg_schema)
    return TraditionalStore(pg_pool)


@pytest.fixture
def doc(corpus: Path) -> Doc:
    d = build_document(corpus_text(corpus, CORPUS_TEXTS[0]), "opinion.txt")
    d.extracted.text += "\u00a7 1983 \u2014 na\u00efve \U0001f4dc"  # non-ASCII survives
    return d


async def run_traditional(store: TraditionalStore, d: Doc) -> None:
    await register_documents(store.pool, [d.source])
    for stage, _reader, attr in PAIRS:
        await store.write_output(stage, d.source, getattr(d, attr))
    await store.write_output("relate", d.source, d.related)


async def test_every_stage_round_trips_exactly(store: TraditionalStore, doc: Doc) -> None:
    await register_documents(store.pool, [doc.source])
    assert await store.read_input("extract", doc.source) == doc.source
    for stage, reader, attr in PAIRS:
        produced = getattr(doc, attr)
        await store.write_output(stage, doc.source, produced)
        back = await store.read_input(reader, doc.source)
        assert type(back) is type(produced)
        assert back == produced, stage
    await store.write_output("relate", doc.source, doc.related)
    assert await store.pool.fetchval("SELECT status FROM documents") == "done"
    got = await table_rows(store.pool, "stored_relationships")
    assert len(got) == len(doc.related.relationships)


async def test_rewriting_a_stage_replaces_its_rows(store: TraditionalStore, doc: Doc) -> None:
    await run_traditional(store, doc)
    doc.chunked.chunks = doc.chunked.chunks[:3]
    await store.write_output("chunk", doc.source, doc.chunked)
    assert await store.read_input("entities", doc.source) == doc.chunked


async def test_missing_input_is_a_document_error(store: TraditionalStore, doc: Doc) -> None:
    await register_documents(store.pool, [doc.source])
    with pytest.raises(DocumentError) as info:
        await store.read_input("clean", doc.source)
    assert info.value.code == "missing_input"
    with pytest.raises(ValueError, match="unknown stage"):
        await store.read_input("nope", doc.source)


async def test_mark_status(store: TraditionalStore, doc: Doc) -> None:
    await register_documents(store.pool, [doc.source])
    await store.mark_status(doc.source, state.FAILED, "bad_input: encrypted")
    row = await store.pool.fetchrow("SELECT status, error FROM documents")
    assert tuple(row) == ("failed", "bad_input: encrypted")


async def test_both_paths_write_identical_rows(
    store: TraditionalStore,
    corpus: Path,
    redis: aioredis.Redis,
    keys: Keys,
    codec: Codec,
    settings: Settings,
) -> None:
    texts = [corpus_text(corpus, n) for n in CORPUS_TEXTS]
    # Two documents share canonical entities with different display names.
    docs = [build_document(texts[i], f"doc-{i}.txt") for i in range(2)]
    shared = {c.id for c in docs[0].resolved.canonicals} & {
        c.id for c in docs[1].resolved.canonicals
    }
    assert shared
    docs[1].resolved.canonicals = [
        msgspec.structs.replace(c, name=c.name.upper()) if c.id in shared else c
        for c in docs[1].resolved.canonicals
    ]
    for d in docs:
        await run_traditional(store, d)
    traditional = {t: await table_rows(store.pool, t) for t in rows.TABLE_ORDER}
    assert all(traditional[t] for t in rows.TABLE_ORDER)

    await store.pool.execute(
        "TRUNCATE documents, chunks, entity_mentions, canonical_entities, stored_relationships"
    )
    await queue(redis, keys, codec, [d.intent() for d in reversed(docs)])
    writer = WriteBehindWriter(redis, store.pool, keys, codec, settings, consumer="w")
    assert await writer.drain() == 2
    for t in rows.TABLE_ORDER:
        assert await table_rows(store.pool, t) == traditional[t], t
    names = await store.pool.fetch(
        "SELECT id, name FROM canonical_entities WHERE id = ANY($1)", list(shared)
    )
    assert all(r["name"].isupper() for r in names)  # the least name won, whatever the order


async def test_register_documents_reports_unchanged_and_keeps_finished(
    store: TraditionalStore, doc: Doc, corpus: Path
) -> None:
    other = build_document(corpus_text(corpus, CORPUS_TEXTS[1]), "other.txt")
    assert await register_documents(store.pool, [doc.source, other.source]) == {}
    await run_traditional(store, doc)
    prev = await register_documents(store.pool, [doc.source, other.source])
    assert prev == {doc.source.document_id: "done", other.source.document_id: "queued"}
    # Unchanged and done: left alone, so intake may skip it.
    assert (
        await store.pool.fetchval(
            "SELECT status FROM documents WHERE id = $1", doc.source.document_id
        )
        == "done"
    )
    # Changed content: re-queued, and not reported as unchanged.
    changed = build_document(doc.extracted.text + " amended", "opinion.txt", generation=2)
    assert await register_documents(store.pool, [changed.source]) == {}
    row = await store.pool.fetchrow(
        "SELECT status, generation, sha256 FROM documents WHERE id = $1", doc.source.document_id
    )
    assert tuple(row) == ("queued", 2, changed.source.sha256)
    # --reprocess re-queues even unchanged finished documents.
    await store.mark_status(changed.source, "done", None)
    await register_documents(store.pool, [changed.source], reprocess=True)
    assert (
        await store.pool.fetchval(
            "SELECT status FROM documents WHERE id = $1", doc.source.document_id
        )
        == "queued"
    )

    listed = await project_documents(store.pool, PROJECT)
    assert listed == sorted([changed.source, other.source], key=lambda s: s.source_key)
    assert await project_documents(store.pool, "other-project") == []
