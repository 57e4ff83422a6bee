"""The end-of-batch step of ``RESOLUTION``: merge the project's canonical entities.

It runs once the batch's documents are all committed, over *all* of the project's
canonical entities (not only this batch's), so its outcome is a function of the set
of entities the project holds and of the per-pair decisions, never of the order the
documents came in; a later batch recomputes it over the larger set. The entities come
from the project's canonical registry in Redis on the accelerated path (the context
the resolver needs is already in the cache) and from ``canonical_entities`` on the
traditional one. The merges are written as ``canonical_aliases`` rows.
"""

from __future__ import annotations

import uuid

from accelerated.backends import Resolution
from accelerated.boundary import translated
from accelerated.canonical import RedisCanonicalRegistry
from accelerated.models import CanonicalEntity
from accelerated.runtime import Runtime
from accelerated.scope import project_scope
from persistence.aliases import write_aliases


@translated("postgres")
async def _stored_canonicals(rt: Runtime, project: str) -> list[CanonicalEntity]:
    rows = await rt.pool.fetch(
        "SELECT id, type, key, name FROM canonical_entities WHERE project = $1", project
    )
    return [
        CanonicalEntity(
            id=uuid.UUID(str(r["id"])),
            project=project,
            type=r["type"],
            key=r["key"],
            name=r["name"],
        )
        for r in rows
    ]


async def project_canonicals(rt: Runtime, project: str) -> list[CanonicalEntity]:
    """Every canonical entity of the project, sorted by id."""
    if isinstance(rt.canonical, RedisCanonicalRegistry):
        return await rt.canonical.list(project)
    return sorted(await _stored_canonicals(rt, project), key=lambda e: str(e.id))


async def resolve_project(rt: Runtime, project: str) -> tuple[Resolution, int] | None:
    """Run the configured resolver and store its aliases; None when RESOLUTION=none.

    Returns the resolution and the project's alias count after it."""
    resolver = rt.backends_.resolver
    if resolver is None:
        return None
    entities = await project_canonicals(rt, project)
    with project_scope(project):  # its LLM calls count against this project's run
        resolution = await resolver.resolve(project, entities)
    aliases = await write_aliases(rt.pool, project, resolution, resolver.version)
    return resolution, aliases
