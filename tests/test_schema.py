"""Migrations: idempotent, safe when workers start at once, and matching rows.COLUMNS."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from accelerated.boundary import map_driver_errors
from accelerated.errors import BackendRejected, BackendUnavailable
from accelerated.settings import Settings
from persistence.pg import create_pool, is_transient
from persistence.rows import TABLES
from persistence.schema import MIGRATIONS, migrate


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
