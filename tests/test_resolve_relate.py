"""resolve and relate over hand-built and real-corpus mentions, with the real registry."""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from itertools import combinations
from multiprocessing import get_context
from pathlib import Path

import msgspec
import pytest
import redis.asyncio as aioredis

from accelerated import ids
from accelerated.canonical import RedisCanonicalRegistry
from accelerated.errors import DocumentError
from accelerated.keys import Keys
from accelerated.models import CanonicalEntity, Mention, Mentions, Related, Resolved, SourceRef
from accelerated.normalize import entity_key
from accelerated.settings import Settings
from accelerated.stages import StageContext, relate, resolve

PROJECT = "matters-1"


class NoBlobs:
    async def read(self, source: SourceRef, max_bytes: int) -> bytes:
        raise AssertionError("resolve and relate read no files")


class CountingRegistry(RedisCanonicalRegistry):
    """The real registry, counting calls (resolve must make one per document)."""

    calls = 0

    async def get_or_create(
        self, project: str, entities: Sequence[CanonicalEntity]
    ) -> list[CanonicalEntity]:
        self.calls += 1
        return await super().get_or_create(project, entities)


@pytest.fixture
def registry(redis: aioredis.Redis, keys: Keys) -> CountingRegistry:
    return CountingRegistry(redis, keys)


@pytest.fixture
def ctx(settings: Settings, registry: CountingRegistry) -> StageContext:
    return StageContext(project=PROJECT, settings=settings, blobs=NoBlobs(), canonical=registry)


def build(
    spans: Sequence[tuple[str, str, int]], n_chunks: int = 3, name: str = "doc.txt"
) -> Mentions:
    """Mentions from (type, text, chunk index); normalized is the collapsed text."""
    doc_id = ids.document_id(PROJECT, name)
    chunk_ids = [ids.chunk_id(doc_id, i) for i in range(n_chunks)]
    mentions = []
    for pos, (etype, text, chunk) in enumerate(spans):
        start = pos * 100
        mentions.append(
            Mention(
                id=ids.mention_id(doc_id, etype, start, start + len(text)),
                document_id=doc_id,
                chunk_id=chunk_ids[chunk],
                type=etype,
                text=text,
                normalized=" ".join(text.split()),
                start=start,
                end=start + len(text),
            )
        )
    return Mentions(document_id=doc_id, chunk_ids=chunk_ids, mentions=mentions)


def by_text(out: Resolved) -> dict[str, uuid.UUID | None]:
    return {m.text: m.canonical_id for m in out.mentions}


@pytest.mark.parametrize(
    ("etype", "text", "normalized", "key"),
    [
        ("PARTY", "Acme Corp.", "", "acme"),
        ("PARTY", "ACME Corporation", "", "acme"),
        ("PARTY", "Acme Corporaton", "", "acme"),  # a misspelt long suffix is still one
        ("ORGANIZATION", "The Acme Company, Inc., et al.", "", "acme"),
        ("ORGANIZATION", "Acme L.L.C.", "", "acme"),
        ("ORGANIZATION", "Wells Fargo Bank, N.A.", "", "wells fargo bank"),
        ("ORGANIZATION", "Smith & Wesson", "", "smith and wesson"),
        ("ORGANIZATION", "Smith & Co.", "", "smith"),
        ("ORGANIZATION", "Compaq", "", "compaq"),
        ("ORGANIZATION", "Company Bank of Kentucky", "", "company bank of kentucky"),
        ("JUDGE", "Edwards, Chief Judge", "", "edwards"),
        ("JUDGE", "Hon. Chief Judge Edwards", "", "edwards"),
        ("JUDGE", "Sentelle, Circuit Judge", "", "sentelle"),
        ("ATTORNEY", "John W. Karr, Esq.", "", "john w karr"),
        ("PERSON", "Ｍｒ. O’Brien", "", "obrien"),
        ("PARTY", "the   Acme", "Acme Inc", "acme"),  # normalized wins when present
        ("PARTY", "The Company", "", ""),
        ("CASE_CITATION", "123 F.3d 456", "123  F.3d\n456", "123 f.3d 456"),
        ("COURT", "D.C. Cir.", "cadc", "cadc"),
        ("DATE", "Nov. 7, 1997", "1997-11-07", "1997-11-07"),
        ("MONEY", "$1,000", "", "$1,000"),
    ],
)
def test_entity_key(etype: str, text: str, normalized: str, key: str) -> None:
    assert entity_key(etype, text, normalized) == key


async def test_within_document_merging(ctx: StageContext, registry: CountingRegistry) -> None:
    doc = build(
        [
            ("PARTY", "Acme Corp.", 0),
            ("PARTY", "ACME Corporation", 0),
            ("PARTY", "Acme Corporaton", 1),
            ("PARTY", "Acme  Corp.", 2),  # same surface form once whitespace is collapsed
            ("PARTY", "Smith", 0),
            ("PARTY", "Jones", 0),
            ("PERSON", "Smith", 1),  # a person named Smith is not the party Smith
            ("ORGANIZATION", "International Fidelity Insurance Company", 1),
            ("ORGANIZATION", "Internatonal Fidelity Insurance Co.", 2),  # OCR typo
            ("ORGANIZATION", "Unit 1 Holdings LLC", 2),
            ("ORGANIZATION", "Unit 2 Holdings LLC", 2),  # digits differ: two entities
            ("STATUTE", "42 U.S.C. § 1983", 0),
            ("STATUTE", "42 U.S.C. §  1983", 1),
            ("STATUTE", "42 U.S.C. § 1983a", 1),  # not a name: never fuzzy-merged
            ("PARTY", "The Company", 2),  # nothing left of it: no identity
        ]
    )
    out = await resolve.run(doc, ctx)
    cid = by_text(out)
    assert cid["Acme Corp."] == cid["ACME Corporation"] == cid["Acme Corporaton"]
    assert cid["Acme  Corp."] == cid["Acme Corp."]
    smith = {m.type: m.canonical_id for m in out.mentions if m.text == "Smith"}
    assert len({cid["Acme Corp."], smith["PARTY"], cid["Jones"]}) == 3
    assert None is not smith["PERSON"] != smith["PARTY"] is not None
    assert (
        cid["International Fidelity Insurance Company"]
        == cid["Internatonal Fidelity Insurance Co."]
    )
    assert cid["Unit 1 Holdings LLC"] != cid["Unit 2 Holdings LLC"]
    assert cid["42 U.S.C. § 1983"] == cid["42 U.S.C. §  1983"] != cid["42 U.S.C. § 1983a"]
    assert cid["The Company"] is None
    stale = [msgspec.structs.replace(m, canonical_id=uuid.uuid4()) for m in doc.mentions]
    assert await resolve.run(msgspec.structs.replace(doc, mentions=stale), ctx) == out

    canon = {c.id: c for c in out.canonicals}
    assert len(canon) == len(out.canonicals) == 9
    assert [c.id for c in out.canonicals] == sorted(canon)
    acme = canon[cid["Acme Corp."]]  # type: ignore[index]
    assert (acme.type, acme.key, acme.name) == ("PARTY", "acme", "Acme Corp.")
    assert acme.id == ids.canonical_id(PROJECT, "PARTY", "acme")
    ific = canon[cid["Internatonal Fidelity Insurance Co."]]  # type: ignore[index]
    # The cluster's key is its least key; the name, with a tie, the least surface form.
    assert ific.key == "international fidelity insurance"
    assert ific.name == "International Fidelity Insurance Company"
    assert all(m.canonical_id in canon for m in out.mentions if m.canonical_id)
    assert out.chunk_ids == doc.chunk_ids and out.document_id == doc.document_id

    assert registry.calls == 2  # once per document
    assert await registry.list(PROJECT) == out.canonicals


async def test_output_is_independent_of_mention_order(ctx: StageContext) -> None:
    spans = [
        ("PARTY", name, i % 3)
        for i, name in enumerate(
            ["Acme Corp.", "ACME Corporation", "Acme Corporaton", "Acme Inc", "Beta LLC"] * 4
        )
    ] + [("JUDGE", "Edwards, Chief Judge", 0), ("JUDGE", "Chief Judge Edwards", 1)]
    doc = build(spans)
    first = msgspec.json.encode(await resolve.run(doc, ctx))
    rnd = random.Random(7)
    for _ in range(5):
        shuffled = list(doc.mentions)
        rnd.shuffle(shuffled)
        again = Mentions(document_id=doc.document_id, chunk_ids=doc.chunk_ids, mentions=shuffled)
        assert msgspec.json.encode(await resolve.run(again, ctx)) == first
    rel = msgspec.json.encode(await relate.run(msgspec.json.decode(first, type=Resolved), ctx))
    shuffled_resolved = msgspec.json.decode(first, type=Resolved)
    rnd.shuffle(shuffled_resolved.mentions)
    rnd.shuffle(shuffled_resolved.canonicals)
    assert msgspec.json.encode(await relate.run(shuffled_resolved, ctx)) == rel


async def test_documents_carry_their_own_names(
    ctx: StageContext, registry: CountingRegistry
) -> None:
    a = await resolve.run(build([("PARTY", "The Acme Company", 0)], name="a.txt"), ctx)
    b = await resolve.run(build([("PARTY", "ACME Corporation", 0)], name="b.txt"), ctx)
    c = await resolve.run(build([("PARTY", "Acme, Inc.", 0)], name="c.txt"), ctx)
    assert a.canonicals[0].id == b.canonicals[0].id == c.canonicals[0].id
    assert [x.canonicals[0].name for x in (a, b, c)] == [
        "The Acme Company",
        "ACME Corporation",
        "Acme, Inc.",
    ]
    assert [e.name for e in await registry.list(PROJECT)] == ["ACME Corporation"]


async def test_bad_mentions_are_document_errors(ctx: StageContext) -> None:
    doc = build([("PARTY", "Acme", 0)])
    bad_type = msgspec.structs.replace(doc.mentions[0], type="SPACESHIP")
    foreign = msgspec.structs.replace(doc.mentions[0], document_id=uuid.uuid4())
    lost = msgspec.structs.replace(doc.mentions[0], chunk_id=uuid.uuid4())
    for mention, code in ((bad_type, "unknown_entity_type"), (foreign, "foreign_mention")):
        with pytest.raises(DocumentError) as info:
            await resolve.run(msgspec.structs.replace(doc, mentions=[mention]), ctx)
        assert info.value.code == code
    with pytest.raises(DocumentError) as info:
        await resolve.run(msgspec.structs.replace(doc, mentions=[lost]), ctx)
    assert info.value.code == "unknown_chunk"
    resolved = await resolve.run(doc, ctx)
    stray = msgspec.structs.replace(resolved.mentions[0], canonical_id=uuid.uuid4())
    with pytest.raises(DocumentError) as info:
        await relate.run(msgspec.structs.replace(resolved, mentions=[stray]), ctx)
    assert info.value.code == "unknown_canonical"


async def test_large_document_runs_in_process_pool(ctx: StageContext) -> None:
    spans = [("PARTY", f"Party Number {i % 700} Inc", i % 5) for i in range(resolve.CPU_THRESHOLD)]
    doc = build(spans, n_chunks=5)
    inline = resolve.plan(PROJECT, doc)
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        ctx.executor = pool
        out = await resolve.run(doc, ctx)
    assert (out.mentions, out.canonicals) == inline
    assert len(out.canonicals) == 700


async def test_relate_edges_weights_and_ids(ctx: StageContext) -> None:
    doc = build(
        [
            ("PARTY", "Acme Corp.", 0),
            ("PARTY", "Jones", 0),
            ("PARTY", "Acme Corporation", 0),  # same canonical twice in a chunk: one pair
            ("PARTY", "Acme Inc", 1),
            ("PARTY", "Jones", 1),
            ("DATE", "1997-11-07", 1),
            ("PARTY", "Jones", 2),
            ("PARTY", "The Company", 2),  # no canonical: in no co-occurrence
        ],
        n_chunks=4,  # chunk 3 has no mentions
    )
    resolved = await resolve.run(doc, ctx)
    out = await relate.run(resolved, ctx)
    assert isinstance(out, Related) and out.document_id == doc.document_id
    kinds = Counter(r.type for r in out.relationships)
    # HAS_CHUNK, MENTIONS and REFERS_TO are the relationships view's (test_derived_edges).
    assert kinds == {"CO_OCCURS_WITH": 3}
    assert all(r.project == PROJECT and r.document_id == doc.document_id for r in out.relationships)
    assert len({r.id for r in out.relationships}) == len(out.relationships)
    assert out.relationships == sorted(
        out.relationships, key=lambda r: (r.type, r.source_id, r.target_id)
    )

    cid = by_text(resolved)
    acme, jones, date = cid["Acme Corp."], cid["Jones"], cid["1997-11-07"]
    assert acme and jones and date
    co = {(r.source_id, r.target_id): r for r in out.relationships if r.type == "CO_OCCURS_WITH"}
    expect = {frozenset((acme, jones)): 2.0, frozenset((acme, date)): 1.0}
    expect[frozenset((jones, date))] = 1.0
    assert {frozenset(k): r.weight for k, r in co.items()} == expect
    for (src, dst), r in co.items():
        assert str(src) < str(dst)
        assert r.id == ids.relationship_id("CO_OCCURS_WITH", src, dst, doc.document_id)
        assert (r.source_type, r.target_type) == ("CANONICAL", "CANONICAL")


async def test_cooccurrence_cap_keeps_most_mentioned(ctx: StageContext) -> None:
    cap = relate.MAX_COOCCURRING
    names = [f"Entity {i} Holdings" for i in range(cap + 10)]  # digits: never fuzzy-merged
    # The first ten names are mentioned twice in chunk 0, so they must survive the cap.
    spans = [("ORGANIZATION", n, 0) for n in names] + [("ORGANIZATION", n, 0) for n in names[:10]]
    resolved = await resolve.run(build(spans, n_chunks=1), ctx)
    assert len(resolved.canonicals) == cap + 10
    out = await relate.run(resolved, ctx)
    co = [r for r in out.relationships if r.type == "CO_OCCURS_WITH"]
    assert len(co) == cap * (cap - 1) // 2
    kept = {r.source_id for r in co} | {r.target_id for r in co}
    by_name = by_text(resolved)
    assert {by_name[n] for n in names[:10]} <= kept
    # the 40 of the 60 once-mentioned that make the cut are the least ids (ties by id)
    once = sorted(i for n in names[10:] if (i := by_name[n]) is not None)
    assert kept - {by_name[n] for n in names[:10]} == set(once[: cap - 10])


# --- end to end on a real opinion ---------------------------------------------------

_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_PATTERNS = {
    "ORGANIZATION": r"(?:[A-Z][\w.'&]*(?:-\s*[a-z]+)?\s+){1,4}(?:Co\.|Company|Corp\.|Inc\.)",
    "CASE_CITATION": r"\b\d{1,4}\s+(?:F\.\s?[23]d|F\.|U\.S\.|A\.2d)\s+\d{1,5}\b",
    "DATE": rf"\b(?:{_MONTHS})\s+\d{{1,2}},\s+\d{{4}}\b",
    "JUDGE": r"\b(?:Chief\s+Judge\s+)?[A-Z][a-z]+,\s+(?:Chief|Circuit)\s+Judges?\b",
    "PARTY": r"\b(?:IFIC|Ideal)\b",
}


def opinion_mentions(text: str, chunk_chars: int = 2000, overlap: int = 200) -> Mentions:
    """Fixed overlapping windows and regex mentions: stands in for chunk and entities."""
    doc_id = ids.document_id(PROJECT, "courtlistener/opinions_txt/opinion_text.txt")
    starts = list(range(0, max(len(text) - overlap, 1), chunk_chars - overlap))
    chunk_ids = [ids.chunk_id(doc_id, i) for i in range(len(starts))]
    mentions = []
    for etype, pattern in _PATTERNS.items():
        for match in re.finditer(pattern, text):
            surface = match.group(0)
            norm = " ".join(surface.split())
            if etype == "DATE":
                norm = datetime.strptime(norm, "%B %d, %Y").date().isoformat()
            index = max(i for i, s in enumerate(starts) if s <= match.start())
            mentions.append(
                Mention(
                    id=ids.mention_id(doc_id, etype, match.start(), match.end()),
                    document_id=doc_id,
                    chunk_id=chunk_ids[index],
                    type=etype,
                    text=surface,
                    normalized=norm,
                    start=match.start(),
                    end=match.end(),
                )
            )
    return Mentions(document_id=doc_id, chunk_ids=chunk_ids, mentions=mentions)


async def test_real_opinion_end_to_end(
    ctx: StageContext, registry: CountingRegistry, corpus: Path
) -> None:
    text = (corpus / "courtlistener/opinions_txt/opinion_text.txt").read_text()
    doc = opinion_mentions(text)
    assert len(doc.mentions) > 50 and len(doc.chunk_ids) > 10
    resolved, again = await asyncio.gather(
        resolve.run(doc, ctx),
        resolve.run(msgspec.structs.replace(doc, mentions=doc.mentions[::-1]), ctx),
    )
    assert msgspec.json.encode(resolved) == msgspec.json.encode(again)

    # "International Fidelity Insurance Company" and "Interna-\ntional Fidelity
    # Insurance Co." are one party; so are the three spellings of the Ideal appellants.
    ific = [m for m in resolved.mentions if "tional Fidelity Insurance" in m.text]
    assert len({m.text for m in ific}) >= 2
    assert len({m.canonical_id for m in ific}) == 1 and ific[0].canonical_id is not None
    member_keys = {entity_key(m.type, m.text, m.normalized) for m in ific}
    assert "international fidelity insurance" in member_keys and len(member_keys) >= 2
    keys = {c.id: c.key for c in resolved.canonicals}
    assert keys[ific[0].canonical_id] == min(member_keys)  # the cluster's least key
    assert "ideal electronic security" in keys.values()

    out = await relate.run(resolved, ctx)
    kinds = Counter(r.type for r in out.relationships)
    linked = [m for m in resolved.mentions if m.canonical_id is not None]
    assert set(kinds) == {"CO_OCCURS_WITH"}  # the other kinds are derived by the view
    assert len(linked) == sum(1 for m in doc.mentions if entity_key(m.type, m.text, m.normalized))
    # Co-occurrence recomputed the slow way: pairs of distinct canonicals per chunk.
    per_chunk: dict[uuid.UUID, set[uuid.UUID]] = {}
    for m in linked:
        assert m.canonical_id is not None
        per_chunk.setdefault(m.chunk_id, set()).add(m.canonical_id)
    assert all(len(s) <= relate.MAX_COOCCURRING for s in per_chunk.values())
    expected: Counter[tuple[str, str]] = Counter()
    for members in per_chunk.values():
        for a, b in combinations(sorted(str(x) for x in members), 2):
            expected[(a, b)] += 1
    got = {
        (str(r.source_id), str(r.target_id)): r.weight
        for r in out.relationships
        if r.type == "CO_OCCURS_WITH"
    }
    assert got == {k: float(v) for k, v in expected.items()}
    assert max(got.values()) > 1  # some pair shares more than one chunk
    assert registry.calls == 2
    assert {c.id for c in await registry.list(PROJECT)} == {c.id for c in resolved.canonicals}


def test_relationship_ids_in_bulk_are_the_single_ids() -> None:
    """The relate stage's bulk ids are byte for byte ``relationship_id``'s (uuid5): a
    re-run of a document processed before must upsert, not duplicate, its edges."""
    import random

    from accelerated.ids import relationship_id, relationship_ids

    rng = random.Random(7)
    nodes = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(12)]
    pairs = [(rng.choice(nodes), rng.choice(nodes)) for _ in range(300)]
    for scope in (None, uuid.UUID(int=rng.getrandbits(128))):
        for rtype in ("CO_OCCURS_WITH", "CITES"):
            bulk = relationship_ids(rtype, pairs, scope)
            assert bulk == [relationship_id(rtype, a, b, scope) for a, b in pairs]
            assert all(u.version == 5 and u.variant == uuid.RFC_4122 for u in bulk)
    assert relationship_ids("CO_OCCURS_WITH", []) == []
