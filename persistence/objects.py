"""What intake learnt about each S3 object: ``(ETag, size) -> (sha256, format)``.

Documents are identified and cached by the sha256 of their bytes, which S3 does not
report; the listing gives an ETag and a size for free. Intake hashes an object once,
records the pair here, and on later runs takes the sha256 from this table for every
object whose ETag and size are unchanged, so an unchanged bucket is not downloaded
again. Postgres holds it (not Redis) because it must outlive a Redis restart and work
on the traditional path too.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg  # type: ignore[import-untyped]

from accelerated.boundary import translated
from accelerated.ids import validate_project


@dataclass(frozen=True)
class ObjectVersion:
    source: str  # s3://bucket/key
    etag: str
    size: int
    sha256: str
    format: str


@translated("postgres")
async def known_versions(
    pool: asyncpg.Pool, project: str, sources: list[str]
) -> dict[str, ObjectVersion]:
    """The recorded version of each of ``sources`` that has one."""
    if not sources:
        return {}
    rows = await pool.fetch(
        "SELECT source, etag, size_bytes, sha256, format FROM object_versions "
        "WHERE project = $1 AND source = ANY($2::text[])",
        validate_project(project),
        sources,
    )
    return {
        r["source"]: ObjectVersion(
            r["source"], r["etag"], r["size_bytes"], r["sha256"], r["format"]
        )
        for r in rows
    }


@translated("postgres")
async def record_versions(pool: asyncpg.Pool, project: str, versions: list[ObjectVersion]) -> None:
    """Upsert what intake just hashed (one statement)."""
    if not versions:
        return
    await pool.execute(
        """
        INSERT INTO object_versions AS o (project, source, etag, size_bytes, sha256, format)
        SELECT $1, * FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[])
        ON CONFLICT (project, source) DO UPDATE SET
            etag = EXCLUDED.etag, size_bytes = EXCLUDED.size_bytes,
            sha256 = EXCLUDED.sha256, format = EXCLUDED.format, seen_at = now()
        """,
        validate_project(project),
        [v.source for v in versions],
        [v.etag for v in versions],
        [v.size for v in versions],
        [v.sha256 for v in versions],
        [v.format for v in versions],
    )
