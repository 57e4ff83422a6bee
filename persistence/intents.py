"""Persistence intents: one document's full row set, queued on the write-behind stream.

The engine adds the intent to the same MULTI as the stage output (``queue_intent``
takes the caller's pipeline), so nothing Redis acknowledged lives only in memory.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from accelerated.cluster import AnyPipeline
from accelerated.codec import Codec
from accelerated.ids import DERIVED_EDGES
from accelerated.keys import Keys
from accelerated.models import (
    Chunked,
    Cleaned,
    Extracted,
    Related,
    Resolved,
    SourceRef,
    Structured,
)
from persistence import rows

FIELD: Final = b"i"  # stream entry field holding the codec-encoded intent
ID_FIELD: Final = b"id"  # the intent id (16 bytes), readable without decoding the intent


class Intent(msgspec.Struct, kw_only=True):
    """Rows per table in ``rows.COLUMNS`` order, JSON-encodable (see ``persistence.rows``).

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


class IntentMemo:
    """Intents this process queued, by id, so a writer in the same process takes the
    object instead of decoding the copy it reads back from the stream.

    The stream entry stays the durable copy (a writer elsewhere, or this one after a
    restart, decodes it); the memo only saves work. Bounded by rows: when no writer
    here takes them, the oldest are dropped.
    """

    def __init__(self, max_rows: int = 200_000) -> None:
        self.max_rows = max_rows
        self._items: OrderedDict[bytes, Intent] = OrderedDict()
        self._rows = 0
        self.hits = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, intent: Intent) -> None:
        self._items[intent.intent_id.bytes] = intent
        self._rows += intent.row_count()
        while self._rows > self.max_rows and self._items:
            _key, old = self._items.popitem(last=False)
            self._rows -= old.row_count()

    def take(self, intent_id: bytes) -> Intent | None:
        intent = self.discard(intent_id)
        if intent is not None:
            self.hits += 1
        return intent

    def discard(self, intent_id: bytes) -> Intent | None:
        """Drop an intent that was never queued (its advance was refused)."""
        intent = self._items.pop(intent_id, None)
        if intent is not None:
            self._rows -= intent.row_count()
        return intent


# The table name intents queued before schema migration 6 used for edges.
_LEGACY_EDGES: Final = "relationships"


def upgrade_intent(intent: Intent) -> Intent:
    """An intent queued before edges became derived: its ``relationships`` rows become
    ``stored_relationships`` rows, less the HAS_CHUNK/MENTIONS/REFERS_TO edges that the
    ``relationships`` view now derives (they would show twice). Others pass unchanged."""
    legacy = intent.tables.pop(_LEGACY_EDGES, None)
    if legacy is not None:
        kind = rows.COLUMNS["stored_relationships"].index("type")
        intent.tables["stored_relationships"] = [r for r in legacy if r[kind] not in DERIVED_EDGES]
    return intent


def intent_entry(
    codec: Codec, intent: Intent, memo: IntentMemo | None = None
) -> dict[bytes, bytes]:
    """The write-behind stream entry for ``intent`` (remembered in ``memo`` if given)."""
    unknown = set(intent.tables) - set(rows.COLUMNS)
    if unknown:
        raise ValueError(f"intent has rows for unknown tables: {sorted(unknown)}")
    entry = {FIELD: codec.encode(intent), ID_FIELD: intent.intent_id.bytes}
    if memo is not None:
        memo.put(intent)
    return entry


def queue_intent(
    pipe: AnyPipeline, keys: Keys, codec: Codec, intent: Intent, memo: IntentMemo | None = None
) -> None:
    """XADD the intent onto the caller's pipeline (executed in the caller's MULTI)."""
    stream = keys.wb_stream(keys.shard(intent.document_id))
    pipe.xadd(stream, intent_entry(codec, intent, memo))  # type: ignore[arg-type]


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
    structured: Structured | None = None,
) -> Intent:
    """Every row of one document, as the traditional path would have written them.

    ``chunked`` is keyword-only because the chunk rows cannot be rebuilt from
    ``Resolved`` (it carries chunk ids only); a resolved document without it is a bug.
    """
    if resolved is not None and resolved.chunk_ids and chunked is None:
        raise ValueError("intent_for_document needs chunked= when resolved has chunks")
    tables: dict[str, list[Sequence[Any]]] = {
        "documents": [rows.document_row(source, extracted, cleaned, status, error, structured)]
    }
    if chunked is not None:
        tables["chunks"] = list(rows.chunk_rows(source.project, chunked))
    if resolved is not None:
        tables["entity_mentions"] = list(rows.mention_rows(source.project, resolved.mentions))
        tables["canonical_entities"] = list(rows.canonical_rows(resolved.canonicals))
    if related is not None:
        tables["stored_relationships"] = list(rows.relationship_rows(related))
    return Intent(
        intent_id=uuid.uuid4(),
        document_id=source.document_id,
        project=source.project,
        generation=source.generation,
        status=status,
        tables=tables,
        error=error,
    )
