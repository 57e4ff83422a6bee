"""Stage ``relate``: the document's computed graph edges, staged for a graph load.

It emits CANONICAL -CO_OCCURS_WITH-> CANONICAL for canonicals sharing a chunk (weight =
number of the document's chunks they share). Co-occurrence edges are scoped to the
document in their id, so documents never overwrite each other's weights and a re-run
rewrites the same rows. Every id is derived, and the output is sorted.

The edges that restate a row (DOCUMENT -HAS_CHUNK-> CHUNK, CHUNK -MENTIONS-> MENTION,
MENTION -REFERS_TO-> CANONICAL) are not emitted: the ``relationships`` view derives
them from ``chunks`` and ``entity_mentions`` (persistence/schema.py, migration 6). The
stage still checks that every mention belongs to the document, one of its chunks and
one of its canonicals, so a document whose derived edges would dangle fails here.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from itertools import combinations
from typing import Final

from accelerated.errors import DocumentError
from accelerated.ids import relationship_ids
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
    """The document's stored edges (CO_OCCURS_WITH), sorted by (type, source, target);
    picklable for a pool."""
    doc_id = doc.document_id
    chunks = set(doc.chunk_ids)
    canonicals = {c.id for c in doc.canonicals}
    per_chunk: dict[uuid.UUID, Counter[uuid.UUID]] = defaultdict(Counter)
    for m in doc.mentions:
        if m.document_id != doc_id:
            raise DocumentError(
                f"mention {m.id} belongs to {m.document_id}", code="foreign_mention"
            )
        if m.chunk_id not in chunks:
            raise DocumentError(f"mention {m.id} is in unknown chunk", code="unknown_chunk")
        if m.canonical_id is None:
            continue
        if m.canonical_id not in canonicals:
            raise DocumentError(
                f"mention {m.id} refers to unknown canonical", code="unknown_canonical"
            )
        per_chunk[m.chunk_id][m.canonical_id] += 1

    pairs: Counter[tuple[uuid.UUID, uuid.UUID]] = Counter()
    for counts in per_chunk.values():
        pairs.update(combinations(_most_mentioned(counts), 2))
    rids = relationship_ids("CO_OCCURS_WITH", list(pairs), doc_id)
    edges = [
        Relationship(
            id=rid,
            project=project,
            document_id=doc_id,
            type="CO_OCCURS_WITH",
            source_type="CANONICAL",
            source_id=a,
            target_type="CANONICAL",
            target_id=b,
            weight=float(n),
        )
        for rid, ((a, b), n) in zip(rids, pairs.items(), strict=True)
    ]
    return sorted(edges, key=lambda r: (r.type, r.source_id.int, r.target_id.int))


def _most_mentioned(counts: Counter[uuid.UUID]) -> list[uuid.UUID]:
    """The chunk's top canonicals (ties by id), sorted by id so pairs come out (small, large)."""
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0].int))[:MAX_COOCCURRING]
    return sorted((cid for cid, _ in top), key=lambda cid: cid.int)
