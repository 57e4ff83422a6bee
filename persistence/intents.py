"""Persistence intents: one document's full row set, queued on the write-behind stream.

The engine adds the intent to the same MULTI as the stage output (``queue_intent``
takes the caller's pipeline), so nothing Redis acknowledged lives only in memory.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Final

import msgspec
from redis.asyncio.client import Pipeline

from accelerated.codec import Codec
from accelerated.keys import Keys
from accelerated.models import Chunked, Cleaned, Extracted, Related, Resolved, SourceRef
from persistence import rows

FIELD: Final = b"i"  # stream entry field holding the codec-encoded intent


class Intent(msgspec.Struct, kw_only=True):
    """Rows per table in ``rows.COLUMNS`` order, JSON-safe (uuids as strings).

    ``intent_id`` is a random uuid4 made when queued, not a stream id: stream ids start
    over when Redis restarts, and ``wb_applied`` must never confuse two intents.
    """

    intent_id: uuid.UUID
    document_id: uuid.UUID
    project: str
    generation: int
    status: str  # final document status: done | needs_ocr | failed ("" = do not mark)
    tables: dict[str, list[Sequence[Any]]]
    error: str | None = None  # recorded in the project's failed hash when status is failed

    def row_count(self) -> int:
        return sum(len(v) for v in self.tables.values())


def queue_intent(pipe: Pipeline, keys: Keys, codec: Codec, intent: Intent) -> None:
    """XADD the intent onto the caller's pipeline (executed in the caller's MULTI)."""
    unknown = set(intent.tables) - set(rows.COLUMNS)
    if unknown:
        raise ValueError(f"intent has rows for unknown tables: {sorted(unknown)}")
    pipe.xadd(keys.wb_stream(), {FIELD: codec.encode(intent)})


def intent_for_document(
    source: SourceRef,
    extracted: Extracted | None,
    cleaned: Cleaned | None,
    resolved: Resolved | None,
    related: Related | None,
    status: str,
    error: str | None,
    *,
    chunked: Chunked | None = None,
) -> Intent:
    """Every row of one document, as the traditional path would have written them.

    ``chunked`` is keyword-only because the chunk rows cannot be rebuilt from
    ``Resolved`` (it carries chunk ids only); a resolved document without it is a bug.
    """
    if resolved is not None and resolved.chunk_ids and chunked is None:
        raise ValueError("intent_for_document needs chunked= when resolved has chunks")
    tables: dict[str, list[Sequence[Any]]] = {
        "documents": [rows.document_row(source, extracted, cleaned, status, error)]
    }
    if chunked is not None:
        tables["chunks"] = list(rows.chunk_rows(source.project, chunked))
    if resolved is not None:
        tables["entity_mentions"] = list(rows.mention_rows(source.project, resolved.mentions))
        tables["canonical_entities"] = list(rows.canonical_rows(resolved.canonicals))
    if related is not None:
        tables["relationships"] = list(rows.relationship_rows(related))
    return Intent(
        intent_id=uuid.uuid4(),
        document_id=source.document_id,
        project=source.project,
        generation=source.generation,
        status=status,
        tables=tables,
        error=error,
    )
