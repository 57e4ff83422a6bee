"""Typed records that flow between stages (msgspec Structs: fast, strict JSON).

Every stage takes one of these and returns the next; the codec stores them in Redis
and the persistence layer maps them to rows. Field names are part of the stored
format: renaming one needs a codec version bump.
"""

from __future__ import annotations

import uuid
from typing import Final

import msgspec

ENTITY_TYPES: Final = (
    "CASE_CITATION",
    "STATUTE",
    "COURT",
    "JUDGE",
    "PARTY",
    "ATTORNEY",
    "ORGANIZATION",
    "PERSON",
    "DOCKET_NUMBER",
    "DATE",
    "MONEY",
)
CATEGORIES: Final = ("opinion", "order", "motion_brief", "contract", "correspondence", "other")
# doc, wpd, rtf: legacy word processor files (extractors/legacy.py, extractors/rtf.py);
# tiff, png, jpeg: images, whose text comes from OCR only (extractors/image.py).
FORMATS: Final = (
    "pdf",
    "docx",
    "txt",
    "html",
    "eml",
    "json",
    "xml",
    "doc",
    "wpd",
    "rtf",
    "audio",
    "tiff",
    "png",
    "jpeg",
    "unknown",
)
AUDIO: Final = "audio"  # .wav .mp3 .m4a .flac .ogg: text from the transcribe stage


class SourceRef(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What intake knows about a document before any stage runs (also its DB row)."""

    document_id: uuid.UUID
    project: str
    source: str  # absolute path or s3:// URI the bytes are read from
    source_key: str  # stable name inside the input (relative path); part of the id
    sha256: str
    size: int
    format: str
    generation: int = 1  # bumped by every (re)intake; stale messages are dropped


class Page(msgspec.Struct, frozen=True, gc=False):
    """A page as a half-open character range [start, end) of the document text."""

    number: int
    start: int
    end: int


class Extracted(msgspec.Struct, kw_only=True):
    """Output of ``extract``: raw text of the document and where its pages are."""

    document_id: uuid.UUID
    sha256: str
    format: str
    method: str  # text_layer | docx | ... | antiword | wpd2text | striprtf | needs_ocr
    text: str
    pages: list[Page]
    needs_ocr: bool = False
    metadata: dict[str, str] = msgspec.field(default_factory=dict)


class Cleaned(msgspec.Struct, kw_only=True):
    """Output of ``clean``: normalised text (page ranges re-mapped) and a category."""

    document_id: uuid.UUID
    text: str
    pages: list[Page]
    category: str


class Party(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    role: str | None = None  # plaintiff, defendant, petitioner, appellee ... as stated


class Counsel(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    firm: str | None = None
    represents: str | None = None  # the party, as the document names it


class DocumentFields(msgspec.Struct, frozen=True, kw_only=True):
    """Document-level fields (``STRUCTURED_EXTRACTION``); stored in ``documents.metadata``
    under ``structured``. ``filing_date`` is ISO ``YYYY-MM-DD``."""

    caption: str | None = None
    court: str | None = None
    docket_numbers: list[str] = msgspec.field(default_factory=list)
    filing_date: str | None = None
    document_type: str | None = None
    parties: list[Party] = msgspec.field(default_factory=list)
    judges: list[str] = msgspec.field(default_factory=list)
    counsel: list[Counsel] = msgspec.field(default_factory=list)


class Structured(msgspec.Struct, kw_only=True):
    """Output of ``structure``: the fields, or why there are none (``error``, recorded
    against the document in ``documents.metadata.structured_error``; the document goes
    on). ``extractor`` is the extractor's version."""

    document_id: uuid.UUID
    extractor: str
    fields: DocumentFields | None = None
    error: str | None = None


class Chunk(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    id: uuid.UUID
    document_id: uuid.UUID
    index: int
    text: str
    start: int  # character offsets into Cleaned.text
    end: int
    page_start: int
    page_end: int


class Chunked(msgspec.Struct, kw_only=True):
    document_id: uuid.UUID
    chunks: list[Chunk]


class Mention(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    id: uuid.UUID
    document_id: uuid.UUID
    chunk_id: uuid.UUID
    type: str  # one of ENTITY_TYPES
    text: str  # surface form exactly as in Cleaned.text[start:end]
    normalized: str
    start: int
    end: int
    canonical_id: uuid.UUID | None = None
    role: str | None = None  # which field it is (a party's side, a date's field ...)


class Mentions(msgspec.Struct, kw_only=True):
    """Output of ``entities``; carries chunk ids so later stages need no other input."""

    document_id: uuid.UUID
    chunk_ids: list[uuid.UUID]
    mentions: list[Mention]


class CanonicalEntity(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    id: uuid.UUID
    project: str
    type: str
    key: str  # normalised name the id is derived from
    name: str  # display name; the DB keeps the least one seen, so order never matters


class Resolved(msgspec.Struct, kw_only=True):
    """Output of ``resolve``: mentions with ``canonical_id`` set, and their canonicals."""

    document_id: uuid.UUID
    chunk_ids: list[uuid.UUID]
    mentions: list[Mention]
    canonicals: list[CanonicalEntity]


class Relationship(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    id: uuid.UUID
    project: str
    document_id: uuid.UUID
    type: str  # CO_OCCURS_WITH (stored); HAS_CHUNK | MENTIONS | REFERS_TO (derived by the view)
    source_type: str  # DOCUMENT | CHUNK | MENTION | CANONICAL
    source_id: uuid.UUID
    target_type: str
    target_id: uuid.UUID
    weight: float = 1.0


class Related(msgspec.Struct, kw_only=True):
    document_id: uuid.UUID
    relationships: list[Relationship]
