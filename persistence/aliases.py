"""Cross-document merges (``RESOLUTION``) as rows of ``canonical_aliases``.

Written once per batch, directly on both paths: it is one small project-wide set,
computed after every document of the batch is committed, not a per-document row set
for the write-behind stream. A complete resolution replaces the project's aliases
(it was computed over all of its canonical entities); an incomplete one (the token
budget ran out, some replies were invalid) only adds what it decided, so a short run
never takes away a merge a full one made.
"""

from __future__ import annotations

import asyncpg  # type: ignore[import-untyped]

from accelerated.backends import Resolution
from accelerated.boundary import translated
from accelerated.ids import validate_project


@translated("postgres")
async def write_aliases(
    pool: asyncpg.Pool, project: str, resolution: Resolution, resolver: str
) -> int:
    """Store ``resolution``'s aliases of ``project``; returns the project's alias count."""
    validate_project(project)
    aliases = sorted(resolution.aliases, key=lambda a: str(a.alias_id))
    ids = [a.alias_id for a in aliases]
    async with pool.acquire() as conn, conn.transaction():
        if resolution.complete:
            await conn.execute(
                "DELETE FROM canonical_aliases WHERE project = $1 AND alias_id <> ALL($2::uuid[])",
                project,
                ids,
            )
        if aliases:
            await conn.execute(
                "INSERT INTO canonical_aliases AS t (alias_id, project, canonical_id, type, "
                "alias_key, canonical_key, resolver) "
                "SELECT a, $2, c, ty, ak, ck, $7 FROM unnest($1::uuid[], $3::uuid[], $4::text[], "
                "$5::text[], $6::text[]) AS u(a, c, ty, ak, ck) "
                "ON CONFLICT (alias_id) DO UPDATE SET canonical_id = EXCLUDED.canonical_id, "
                "canonical_key = EXCLUDED.canonical_key, resolver = EXCLUDED.resolver, "
                "updated_at = now() WHERE t.canonical_id IS DISTINCT FROM EXCLUDED.canonical_id",
                ids,
                project,
                [a.canonical_id for a in aliases],
                [a.type for a in aliases],
                [a.alias_key for a in aliases],
                [a.canonical_key for a in aliases],
                resolver,
            )
        count: int = await conn.fetchval(
            "SELECT count(*) FROM canonical_aliases WHERE project = $1", project
        )
    return count
