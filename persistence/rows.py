"""Records -> row tuples, in one column order per table, for both persistence paths.

The write-behind writer and the traditional store both build rows here, so the same
records always give the same rows. Values are JSON-encodable because write-behind rows
travel inside a Redis stream entry: JSON columns are msgspec-encoded text, and uuids
are ``uuid.UUID`` in the bulk per-document rows (chunks, mentions, relationships:
msgspec and asyncpg take them natively, and ``str()`` on hundreds of thousands of ids
was a measurable share of the pipeline's CPU) but strings in the rows that are merged
across documents (documents, canonical entities), whose ids are compared as keys. A
decoded intent carries strings everywhere; asyncpg accepts both forms.

Postgres text and jsonb cannot hold NUL, so NUL characters become U+FFFD here (the
only place a stored value may differ from the record).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from accelerated.models import (
    CanonicalEntity,
    Chunked,
    Cleaned,
    Extracted,
    Mention,
    Related,
    Relationship,
    SourceRef,
    Structured,
)

Row = tuple[Any, ...]

# (column, SQL type) per table, in row order. The DDL lives in persistence.schema and a
# test checks that the database's columns match these.
TABLES: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "documents": (
        ("id", "uuid"),
        ("project", "text"),
        ("source", "text"),
        ("source_key", "text"),
        ("sha256", "text"),
        ("format", "text"),
        ("size_bytes", "bigint"),
        ("status", "text"),
        ("error", "text"),
        ("category", "text"),
        ("method", "text"),
        ("page_count", "integer"),
        ("raw_pages", "jsonb"),
        ("pages", "jsonb"),
        ("metadata", "jsonb"),
        ("raw_text", "text"),
        ("text", "text"),
        ("generation", "integer"),
    ),
    "chunks": (
        ("id", "uuid"),
        ("document_id", "uuid"),
        ("project", "text"),
        ("idx", "integer"),
        ("text", "text"),
        ("start_char", "integer"),
        ("end_char", "integer"),
        ("page_start", "integer"),
        ("page_end", "integer"),
    ),
    "entity_mentions": (
        ("id", "uuid"),
        ("document_id", "uuid"),
        ("chunk_id", "uuid"),
        ("project", "text"),
        ("type", "text"),
        ("text", "text"),
        ("normalized", "text"),
        ("start_char", "integer"),
        ("end_char", "integer"),
        ("canonical_id", "uuid"),
        ("role", "text"),
    ),
    "canonical_entities": (
        ("id", "uuid"),
        ("project", "text"),
        ("type", "text"),
        ("key", "text"),
        ("name", "text"),
    ),
    "stored_relationships": (
        ("id", "uuid"),
        ("project", "text"),
        ("document_id", "uuid"),
        ("type", "text"),
        ("source_type", "text"),
        ("source_id", "uuid"),
        ("target_type", "text"),
        ("target_id", "uuid"),
        ("weight", "double precision"),
    ),
}
COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    t: tuple(c for c, _ in cols) for t, cols in TABLES.items()
}
SQL_TYPES: Final[dict[str, tuple[str, ...]]] = {
    t: tuple(ty for _, ty in cols) for t, cols in TABLES.items()
}
# Tables whose rows belong to one document: an intent replaces the document's rows there.
PER_DOCUMENT: Final = ("chunks", "entity_mentions", "stored_relationships")
# Apply order: parents first, so a reader never sees a mention before its document.
TABLE_ORDER: Final = (
    "documents",
    "chunks",
    "canonical_entities",
    "entity_mentions",
    "stored_relationships",
)

_encoder = msgspec.json.Encoder()


def _s(value: str | None) -> str | None:
    return value.replace("\x00", "\ufffd") if value is not None and "\x00" in value else value


def _st(value: str) -> str:
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _json(obj: Any) -> str:
    return _encoder.encode(obj).decode()


# documents.metadata keys the ``structure`` stage owns (the rest are extract's).
STRUCTURED_KEYS: Final = ("structured", "structured_error")


def _clean_json(value: Any) -> Any:
    """Builtins with NUL replaced in every string (jsonb cannot hold \u0000)."""
    if isinstance(value, str):
        return _st(value)
    if isinstance(value, dict):
        return {_st(k): _clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_json(v) for v in value]
    return value


def structured_metadata(structured: Structured) -> dict[str, Any]:
    """The ``structure`` stage's part of ``documents.metadata``: the fields (with the
    extractor's version), or the error that left none."""
    if structured.fields is None:
        return {"structured_error": _st(structured.error or "no fields")}
    fields = msgspec.to_builtins(structured.fields)
    fields["extractor"] = structured.extractor
    return {"structured": _clean_json(fields)}


def document_row(
    source: SourceRef,
    extracted: Extracted | None,
    cleaned: Cleaned | None,
    status: str,
    error: str | None,
    structured: Structured | None = None,
) -> Row:
    """The whole ``documents`` row: raw_* from extract, text/pages/category from clean,
    and ``metadata`` from extract plus, with ``STRUCTURED_EXTRACTION``, structure's part."""
    metadata: dict[str, Any] | None = (
        {_st(k): _st(v) for k, v in extracted.metadata.items()} if extracted is not None else None
    )
    if structured is not None:
        metadata = {**(metadata or {}), **structured_metadata(structured)}
    return (
        str(source.document_id),
        source.project,
        _s(source.source),
        _s(source.source_key),
        source.sha256,
        extracted.format if extracted is not None else source.format,
        source.size,
        status,
        _s(error),
        cleaned.category if cleaned is not None else None,
        extracted.method if extracted is not None else None,
        len(extracted.pages) if extracted is not None else None,
        _json(extracted.pages) if extracted is not None else None,
        _json(cleaned.pages) if cleaned is not None else None,
        _json(metadata) if metadata is not None else None,
        _s(extracted.text) if extracted is not None else None,
        _s(cleaned.text) if cleaned is not None else None,
        source.generation,
    )


def chunk_rows(project: str, chunked: Chunked) -> list[Row]:
    return [
        (
            c.id,
            c.document_id,
            project,
            c.index,
            _s(c.text),
            c.start,
            c.end,
            c.page_start,
            c.page_end,
        )
        for c in chunked.chunks
    ]


def mention_rows(project: str, mentions: list[Mention]) -> list[Row]:
    return [
        (
            m.id,
            m.document_id,
            m.chunk_id,
            project,
            m.type,
            _s(m.text),
            _s(m.normalized),
            m.start,
            m.end,
            m.canonical_id,
            m.role,
        )
        for m in mentions
    ]


def canonical_rows(entities: list[CanonicalEntity]) -> list[Row]:
    return [(str(e.id), e.project, e.type, _s(e.key), _s(e.name)) for e in entities]


def least_names(canonicals: list[Sequence[Any]]) -> list[Sequence[Any]]:
    """One row per canonical id with the least name (an upsert may touch a row once)."""
    least: dict[Any, Sequence[Any]] = {}
    for r in canonicals:
        seen = least.get(r[0])
        if seen is None or r[4] < seen[4]:
            least[r[0]] = r
    return list(least.values())


def relationship_row(r: Relationship, rid: uuid.UUID | None = None) -> Row:
    """One edge as a ``stored_relationships`` / ``relationships`` row (``rid``: another id,
    as the view gives a derived edge)."""
    return (
        r.id if rid is None else rid,
        r.project,
        r.document_id,
        r.type,
        r.source_type,
        r.source_id,
        r.target_type,
        r.target_id,
        float(r.weight),
    )


def relationship_rows(related: Related) -> list[Row]:
    return [relationship_row(r) for r in related.relationships]
