"""The entities stage computes a contextual backend's document context off the event loop,
in one pool call with the chunks, and caches it per document; eyecite's sped-up steps give
eyecite's own results."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from accelerated.backends import Backends
from accelerated.entities import RawMention, eyecite_speed
from accelerated.entities.rules import RulesBackend, extract_text, shared_tokenizer
from accelerated.models import Chunk, Chunked, SourceRef
from accelerated.settings import Settings
from accelerated.stages import StageContext
from accelerated.stages import entities as entities_stage

DOC_ID = uuid.UUID("00000000-0000-4000-8000-0000000000d1")
HEAD = "From: ecf@wied.uscourts.gov\nSubject: Activity in Case 2:19-cv-00123 Roe v. Poe\n"
BODY = "The Court grants the motion of Jane Roe.\n" * 3


class NoBlobs:
    async def read(self, source: SourceRef, max_bytes: int) -> bytes:
        raise AssertionError("entities never reads blobs")


class DictCache:
    def __init__(self) -> None:
        self.data: dict[tuple[str, str], bytes] = {}

    async def get_many(self, version: str, hashes: Sequence[str]) -> list[bytes | None]:
        return [self.data.get((version, h)) for h in hashes]

    async def put_many(self, version: str, items: dict[str, bytes]) -> None:
        self.data.update({(version, h): v for h, v in items.items()})


@dataclass(frozen=True)
class Watched(RulesBackend):
    """The rules, noting the thread of every context computation and chunk call."""

    threads: list[int] = field(default_factory=list, compare=False)
    chunk_calls: list[int] = field(default_factory=list, compare=False)

    def document_context(self, text: str) -> str:
        self.threads.append(threading.get_ident())
        return super().document_context(text)

    def extract_in_context(self, texts: list[str], context: str) -> list[list[RawMention]]:
        self.chunk_calls.append(len(texts))
        return super().extract_in_context(texts, context)


def chunked(*texts: str) -> Chunked:
    chunks, pos = [], 0
    for i, text in enumerate(texts):
        chunks.append(
            Chunk(id=uuid.uuid4(), document_id=DOC_ID, index=i, text=text, start=pos,
                  end=pos + len(text), page_start=1, page_end=1)
        )  # fmt: skip
        pos += len(text)
    return Chunked(document_id=DOC_ID, chunks=chunks)


def stage_ctx(backend: RulesBackend, cache: DictCache | None) -> StageContext:
    return StageContext(
        project="p",
        settings=Settings(_env_file=None),  # type: ignore[call-arg]
        blobs=NoBlobs(),
        canonical=None,  # type: ignore[arg-type]
        chunk_cache=cache,
        backends=Backends(entities=backend, blobs=None),  # type: ignore[arg-type]
    )


async def test_context_is_computed_off_the_loop_with_the_chunks() -> None:
    backend = Watched()
    doc = chunked(HEAD, BODY, BODY)  # the same text twice: computed once
    out = await entities_stage.run(doc, stage_ctx(backend, None))
    assert backend.threads and threading.get_ident() not in backend.threads
    assert backend.chunk_calls == [2]  # one call: the two distinct chunks
    courts = {(m.text, m.normalized) for m in out.mentions if m.type == "COURT"}
    assert ("The Court", "wied") in courts  # the context reached the later chunks
    assert out.mentions == entities_stage.assemble(
        doc, entities_stage.backend_results(RulesBackend(), doc)
    )


async def test_context_is_cached_per_document() -> None:
    backend, cache = Watched(), DictCache()
    doc = chunked(HEAD, BODY)
    first = await entities_stage.run(doc, stage_ctx(backend, cache))
    assert len(backend.threads) == 1 and len(cache.data) == 3  # two chunks, one context
    second = await entities_stage.run(doc, stage_ctx(backend, cache))
    assert len(backend.threads) == 1 and backend.chunk_calls == [2]  # all from the cache
    assert second == first

    # a corrupt context entry is recomputed, never read as some other context
    for key, value in list(cache.data.items()):
        if value.startswith(b'"'):
            cache.data[key] = b"not json"
    assert await entities_stage.run(doc, stage_ctx(backend, cache)) == first
    assert len(backend.threads) == 2

    # a known context with a chunk missing: only that chunk is computed
    cache2 = DictCache()
    await entities_stage.run(doc, stage_ctx(backend, cache2))
    chunk_key = entities_stage.keyed_hash(
        entities_stage.text_hash(BODY), entities_stage.context_of(backend, doc)
    )
    del cache2.data[(backend.version, chunk_key)]
    assert await entities_stage.run(doc, stage_ctx(backend, cache2)) == first
    assert backend.chunk_calls[-1] == 1


def test_context_key_is_not_a_chunk_key() -> None:
    sha = entities_stage.text_hash("x")
    assert entities_stage.context_hash([sha], [0]) != sha
    assert entities_stage.context_hash([sha], [0]) != entities_stage.context_hash([sha], [5])


# --- eyecite's sped-up steps --------------------------------------------------------

CITING = (
    "In Ashcroft v. Iqbal, 556 U.S. 662, 678 (2009), and Doe v. Roe, 123 F.3d 456 "
    "(9th Cir. 1997), the courts held so. Iqbal, 556 U.S. at 679. See also Smith v. "
    "Jones, 45 F. Supp. 2d 100 (S.D.N.Y. 1999); Iqbal, 680. Under 42 U.S.C. § 1983, "
    "and Brown v. Board, 347 U. S. 483 (1954) (Warren, C. J.), Brown, at 495."
)


@pytest.mark.parametrize(
    "paren", ["9th Cir.", "S.D.N.Y.", "D. Mass", "Cal. Ct. App.", "N.D.", "", "Zz.", "2d Cir"]
)
def test_court_by_paren_equals_eyecite(paren: str) -> None:
    eyecite_speed.install()
    original = eyecite_speed._ORIGINAL["get_court_by_paren"]
    assert eyecite_speed.court_by_paren(paren) == original(paren)


def test_citations_are_eyecite_s_own() -> None:
    tok = shared_tokenizer()
    eyecite_speed.install()
    fast = extract_text(CITING, tok)
    eyecite_speed.uninstall()
    try:
        install = eyecite_speed.install
        eyecite_speed.install = lambda: None  # type: ignore[assignment]
        slow = extract_text(CITING, tok)
    finally:
        eyecite_speed.install = install  # type: ignore[assignment]
        eyecite_speed.install()
    cites = [m for m in fast if m.type in ("CASE_CITATION", "STATUTE")]
    assert len(cites) >= 5
    assert fast == slow


class Tagger:
    """An async backend double: one mention per text, counting its calls."""

    mode = "async"
    version = "tagger-1"

    def __init__(self) -> None:
        self.calls: list[int] = []

    async def extract_async(self, texts: list[str]) -> list[list[RawMention]]:
        self.calls.append(len(texts))
        return [[RawMention("PERSON", 0, 4, t[:4].casefold())] for t in texts]


class Split:
    """A split backend (as rules+transformers): the rules in the pool, a tagger alongside."""

    mode = "batched"

    def __init__(self) -> None:
        self.cpu_part, self.async_part = Watched(), Tagger()
        self.version = "split-test-1"

    def merge(self, cpu: list[RawMention], other: list[RawMention]) -> list[RawMention]:
        return sorted([*cpu, *other], key=lambda m: (m.start, m.end, m.type))


async def test_split_backend_gets_its_pool_part_context_in_the_pool() -> None:
    backend, cache = Split(), DictCache()
    doc = chunked(HEAD, BODY, BODY)
    ctx = stage_ctx(backend, cache)  # type: ignore[arg-type]
    first = await entities_stage.run(doc, ctx)
    rules = backend.cpu_part
    assert rules.threads and threading.get_ident() not in rules.threads
    assert rules.chunk_calls == [2] and backend.async_part.calls == [2]
    courts = {(m.text, m.normalized) for m in first.mentions if m.type == "COURT"}
    assert ("The Court", "wied") in courts
    assert any(m.type == "PERSON" for m in first.mentions)  # the async part's
    second = await entities_stage.run(doc, stage_ctx(backend, cache))  # type: ignore[arg-type]
    assert second == first
    assert len(rules.threads) == 1 and backend.async_part.calls == [2]  # all cached
