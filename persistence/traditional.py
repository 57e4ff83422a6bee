"""The traditional, database-centric path: each stage reads its input back from Postgres
and writes its output synchronously before the next stage may run.

It is the baseline the accelerated path is measured against, so it is written the way a
careful database-centric pipeline would be (one query per stage read, one batched
statement per table per write, one transaction per stage) and not made slow on purpose.
Rows come from :mod:`persistence.rows`, so both paths write identical rows.

Lists read back have a defined order: chunks by index, mentions by span
(start, end, type, id), canonical entities by (type, key), with byte-wise ("C")
collation so it matches Python's ``sorted``. A stage whose output is in that order reads
back equal (``==``) to what it produced.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Final

import asyncpg  # type: ignore[import-untyped]
import msgspec

from accelerated import pipeline
from accelerated.boundary import translated
from accelerated.errors import DocumentError
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
    Resolved,
    SourceRef,
    Structured,
)
from persistence import rows

Record = SourceRef | Extracted | Cleaned | Chunked | Mentions | Resolved | Related | Structured

# Columns each stage owns in the documents row (the rest belong to intake or others).
_DOC_COLUMNS: Final = {
    "ocr": ("format", "method", "page_count", "raw_pages", "metadata", "raw_text"),
    "clean": ("category", "pages", "text"),
}

_pages = msgspec.json.Decoder(list[Page])
_meta = msgspec.json.Decoder(dict[str, Any])
# clean rewrites the text the fields were read from: structure's part goes with it (and
# comes back when structure runs, or stays away when it is off), as on the other path.
_DROP_STRUCTURED: Final = "metadata = documents.metadata - " + " - ".join(
    f"'{k}'" for k in rows.STRUCTURED_KEYS
)


def _extract_metadata(text: str | None) -> dict[str, str]:
    """Extract's part of ``documents.metadata`` (structure's nested part left out)."""
    return {
        k: v
        for k, v in _meta.decode(text or "{}").items()
        if isinstance(v, str) and k not in rows.STRUCTURED_KEYS
    }


_MentionRow = tuple[uuid.UUID, uuid.UUID, str, str, str, int, int, uuid.UUID | None, str | None]
_mentions = msgspec.json.Decoder(list[_MentionRow])
_canonicals = msgspec.json.Decoder(list[tuple[uuid.UUID, str, str, str, str]])

_CHUNK_IDS = "ARRAY(SELECT id FROM chunks WHERE document_id = $1 ORDER BY idx)"
_MENTIONS = """(SELECT coalesce(json_agg(json_build_array(id, chunk_id, type, text, normalized,
        start_char, end_char, canonical_id, role)
    ORDER BY start_char, end_char, type COLLATE "C", id), '[]')::text
    FROM entity_mentions WHERE document_id = $1)"""
_CANONICALS = """(SELECT coalesce(json_agg(json_build_array(id, project, type, key, name)
    ORDER BY type COLLATE "C", key COLLATE "C"), '[]')::text
    FROM canonical_entities WHERE id IN (
        SELECT canonical_id FROM entity_mentions WHERE document_id = $1))"""


class TraditionalStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # Reading ----------------------------------------------------------------------------
    @translated("postgres")
    async def read_input(self, stage: str, source: SourceRef) -> Record:
        """The stage's input record, rebuilt from Postgres with one query."""
        doc = source.document_id
        key = pipeline.stage(stage).input_key  # which stage output to rebuild
        if key is None:
            return source
        if key == "ocr":
            r = await self.pool.fetchrow(
                "SELECT sha256, format, method, raw_text, raw_pages::text, metadata::text "
                "FROM documents WHERE id = $1",
                doc,
            )
            if r is None or r["raw_text"] is None:
                raise _missing(stage, source)
            return Extracted(
                document_id=doc,
                sha256=r["sha256"],
                format=r["format"],
                method=r["method"],
                text=r["raw_text"],
                pages=_pages.decode(r["raw_pages"] or "[]"),
                # Not a column: extract marks a scanned document by its method.
                needs_ocr=r["method"] == "needs_ocr",
                metadata=_extract_metadata(r["metadata"]),
            )
        if key == "clean":
            r = await self.pool.fetchrow(
                "SELECT text, pages::text, category FROM documents WHERE id = $1", doc
            )
            if r is None or r["text"] is None:
                raise _missing(stage, source)
            return Cleaned(
                document_id=doc,
                text=r["text"],
                pages=_pages.decode(r["pages"] or "[]"),
                category=r["category"],
            )
        if key == "chunks":
            records = await self.pool.fetch(
                "SELECT id, idx, text, start_char, end_char, page_start, page_end "
                "FROM chunks WHERE document_id = $1 ORDER BY idx",
                doc,
            )
            return Chunked(
                document_id=doc,
                chunks=[
                    Chunk(
                        id=_uuid(c["id"]),
                        document_id=doc,
                        index=c["idx"],
                        text=c["text"],
                        start=c["start_char"],
                        end=c["end_char"],
                        page_start=c["page_start"],
                        page_end=c["page_end"],
                    )
                    for c in records
                ],
            )
        if key == "entities":
            r = await self.pool.fetchrow(f"SELECT {_CHUNK_IDS} AS c, {_MENTIONS} AS m", doc)
            assert r is not None
            return Mentions(
                document_id=doc,
                chunk_ids=[_uuid(c) for c in r["c"]],
                mentions=_to_mentions(doc, r["m"]),
            )
        if key == "canonical":
            r = await self.pool.fetchrow(
                f"SELECT {_CHUNK_IDS} AS c, {_MENTIONS} AS m, {_CANONICALS} AS e", doc
            )
            assert r is not None
            return Resolved(
                document_id=doc,
                chunk_ids=[_uuid(c) for c in r["c"]],
                mentions=_to_mentions(doc, r["m"]),
                canonicals=[
                    CanonicalEntity(id=i, project=p, type=t, key=k, name=n)
                    for i, p, t, k, n in _canonicals.decode(r["e"])
                ],
            )
        raise ValueError(f"no reader for output {key!r} of stage {stage!r}")

    # Writing ----------------------------------------------------------------------------
    @translated("postgres")
    async def write_output(self, stage: str, source: SourceRef, output: Any) -> None:
        """Write the stage's rows in one transaction, one batched statement per table."""
        doc = source.document_id
        project = source.project
        key = pipeline.stage(stage).output_key
        async with self.pool.acquire() as conn, conn.transaction():
            if key == "ocr":
                row = rows.document_row(source, output, None, "running", None)
                await _upsert_document(conn, row, _DOC_COLUMNS[key])
            elif key == "clean":
                row = rows.document_row(source, None, output, "running", None)
                await _upsert_document(conn, row, _DOC_COLUMNS[key], _DROP_STRUCTURED)
            elif key == "structured":
                part = rows.structured_metadata(output)
                await conn.execute(
                    "UPDATE documents SET metadata = coalesce(metadata, '{}'::jsonb) - $2::text[]"
                    " || $3::jsonb, updated_at = now() WHERE id = $1",
                    doc,
                    list(rows.STRUCTURED_KEYS),
                    msgspec.json.encode(part).decode(),
                )
            elif key == "chunks":
                await conn.execute("DELETE FROM chunks WHERE document_id = $1", doc)
                await _insert(conn, "chunks", rows.chunk_rows(project, output))
            elif key == "entities":
                await conn.execute("DELETE FROM entity_mentions WHERE document_id = $1", doc)
                await _insert(conn, "entity_mentions", rows.mention_rows(project, output.mentions))
            elif key == "canonical":
                canon = rows.least_names(list(rows.canonical_rows(output.canonicals)))
                await _insert(
                    conn,
                    "canonical_entities",
                    canon,
                    "ON CONFLICT (id) DO UPDATE SET name = LEAST(t.name, EXCLUDED.name) "
                    "WHERE EXCLUDED.name < t.name",
                )
                # A mention with no identity (empty key) keeps canonical_id NULL.
                links = [
                    (str(m.id), str(m.canonical_id))
                    for m in output.mentions
                    if m.canonical_id is not None
                ]
                if links:
                    await conn.execute(
                        "UPDATE entity_mentions m SET canonical_id = u.cid "
                        "FROM unnest($1::uuid[], $2::uuid[]) AS u(id, cid) "
                        "WHERE m.id = u.id AND m.canonical_id IS DISTINCT FROM u.cid",
                        *zip(*links, strict=True),
                    )
            elif key == "relations":
                await conn.execute("DELETE FROM stored_relationships WHERE document_id = $1", doc)
                await _insert(conn, "stored_relationships", rows.relationship_rows(output))
                await conn.execute(
                    "UPDATE documents SET status = 'done', error = NULL, updated_at = now() "
                    "WHERE id = $1",
                    doc,
                )
            else:
                raise ValueError(f"no writer for output {key!r} of stage {stage!r}")

    @translated("postgres")
    async def mark_status(self, source: SourceRef, status: str, error: str | None) -> None:
        await self.pool.execute(
            "UPDATE documents SET status = $2, error = $3, updated_at = now() WHERE id = $1",
            source.document_id,
            status,
            error,
        )


def _uuid(value: Any) -> uuid.UUID:
    """asyncpg returns its own UUID subclass; records compare equal only to uuid.UUID."""
    return value if type(value) is uuid.UUID else uuid.UUID(str(value))


def _to_mentions(doc: uuid.UUID, text: str) -> list[Mention]:
    return [
        Mention(
            id=i,
            document_id=doc,
            chunk_id=c,
            type=t,
            text=tx,
            normalized=n,
            start=s,
            end=e,
            canonical_id=cid,
            role=role,
        )
        for i, c, t, tx, n, s, e, cid, role in _mentions.decode(text)
    ]


def _missing(stage: str, source: SourceRef) -> DocumentError:
    return DocumentError(
        f"document {source.document_id} has no stored input for stage {stage!r} "
        "(the previous stage did not write it)",
        code="missing_input",
    )


async def _insert(
    conn: asyncpg.Connection, table: str, records: Sequence[Sequence[Any]], conflict: str = ""
) -> None:
    """One INSERT over column arrays (unnest): one round trip whatever the row count."""
    if not records:
        return
    cols = rows.COLUMNS[table]
    arrays = ", ".join(f"${i + 1}::{ty}[]" for i, ty in enumerate(rows.SQL_TYPES[table]))
    await conn.execute(
        f"INSERT INTO {table} AS t ({', '.join(cols)}) SELECT * FROM unnest({arrays}) {conflict}",
        *(list(c) for c in zip(*records, strict=True)),
    )


async def _upsert_document(
    conn: asyncpg.Connection, row: Sequence[Any], owned: tuple[str, ...], extra: str = ""
) -> None:
    """Insert the row if intake did not; otherwise set only the stage's own columns
    (and ``extra``, one more ``SET`` item)."""
    cols = rows.COLUMNS["documents"]
    params = ", ".join(f"${i + 1}" for i in range(len(cols)))
    sets = ", ".join([*(f"{c} = EXCLUDED.{c}" for c in owned), *([extra] if extra else [])])
    await conn.execute(
        f"INSERT INTO documents ({', '.join(cols)}) VALUES ({params}) "
        f"ON CONFLICT (id) DO UPDATE SET {sets}, updated_at = now()",
        *row,
    )
