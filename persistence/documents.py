"""Document rows written at intake, before any stage runs (DB-first metadata).

Redis is a cache and a transport: the document row (project, source, hash) is in
Postgres before the first stage message is queued, so a Redis loss never loses a
document.
"""

from __future__ import annotations

import uuid

import asyncpg  # type: ignore[import-untyped]

from accelerated.boundary import translated
from accelerated.ids import validate_project
from accelerated.models import SourceRef

_REGISTER = """
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::bigint[], $8::integer[])
        AS u(id, project, source, source_key, sha256, format, size_bytes, generation)
), prev AS (  -- every CTE sees the snapshot from before the upsert below
    SELECT d.id, d.status, d.sha256 FROM documents d JOIN input USING (id)
), up AS (
    INSERT INTO documents AS d
        (id, project, source, source_key, sha256, format, size_bytes, status, generation)
    SELECT id, project, source, source_key, sha256, format, size_bytes, 'queued', generation
    FROM input
    ON CONFLICT (id) DO UPDATE SET
        source = EXCLUDED.source, sha256 = EXCLUDED.sha256, format = EXCLUDED.format,
        size_bytes = EXCLUDED.size_bytes, status = 'queued', error = NULL,
        generation = EXCLUDED.generation, updated_at = now()
    WHERE $9 OR d.sha256 IS DISTINCT FROM EXCLUDED.sha256 OR d.status <> ALL($10::text[])
)
SELECT prev.id, prev.status FROM prev JOIN input USING (id) WHERE prev.sha256 = input.sha256
"""


@translated("postgres")
async def register_documents(
    pool: asyncpg.Pool,
    refs: list[SourceRef],
    *,
    reprocess: bool = False,
    keep: tuple[str, ...] = ("done", "needs_ocr"),
) -> dict[uuid.UUID, str]:
    """Upsert the documents' rows as ``queued`` in one statement.

    Returns the previous status of each document that already existed with the same
    sha256, so intake can skip unchanged finished documents. Those rows (status in
    ``keep``, same content) are left as they are unless ``reprocess`` is set.
    """
    if not refs:
        return {}
    for ref in refs:
        validate_project(ref.project)
    cols = list(
        zip(
            *(
                (
                    r.document_id,
                    r.project,
                    r.source,
                    r.source_key,
                    r.sha256,
                    r.format,
                    r.size,
                    r.generation,
                )
                for r in refs
            ),
            strict=True,
        )
    )
    records = await pool.fetch(_REGISTER, *cols, reprocess, list(keep))
    return {uuid.UUID(str(r["id"])): r["status"] for r in records}


@translated("postgres")
async def project_documents(pool: asyncpg.Pool, project: str) -> list[SourceRef]:
    """The project's documents as intake saw them (what ``--reprocess`` re-queues)."""
    records = await pool.fetch(
        "SELECT id, project, source, source_key, sha256, size_bytes, format, generation "
        'FROM documents WHERE project = $1 ORDER BY source_key COLLATE "C"',
        validate_project(project),
    )
    return [
        SourceRef(
            document_id=uuid.UUID(str(r["id"])),
            project=r["project"],
            source=r["source"],
            source_key=r["source_key"],
            sha256=r["sha256"],
            size=r["size_bytes"],
            format=r["format"],
            generation=r["generation"],
        )
        for r in records
    ]
