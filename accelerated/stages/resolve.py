"""Stage ``resolve``: cluster a document's mentions into project-wide canonical entities.

Two steps, and only the first is fuzzy:

1. Within the document, mentions are grouped by (type, ``entity_key``) and, for
   name-like types, near-duplicate keys are merged with rapidfuzz (OCR typos such as
   "Internatonal Fidelity"). Merging is single-linkage over the whole set of distinct
   keys, and a cluster is named by its least key, so the result does not depend on
   mention order.
2. Against the project, each cluster's key *is* its identity: the canonical id is
   ``ids.canonical_id(project, type, key)`` and the registry is only told about it.

There is deliberately no fuzzy matching against the registry. Which keys the
registry holds depends on which documents were processed first, so matching there
would make a document's canonicals depend on arrival order and worker timing; two
runs, or the accelerated and the traditional path, would then write different rows,
and the product promises identical ones. Per-document clusters plus deterministic
keys keep every output a pure function of the document. For the same reason the
output carries this document's display names, not the registry's: the database
keeps the least name over all documents, which is order-independent too.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from typing import Final

import msgspec
from rapidfuzz import fuzz

from accelerated.errors import CodecError, DocumentError
from accelerated.fuzzy import fuzzy_pairs
from accelerated.ids import canonical_id
from accelerated.models import ENTITY_TYPES, CanonicalEntity, Mention, Mentions, Resolved
from accelerated.normalize import NAME_TYPES, entity_key
from accelerated.stages import StageContext

FUZZY_CUTOFF: Final = 92  # token_sort_ratio; one typo in a 13+ character name passes
MAX_FUZZY_KEYS: Final = 5000  # distinct keys per type beyond which only exact keys merge
MAX_KEY_CHARS: Final = 300  # longer "names" are extraction noise: no identity
CPU_THRESHOLD: Final = 2000  # mentions; below this the executor hop costs more than it saves

Plan = tuple[list[Mention], list[CanonicalEntity]]


async def run(doc: Mentions, ctx: StageContext) -> Resolved:
    if len(doc.mentions) >= CPU_THRESHOLD:
        mentions, canonicals = await ctx.run_cpu(plan, ctx.project, doc)
    else:
        mentions, canonicals = plan(ctx.project, doc)
    if canonicals:
        registered = await ctx.canonical.get_or_create(ctx.project, canonicals)
        # Ids are a pure function of the key, so the registry can only confirm them.
        if [e.id for e in registered] != [e.id for e in canonicals]:
            raise CodecError("canonical registry returned ids other than the derived ones")
    return Resolved(
        document_id=doc.document_id,
        chunk_ids=doc.chunk_ids,
        mentions=mentions,
        canonicals=canonicals,
    )


def plan(project: str, doc: Mentions) -> Plan:
    """The CPU part: validate, cluster, and assign canonical ids (picklable for a pool)."""
    mentions = _validated(doc)
    groups: dict[tuple[str, str], list[Mention]] = defaultdict(list)
    for m in mentions:
        key = entity_key(m.type, m.text, m.normalized)
        if key and len(key) <= MAX_KEY_CHARS:
            groups[(m.type, key)].append(m)

    keys_by_type: dict[str, list[str]] = defaultdict(list)
    for etype, key in groups:
        keys_by_type[etype].append(key)
    cluster_of: dict[tuple[str, str], str] = {}
    for etype, keys in keys_by_type.items():
        merged = _fuzzy_clusters(sorted(keys)) if etype in NAME_TYPES else {}
        for key in keys:
            cluster_of[(etype, key)] = merged.get(key, key)

    surface: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    assigned: dict[uuid.UUID, Mention] = {}
    for (etype, key), members in groups.items():
        cluster = (etype, cluster_of[(etype, key)])
        cid = canonical_id(project, *cluster)
        for m in members:
            surface[cluster][" ".join(m.text.split())] += 1
            assigned[m.id] = msgspec.structs.replace(m, canonical_id=cid)

    canonicals = [
        CanonicalEntity(
            id=canonical_id(project, etype, key),
            project=project,
            type=etype,
            key=key,
            name=_display_name(counts),
        )
        for (etype, key), counts in surface.items()
    ]
    canonicals.sort(key=lambda e: e.id)
    # A mention without identity is unresolved even if its input said otherwise.
    out = [
        assigned[m.id] if m.id in assigned else msgspec.structs.replace(m, canonical_id=None)
        for m in mentions
    ]
    return out, canonicals


def _validated(doc: Mentions) -> list[Mention]:
    """Mentions sorted by position, one per id (the id is a function of type and span)."""
    chunks = set(doc.chunk_ids)
    for m in doc.mentions:
        if m.document_id != doc.document_id:
            raise DocumentError(
                f"mention {m.id} belongs to {m.document_id}", code="foreign_mention"
            )
        if m.type not in ENTITY_TYPES:
            raise DocumentError(f"mention {m.id} has type {m.type!r}", code="unknown_entity_type")
        if m.chunk_id not in chunks:
            raise DocumentError(f"mention {m.id} is in unknown chunk", code="unknown_chunk")
    ordered = sorted(doc.mentions, key=_order)
    unique: dict[uuid.UUID, Mention] = {}
    for m in ordered:
        unique.setdefault(m.id, m)
    return list(unique.values())


def _order(m: Mention) -> tuple[int, int, str, str, str, str, str]:
    return (m.start, m.end, m.type, str(m.id), m.text, m.normalized, str(m.chunk_id))


def _display_name(counts: Counter[str]) -> str:
    """Most frequent surface form; ties go to the least, so the choice is order-free."""
    return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]


def _fuzzy_clusters(keys: list[str]) -> dict[str, str]:
    """Map each of ``keys`` (sorted, distinct) to the least key of its fuzzy cluster.

    Single linkage over all pairs scoring >= FUZZY_CUTOFF whose digits agree ("Unit 1"
    and "Unit 2" are different parties), computed with union-find keeping the least
    index as root. Pairs are a fixed set, so the result is independent of order.
    """
    n = len(keys)
    if n < 2 or n > MAX_FUZZY_KEYS:
        return {}
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j, _score in fuzzy_pairs(keys, fuzz.token_sort_ratio, FUZZY_CUTOFF):
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return {keys[i]: keys[find(i)] for i in range(n)}
