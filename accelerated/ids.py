"""Deterministic ids (uuid5) and validation of every id a key or row is built from.

A re-run computes the same ids, so every write is an idempotent upsert; a UUID
object and its string form always give the same key.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from typing import Final

from accelerated.errors import InvalidIdError

NAMESPACE = uuid.UUID("6b2a7c1e-4f0d-5a8e-9c3b-2d1e0f4a5b6c")
_PROJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def validate_project(project: str) -> str:
    """Project ids become key parts and schema values, so only a safe alphabet passes."""
    if not isinstance(project, str) or not _PROJECT_RE.fullmatch(project):
        raise InvalidIdError(
            f"invalid project id {project!r}: use 1-64 letters, digits, '_', '.', '-' "
            "starting with a letter or digit"
        )
    return project


def parse_uuid(value: uuid.UUID | str) -> uuid.UUID:
    """Accept a UUID or its string (any case, braces or not); reject anything else."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (ValueError, AttributeError, TypeError):
        raise InvalidIdError(f"invalid document id {value!r}: not a UUID") from None


def document_id(project: str, source_key: str) -> uuid.UUID:
    """One document per (project, source): the same file path re-ingested keeps its id."""
    return uuid.uuid5(NAMESPACE, f"doc\x00{validate_project(project)}\x00{source_key}")


def chunk_id(doc_id: uuid.UUID, index: int) -> uuid.UUID:
    return uuid.uuid5(doc_id, f"chunk\x00{index}")


def mention_id(doc_id: uuid.UUID, etype: str, start: int, end: int) -> uuid.UUID:
    return uuid.uuid5(doc_id, f"mention\x00{etype}\x00{start}\x00{end}")


def canonical_id(project: str, etype: str, key: str) -> uuid.UUID:
    """Canonical ids depend only on (project, type, normalised key), never on arrival order."""
    return uuid.uuid5(NAMESPACE, f"canonical\x00{project}\x00{etype}\x00{key}")


def relationship_id(
    rtype: str, source_id: uuid.UUID, target_id: uuid.UUID, scope: uuid.UUID | None = None
) -> uuid.UUID:
    """``scope`` (a document id) keeps per-document edges such as co-occurrence apart."""
    return uuid.uuid5(NAMESPACE, f"rel\x00{rtype}\x00{source_id}\x00{target_id}\x00{scope or ''}")


_NAMESPACE_SHA1: Final = hashlib.sha1(NAMESPACE.bytes, usedforsecurity=False)


def relationship_ids(
    rtype: str, pairs: Sequence[tuple[uuid.UUID, uuid.UUID]], scope: uuid.UUID | None = None
) -> list[uuid.UUID]:
    """``relationship_id`` of many edges at once, the same ids: a document's few hundred
    co-occurrence edges share a handful of endpoints, so each endpoint's text form is
    made once, and the namespace's SHA-1 state is copied instead of hashed again
    (``uuid.uuid5`` spent two thirds of the relate stage's time here)."""
    text: dict[uuid.UUID, str] = {}
    tail = f"\x00{scope or ''}"
    head = f"rel\x00{rtype}\x00"
    out = []
    for a, b in pairs:
        sa = text.get(a)
        if sa is None:
            sa = text[a] = str(a)
        sb = text.get(b)
        if sb is None:
            sb = text[b] = str(b)
        h = _NAMESPACE_SHA1.copy()
        h.update(f"{head}{sa}\x00{sb}{tail}".encode())
        raw = bytearray(h.digest()[:16])
        raw[6] = (raw[6] & 0x0F) | 0x50  # version 5
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
        out.append(uuid.UUID(bytes=bytes(raw)))
    return out


# Edges the ``relationships`` view derives from the rows that state them (schema
# migration 6); only CO_OCCURS_WITH edges are stored.
DERIVED_EDGES: Final = ("HAS_CHUNK", "MENTIONS", "REFERS_TO")


def derived_relationship_id(rtype: str, source_id: uuid.UUID, target_id: uuid.UUID) -> uuid.UUID:
    """The id the ``relationships`` view gives a derived edge, computed the view's way:
    ``md5('rel:' || type || ':' || source_id || ':' || target_id)::uuid``. Not a uuid5:
    stock Postgres has md5 but no SHA-1 without the pgcrypto extension (which the
    embedded server lacks), so a view cannot compute ``relationship_id``."""
    return uuid.UUID(
        hashlib.md5(
            f"rel:{rtype}:{source_id}:{target_id}".encode(), usedforsecurity=False
        ).hexdigest()
    )
