"""Migrations: idempotent, safe when workers start at once, and matching rows.COLUMNS."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import msgspec
import pytest

from accelerated import ids
from accelerated.boundary import map_driver_errors
from accelerated.errors import BackendRejected, BackendUnavailable
from accelerated.models import Mention, Relationship, Resolved
from accelerated.settings import Settings
from persistence import schema as schema_module
from persistence.pg import create_pool, is_transient
from persistence.rows import TABLES, relationship_row
from persistence.schema import MIGRATIONS, migrate
from tests.support import stage1_derived_edges


async def _snapshot(pool: asyncpg.Pool, schema: str) -> list[tuple[str, str, str]]:
    rows = await pool.fetch(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = $1 ORDER BY table_name, ordinal_position",
        schema,
    )
    return [(r[0], r[1], r[2]) for r in rows]


async def test_migrate_twice_is_a_noop(pg_pool: asyncpg.Pool, pg_schema: str) -> None:
    await migrate(pg_pool, pg_schema)
    first = await _snapshot(pg_pool, pg_schema)
    versions = await pg_pool.fetch(
        f'SELECT version, applied_at FROM "{pg_schema}".schema_migrations'
    )
    await migrate(pg_pool, pg_schema)
    assert await _snapshot(pg_pool, pg_schema) == first
    again = await pg_pool.fetch(f'SELECT version, applied_at FROM "{pg_schema}".schema_migrations')
    assert again == versions
    assert [r["version"] for r in versions] == [m[0] for m in MIGRATIONS]


async def test_columns_match_row_mapping(pg_pool: asyncpg.Pool, pg_schema: str) -> None:
    await migrate(pg_pool, pg_schema)
    cols = await _snapshot(pg_pool, pg_schema)
    for table, spec in TABLES.items():
        db = [(c, t) for tb, c, t in cols if tb == table and c not in ("created_at", "updated_at")]
        want = list(spec)
        assert db == want, table
    pk = await pg_pool.fetch(
        "SELECT tc.table_name, kcu.column_name FROM information_schema.table_constraints tc "
        "JOIN information_schema.key_column_usage kcu USING (constraint_schema, constraint_name) "
        "WHERE tc.table_schema = $1 AND tc.constraint_type = 'PRIMARY KEY'",
        pg_schema,
    )
    keyed = {r[0]: r[1] for r in pk}
    assert all(keyed[t] == "id" for t in TABLES)
    assert keyed["wb_applied"] == "intent_id"


async def test_concurrent_migrate_is_safe(pg_schema: str) -> None:
    """Eight workers migrating a fresh schema at once: no error, one set of versions."""
    from tests.conftest import DATABASE_URL

    schema = f"{pg_schema}_c"
    pool = await asyncpg.create_pool(DATABASE_URL, min_size=8, max_size=8)
    try:
        await asyncio.gather(*(migrate(pool, schema) for _ in range(8)))
        count = await pool.fetchval(f'SELECT count(*) FROM "{schema}".schema_migrations')
        assert count == len(MIGRATIONS)
        assert await pool.fetchval(f'SELECT count(*) FROM "{schema}".documents') == 0
    finally:
        await pool.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await pool.close()


async def test_bad_schema_name_is_rejected(pg_pool: asyncpg.Pool) -> None:
    with pytest.raises(ValueError, match="identifier"):
        await migrate(pg_pool, 'x"; DROP TABLE y; --')


async def test_create_pool_uses_settings(settings: Settings, pg_schema: str) -> None:
    pool = await create_pool(settings.model_copy(update={"pg_statement_cache_size": 0}))
    try:
        assert await pool.fetchval("SHOW search_path") == pg_schema
    finally:
        await pool.close()


async def test_create_pool_unreachable_is_backend_unavailable(settings: Settings) -> None:
    bad = settings.model_copy(update={"database_url": "postgresql://postgres:secret@127.0.0.1:1/x"})
    with pytest.raises(BackendUnavailable, match=r"127\.0\.0\.1:1") as info:
        await create_pool(bad)
    assert "secret" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_translate_maps_reachability_errors_only(pg_pool: asyncpg.Pool) -> None:
    from tests.conftest import DATABASE_URL

    closed = await asyncpg.create_pool(DATABASE_URL, min_size=0, max_size=1)
    await closed.close()
    with pytest.raises(asyncpg.InterfaceError) as gone:
        await closed.fetchval("SELECT 1")
    with pytest.raises(BackendUnavailable), map_driver_errors("postgres"):
        raise gone.value
    assert is_transient(gone.value)
    with pytest.raises(asyncpg.PostgresError) as bad:
        await pg_pool.fetchval("SELECT 1/0")
    with pytest.raises(BackendRejected), map_driver_errors("postgres"):
        raise bad.value
    assert not is_transient(bad.value)  # SQLSTATE 22012: the data, not the server


async def test_migration_6_serves_the_edges_it_deletes(
    pg_pool: asyncpg.Pool, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A schema at version 5 stored every edge; after 6 the view serves the same edges
    (derived ids for the three kinds it derives) and only CO_OCCURS_WITH stays stored."""
    monkeypatch.setattr(schema_module, "MIGRATIONS", MIGRATIONS[:5])
    await migrate(pg_pool, pg_schema)
    monkeypatch.undo()
    doc = uuid.uuid4()
    c0, c1 = ids.chunk_id(doc, 0), ids.chunk_id(doc, 1)
    k0, k1 = ids.canonical_id("p", "PARTY", "a"), ids.canonical_id("p", "PARTY", "b")
    mentions = [
        Mention(
            id=uuid.uuid4(),
            document_id=doc,
            chunk_id=c0,
            type="PARTY",
            text="A",
            normalized="a",
            start=0,
            end=1,
            canonical_id=k0,
        ),
        Mention(
            id=uuid.uuid4(),
            document_id=doc,
            chunk_id=c0,
            type="PARTY",
            text="B",
            normalized="b",
            start=2,
            end=3,
            canonical_id=k1,
        ),
        Mention(
            id=uuid.uuid4(),
            document_id=doc,
            chunk_id=c0,
            type="PARTY",
            text="The",
            normalized="",
            start=4,
            end=7,
        ),  # no canonical: no REFERS_TO edge
        Mention(
            id=uuid.uuid4(),
            document_id=doc,
            chunk_id=c1,
            type="PARTY",
            text="A",
            normalized="a",
            start=9,
            end=10,
            canonical_id=k0,
        ),
    ]
    resolved = Resolved(
        document_id=doc, chunk_ids=[c0, c1, ids.chunk_id(doc, 2)], mentions=mentions, canonicals=[]
    )
    old = stage1_derived_edges("p", resolved)
    co = Relationship(
        id=ids.relationship_id("CO_OCCURS_WITH", k0, k1, doc),
        project="p",
        document_id=doc,
        type="CO_OCCURS_WITH",
        source_type="CANONICAL",
        source_id=k0,
        target_type="CANONICAL",
        target_id=k1,
        weight=1.0,
    )
    await pg_pool.executemany(
        "INSERT INTO chunks VALUES ($1, $2, 'p', $3, '', 0, 0, 1, 1)",
        [(c, doc, i) for i, c in enumerate(resolved.chunk_ids)],
    )
    await pg_pool.executemany(
        "INSERT INTO entity_mentions (id, document_id, chunk_id, project, type, text, "
        "normalized, start_char, end_char, canonical_id) VALUES ($1,$2,$3,'p',$4,$5,$6,$7,$8,$9)",
        [
            (m.id, doc, m.chunk_id, m.type, m.text, m.normalized, m.start, m.end, m.canonical_id)
            for m in mentions
        ],
    )
    await pg_pool.executemany(
        "INSERT INTO relationships VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        [relationship_row(r) for r in [*old, co]],
    )
    assert {r.type for r in old} == {"HAS_CHUNK", "MENTIONS", "REFERS_TO"} and len(old) == 10

    await migrate(pg_pool, pg_schema)  # 6: the table becomes stored_relationships
    stored = await pg_pool.fetch("SELECT * FROM stored_relationships")
    assert [tuple(r) for r in stored] == [relationship_row(co)]
    view = {tuple(r) for r in await pg_pool.fetch("SELECT * FROM relationships")}
    remapped = [
        msgspec.structs.replace(r, id=ids.derived_relationship_id(r.type, r.source_id, r.target_id))
        for r in old
    ]
    assert view == {relationship_row(r) for r in [*remapped, co]}
    kinds = await pg_pool.fetchval(
        "SELECT count(*) FROM relationships WHERE document_id = $1 AND type = 'REFERS_TO'", doc
    )
    assert kinds == 3
