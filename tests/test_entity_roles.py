"""Mention roles (a party's side; a date's, a docket number's or a judge's field): stored
with each mention, aggregated per canonical entity by a view."""

from __future__ import annotations

import uuid

import asyncpg

from accelerated.models import Mention
from persistence import rows
from persistence.schema import migrate

PROJECT = "roles"
CANON = uuid.UUID("00000000-0000-4000-8000-0000000000e1")


def _mention(
    doc: int,
    start: int,
    role: str | None,
    etype: str = "PARTY",
    canon: uuid.UUID = CANON,
) -> Mention:
    doc_id = uuid.UUID(int=doc)
    return Mention(
        id=uuid.uuid5(doc_id, f"{etype}:{start}"),
        document_id=doc_id,
        chunk_id=uuid.UUID(int=1000 + doc),
        type=etype,
        text="Acme Co.",
        normalized="acme co.",
        start=start,
        end=start + 8,
        canonical_id=canon,
        role=role,
    )


async def _insert(pool: asyncpg.Pool, schema: str, mentions: list[Mention]) -> None:
    cols = rows.COLUMNS["entity_mentions"]
    marks = ", ".join(f"${i + 1}" for i in range(len(cols)))
    await pool.executemany(
        f'INSERT INTO "{schema}".entity_mentions ({", ".join(cols)}) VALUES ({marks})',
        rows.mention_rows(PROJECT, mentions),
    )


async def _roles(pool: asyncpg.Pool, schema: str, canon: uuid.UUID = CANON) -> list[str] | None:
    value = await pool.fetchval(
        f'SELECT roles FROM "{schema}".canonical_entity_roles WHERE id = $1', canon
    )
    return None if value is None else list(value)


async def test_roles_are_stored_and_aggregated_in_any_order(
    pg_pool: asyncpg.Pool, pg_schema: str
) -> None:
    await migrate(pg_pool, pg_schema)
    first = [_mention(1, 0, "defendant"), _mention(1, 40, None)]
    second = [_mention(2, 0, "appellee"), _mention(2, 90, "defendant")]
    await _insert(pg_pool, pg_schema, second)
    await _insert(pg_pool, pg_schema, first)
    stored = await pg_pool.fetch(
        f'SELECT start_char, role FROM "{pg_schema}".entity_mentions '
        "WHERE document_id = $1 ORDER BY start_char",
        uuid.UUID(int=1),
    )
    assert [(r[0], r[1]) for r in stored] == [(0, "defendant"), (40, None)]
    assert await _roles(pg_pool, pg_schema) == ["appellee", "defendant"]
    # Re-processing a document that no longer states a role: the aggregate follows.
    await pg_pool.execute(
        f'DELETE FROM "{pg_schema}".entity_mentions WHERE document_id = $1', uuid.UUID(int=2)
    )
    assert await _roles(pg_pool, pg_schema) == ["defendant"]


async def test_field_roles_of_dates_dockets_and_judges_take_the_same_path(
    pg_pool: asyncpg.Pool, pg_schema: str
) -> None:
    """The rules backend's field roles (a judge's "assigned", a date's "filed", a docket
    number's "own") are stored and aggregated like a party's: no path filters by type."""
    await migrate(pg_pool, pg_schema)
    judge = uuid.UUID("00000000-0000-4000-8000-0000000000e2")
    date = uuid.UUID("00000000-0000-4000-8000-0000000000e3")
    await _insert(
        pg_pool,
        pg_schema,
        [
            _mention(3, 0, "assigned", "JUDGE", judge),
            _mention(3, 50, None, "JUDGE", judge),  # the same judge in an entry's text
            _mention(4, 0, "referred", "JUDGE", judge),
            _mention(3, 90, "filed", "DATE", date),
            _mention(3, 120, "entered", "DATE", date),
            _mention(3, 150, "own", "DOCKET_NUMBER"),
        ],
    )
    stored = await pg_pool.fetch(
        f'SELECT type, start_char, role FROM "{pg_schema}".entity_mentions '
        "WHERE document_id = $1 ORDER BY start_char",
        uuid.UUID(int=3),
    )
    assert [(r[0], r[1], r[2]) for r in stored] == [
        ("JUDGE", 0, "assigned"),
        ("JUDGE", 50, None),
        ("DATE", 90, "filed"),
        ("DATE", 120, "entered"),
        ("DOCKET_NUMBER", 150, "own"),
    ]
    assert await _roles(pg_pool, pg_schema, judge) == ["assigned", "referred"]
    assert await _roles(pg_pool, pg_schema, date) == ["entered", "filed"]
    comment = await pg_pool.fetchval(
        "SELECT col_description(c.oid, a.attnum) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid "
        "WHERE n.nspname = $1 AND c.relname = 'entity_mentions' AND a.attname = 'role'",
        pg_schema,
    )
    assert "lower_court" in comment and "contract party" in comment
