"""The ``relationships`` view: exactly the edges relate stored before they became derived.

HAS_CHUNK, MENTIONS and REFERS_TO restate ``chunks.document_id``,
``entity_mentions.chunk_id`` and ``entity_mentions.canonical_id``; since schema
migration 6 the view derives them and only CO_OCCURS_WITH is stored. These tests
ingest a corpus sample, rebuild every document's ``Resolved`` from its rows, run the
stage-1 edge code on it (tests/support.py keeps it as it was) and compare, row by row,
with what the view serves. Derived ids are ``ids.derived_relationship_id``, not the
uuid5 that stage 1 stored (Postgres has no SHA-1 without pgcrypto): the comparison
maps one to the other and checks the mapping is one to one.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from accelerated import ids
from accelerated.batch_run import BatchOptions, run_batch
from accelerated.models import CanonicalEntity, Mention, Relationship, Resolved
from accelerated.settings import Settings
from accelerated.stages import relate
from persistence.rows import relationship_row
from persistence.schema import migrate
from tests.support import make_runtime, sample_corpus, stage1_derived_edges

PROJECT = "edges"
COLS = "id, project, document_id, type, source_type, source_id, target_type, target_id, weight"


def _u(v: Any) -> uuid.UUID:
    return uuid.UUID(str(v))


async def _resolved_from_rows(pool: asyncpg.Pool) -> list[Resolved]:
    """Each document's relate input, rebuilt from the stored chunks, mentions, canonicals."""
    chunks: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for r in await pool.fetch("SELECT id, document_id FROM chunks ORDER BY document_id, idx"):
        chunks[_u(r["document_id"])].append(_u(r["id"]))
    mentions: dict[uuid.UUID, list[Mention]] = defaultdict(list)
    for r in await pool.fetch("SELECT * FROM entity_mentions ORDER BY document_id, start_char"):
        mentions[_u(r["document_id"])].append(
            Mention(
                id=_u(r["id"]),
                document_id=_u(r["document_id"]),
                chunk_id=_u(r["chunk_id"]),
                type=r["type"],
                text=r["text"],
                normalized=r["normalized"],
                start=r["start_char"],
                end=r["end_char"],
                canonical_id=_u(r["canonical_id"]) if r["canonical_id"] else None,
                role=r["role"],
            )
        )
    canonicals = [
        CanonicalEntity(
            id=_u(r["id"]), project=r["project"], type=r["type"], key=r["key"], name=r["name"]
        )
        for r in await pool.fetch("SELECT * FROM canonical_entities")
    ]
    return [
        Resolved(
            document_id=d,
            chunk_ids=chunks[d],
            mentions=mentions[d],
            canonicals=canonicals,
        )
        for d in sorted(set(chunks) | set(mentions))
    ]


async def _fetch(pool: asyncpg.Pool, sql: str) -> set[tuple[Any, ...]]:
    return {
        (_u(r[0]), r[1], _u(r[2]), r[3], r[4], _u(r[5]), r[6], _u(r[7]), r[8])
        for r in await pool.fetch(sql)
    }


@pytest.mark.parametrize("accelerated", [True, False], ids=["accelerated", "traditional"])
async def test_view_yields_the_edges_relate_stored(
    accelerated: bool,
    corpus: Path,
    tmp_path: Path,
    settings: Settings,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
) -> None:
    sample_corpus(corpus, tmp_path / "in", n=24)
    await migrate(pg_pool, settings.pg_schema)
    rt = make_runtime(settings, pg_pool, redis, accelerated=accelerated)
    report = await run_batch(rt, BatchOptions(PROJECT, [tmp_path / "in"]))
    assert report.done >= 15
    docs = await _resolved_from_rows(pg_pool)
    done = {_u(r[0]) for r in await pg_pool.fetch("SELECT id FROM documents WHERE status='done'")}
    assert {d.document_id for d in docs} <= done  # only finished documents have rows

    old: list[Relationship] = [e for d in docs for e in stage1_derived_edges(PROJECT, d)]
    new_id = {e.id: ids.derived_relationship_id(e.type, e.source_id, e.target_id) for e in old}
    assert len(set(new_id.values())) == len(new_id) == len(old)  # one to one
    want_derived = {relationship_row(e, new_id[e.id]) for e in old}
    got_derived = await _fetch(
        pg_pool, f"SELECT {COLS} FROM relationships WHERE type <> 'CO_OCCURS_WITH'"
    )
    assert {r[3] for r in got_derived} == {"HAS_CHUNK", "MENTIONS", "REFERS_TO"}
    assert len(got_derived) == len(want_derived) > 1000
    assert got_derived == want_derived

    # The stored edges are relate's output as before (uuid5 ids), and only those.
    want_stored = {
        relationship_row(e, e.id) for d in docs for e in relate.relationships(PROJECT, d)
    }
    stored = await _fetch(pg_pool, f"SELECT {COLS} FROM stored_relationships")
    assert stored == want_stored and len(stored) > 100
    assert (
        await _fetch(pg_pool, f"SELECT {COLS} FROM relationships WHERE type = 'CO_OCCURS_WITH'")
        == stored
    )
    total = await pg_pool.fetchval("SELECT count(*) FROM relationships")
    assert total == len(stored) + len(want_derived) == report.relationships


async def test_walks_through_the_view_use_indexes(
    settings: Settings, pg_pool: asyncpg.Pool
) -> None:
    """By source, by target and by document, every branch of the view reads an index."""
    await migrate(pg_pool, settings.pg_schema)
    some = uuid.uuid4()
    async with pg_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")  # tables this small: force it
        for pred, want in (
            (
                "source_id = $1",
                {
                    "chunks_document_idx",
                    "entity_mentions_chunk_idx",
                    "entity_mentions_pkey",
                    "stored_relationships_source_idx",
                },
            ),
            (
                "target_id = $1",
                {
                    "chunks_pkey",
                    "entity_mentions_pkey",
                    "entity_mentions_canonical_idx",
                    "stored_relationships_target_idx",
                },
            ),
            (
                "document_id = $1",
                {
                    "chunks_document_idx",
                    "entity_mentions_document_idx",
                    "stored_relationships_document_idx",
                },
            ),
        ):
            plan = "\n".join(
                r[0]
                for r in await conn.fetch(f"EXPLAIN SELECT * FROM relationships WHERE {pred}", some)
            )
            assert "Seq Scan" not in plan, plan
            assert all(idx in plan for idx in want), plan
        # A type filter leaves out the branches of the other kinds.
        plan = "\n".join(
            r[0]
            for r in await conn.fetch(
                "EXPLAIN SELECT * FROM relationships WHERE source_id = $1 AND type = 'MENTIONS'",
                some,
            )
        )
        assert "entity_mentions_chunk_idx" in plan and "chunks" not in plan, plan
