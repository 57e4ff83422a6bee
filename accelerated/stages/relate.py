"""Stage ``relate``: the document's graph edges, staged for a graph load.

Edges: DOCUMENT -HAS_CHUNK-> CHUNK, CHUNK -MENTIONS-> MENTION, MENTION -REFERS_TO->
CANONICAL, and CANONICAL -CO_OCCURS_WITH-> CANONICAL for canonicals sharing a chunk
(weight = number of the document's chunks they share). Co-occurrence edges are scoped
to the document in their id, so documents never overwrite each other's weights and a
re-run rewrites the same rows. Every id is derived, and the output is sorted.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from itertools import combinations
from typing import Final

from accelerated.errors import DocumentError
from accelerated.ids import relationship_id
from accelerated.models import Related, Relationship, Resolved
from accelerated.stages import StageContext

# Canonicals per chunk considered for co-occurrence (most mentioned first): caps the
# pairs at 50*49/2 per chunk, so a hostile chunk cannot produce millions of edges.
MAX_COOCCURRING: Final = 50
CPU_THRESHOLD: Final = 5000  # mentions


async def run(doc: Resolved, ctx: StageContext) -> Related:
    if len(doc.mentions) >= CPU_THRESHOLD:
        edges = await ctx.run_cpu(relationships, ctx.project, doc)
    else:
        edges = relationships(ctx.project, doc)
    return Related(document_id=doc.document_id, relationships=edges)


def relationships(project: str, doc: Resolved) -> list[Relationship]:
    """All edges of one document, sorted by (type, source, target); picklable for a pool."""
    doc_id = doc.document_id
    chunks = set(doc.chunk_ids)
    canonicals = {c.id for c in doc.canonicals}
    edges: dict[uuid.UUID, Relationship] = {}

    def add(
        rtype: str, stype: str, sid: uuid.UUID, ttype: str, tid: uuid.UUID, weight: float = 1.0
    ) -> None:
        rid = relationship_id(rtype, sid, tid, doc_id if rtype == "CO_OCCURS_WITH" else None)
        edges[rid] = Relationship(
            id=rid,
            project=project,
            document_id=doc_id,
            type=rtype,
            source_type=stype,
            source_id=sid,
            target_type=ttype,
            target_id=tid,
            weight=weight,
        )

    for chunk in chunks:
        add("HAS_CHUNK", "DOCUMENT", doc_id, "CHUNK", chunk)

    per_chunk: dict[uuid.UUID, Counter[uuid.UUID]] = defaultdict(Counter)
    for m in doc.mentions:
        if m.document_id != doc_id:
            raise DocumentError(
                f"mention {m.id} belongs to {m.document_id}", code="foreign_mention"
            )
        if m.chunk_id not in chunks:
            raise DocumentError(f"mention {m.id} is in unknown chunk", code="unknown_chunk")
        add("MENTIONS", "CHUNK", m.chunk_id, "MENTION", m.id)
        if m.canonical_id is None:
            continue
        if m.canonical_id not in canonicals:
            raise DocumentError(
                f"mention {m.id} refers to unknown canonical", code="unknown_canonical"
            )
        add("REFERS_TO", "MENTION", m.id, "CANONICAL", m.canonical_id)
        per_chunk[m.chunk_id][m.canonical_id] += 1

    pairs: Counter[tuple[uuid.UUID, uuid.UUID]] = Counter()
    for counts in per_chunk.values():
        pairs.update(combinations(_most_mentioned(counts), 2))
    for (a, b), n in pairs.items():
        add("CO_OCCURS_WITH", "CANONICAL", a, "CANONICAL", b, weight=float(n))

    return sorted(edges.values(), key=lambda r: (r.type, r.source_id.int, r.target_id.int))


def _most_mentioned(counts: Counter[uuid.UUID]) -> list[uuid.UUID]:
    """The chunk's top canonicals (ties by id), sorted by id so pairs come out (small, large)."""
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0].int))[:MAX_COOCCURRING]
    return sorted((cid for cid, _ in top), key=lambda cid: cid.int)
