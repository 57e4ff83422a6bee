"""Rules entity backend and the entities stage (with and without the chunk cache)."""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from accelerated.entities import EntityBackend, RawMention, get_backend
from accelerated.entities.rules import RulesBackend
from accelerated.errors import ConfigError
from accelerated.ids import mention_id
from accelerated.models import ENTITY_TYPES, CanonicalEntity, Cleaned, SourceRef
from accelerated.settings import Settings
from accelerated.stages import StageContext
from accelerated.stages import chunk as chunk_stage
from accelerated.stages import entities as entities_stage
from accelerated.stages.clean import clean_text

DOC_ID = uuid.UUID("00000000-0000-4000-8000-000000000002")


class NoBlobs:
    async def read(self, source: SourceRef, max_bytes: int) -> bytes:
        raise AssertionError("entities never reads blobs")


class NoCanonical:
    async def get_or_create(
        self, project: str, entities: Sequence[CanonicalEntity]
    ) -> list[CanonicalEntity]:
        raise AssertionError("entities never touches canonicals")


class DictChunkCache:
    """In-memory double of OUR ChunkResultCache protocol, counting traffic."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], bytes] = {}
        self.hits = 0
        self.puts = 0

    async def get_many(self, version: str, hashes: Sequence[str]) -> list[bytes | None]:
        out = [self.data.get((version, h)) for h in hashes]
        self.hits += sum(v is not None for v in out)
        return out

    async def put_many(self, version: str, items: dict[str, bytes]) -> None:
        self.puts += len(items)
        self.data.update({(version, h): v for h, v in items.items()})


@pytest.fixture(scope="module")
def backend() -> EntityBackend:
    return get_backend("rules")


def extract(backend: EntityBackend, text: str) -> list[RawMention]:
    found = backend.extract([text])[0]
    for m in found:
        assert m.type in ENTITY_TYPES
        assert 0 <= m.start < m.end <= len(text)
        assert text[m.start : m.end].strip() == text[m.start : m.end]
    return found


def pick(found: list[RawMention], text: str, etype: str) -> dict[str, str]:
    return {text[m.start : m.end]: m.normalized for m in found if m.type == etype}


# --- backend on short strings ----------------------------------------------------------

SAMPLE = (
    "UNITED STATES DISTRICT COURT\nNORTHERN DISTRICT OF CALIFORNIA\n"
    "JOHN DOE, Plaintiff,\nv.\nACME CORPORATION, Defendant.\n"
    "Case No. 1:20-cv-01234-ABC\n"
    "Before: KOZINSKI, REINHARDT and Smith, Circuit Judges.\n"
    "Chief Judge Robert A. Katzmann wrote for the court. SOUTER, J., dissented. "
    "Dr. Jane Roe testified; John Smith, Esq. appeared.\n"
    "See Brown v. Board of Education, 347 U.S. 483 (1954); 42 U.S.C. § 1983; "
    "Smith v. Jones, 123 F.3d 456 (9th Cir. 1997). Id. at 5.\n"
    "Acme Corp. agreed to pay $1,234.56, then $3 million and USD 500 on January 5, 2001, "
    "5 January 2001 and 01/05/2001, but not on February 30, 2001 or 13/45/2001. "
    "No. 12-3456. The Supreme Court of the United States agreed."
)


def test_rules_all_types_on_sample(backend: EntityBackend) -> None:
    found = extract(backend, SAMPLE)
    assert {m.type for m in found} == set(ENTITY_TYPES)
    assert pick(found, SAMPLE, "CASE_CITATION") == {
        "347 U.S. 483": "347 U.S. 483",
        "123 F.3d 456": "123 F.3d 456",
    }
    assert pick(found, SAMPLE, "STATUTE") == {"42 U.S.C. § 1983": "42 U.S.C. § 1983"}
    courts = pick(found, SAMPLE, "COURT")
    assert courts["9th Cir."] == "ca9"
    assert courts["Supreme Court of the United States"] == "scotus"
    assert courts["UNITED STATES DISTRICT COURT\nNORTHERN DISTRICT OF CALIFORNIA"] == "cand"
    parties = pick(found, SAMPLE, "PARTY")
    assert parties["JOHN DOE"] == "john doe"
    assert parties["ACME CORPORATION"] == "acme corporation"
    assert {"Brown", "Board of Education", "Smith", "Jones"} <= set(parties)
    orgs = pick(found, SAMPLE, "ORGANIZATION")
    assert orgs["Acme Corp."] == orgs["ACME CORPORATION"] == "acme corp"
    judges = pick(found, SAMPLE, "JUDGE")
    assert {"KOZINSKI", "REINHARDT", "Smith", "Robert A. Katzmann", "SOUTER"} <= set(judges)
    assert pick(found, SAMPLE, "ATTORNEY") == {"John Smith": "john smith"}
    assert pick(found, SAMPLE, "PERSON") == {"Jane Roe": "jane roe"}
    assert pick(found, SAMPLE, "DOCKET_NUMBER") == {
        "1:20-cv-01234-ABC": "1:20-cv-01234-abc",
        "12-3456": "12-3456",
    }
    assert pick(found, SAMPLE, "DATE") == {
        "January 5, 2001": "2001-01-05",
        "5 January 2001": "2001-01-05",
        "01/05/2001": "2001-01-05",
    }
    assert pick(found, SAMPLE, "MONEY") == {
        "$1,234.56": "USD 1234.56",
        "$3 million": "USD 3000000",
        "USD 500": "USD 500",
    }


def test_same_type_overlaps_keep_longest(backend: EntityBackend) -> None:
    text = "Wire $2.5 billion to Bank of America, N.A. today."
    found = extract(backend, text)
    assert pick(found, text, "MONEY") == {"$2.5 billion": "USD 2500000000"}
    assert list(pick(found, text, "ORGANIZATION")) == ["Bank of America, N.A."]


def test_empty_and_blank_texts(backend: EntityBackend) -> None:
    assert backend.extract(["", "   \n  ", "plain words only"]) == [[], [], []]


def test_registry_and_versioning() -> None:
    with pytest.raises(ConfigError):
        get_backend("nope")
    assert RulesBackend(tokenizer="ahocorasick").version.endswith("+ahocorasick")
    default = RulesBackend()
    assert default.version.endswith(f"+{default.tokenizer}")
    with pytest.raises(ValueError):
        RulesBackend(tokenizer="bogus")


def test_tokenizers_agree_on_corpus_opinion(corpus: Path) -> None:
    text = clean_text((corpus / "eyecite/opinion.txt").read_text())[:30_000]
    fast = RulesBackend()
    slow = RulesBackend(tokenizer="ahocorasick")
    assert fast.extract([text]) == slow.extract([text])


# --- backend on real corpus documents -------------------------------------------------


def test_eyecite_citations_in_corpus_opinion(backend: EntityBackend, corpus: Path) -> None:
    text = clean_text((corpus / "eyecite/opinion.txt").read_text())
    found = extract(backend, text)
    cites = [m for m in found if m.type == "CASE_CITATION"]
    assert len(cites) > 50
    by_surface = {text[m.start : m.end]: m.normalized for m in cites}
    assert by_surface["539 U. S. 306"] == "539 U.S. 306"  # Grutter, normalised reporter
    assert by_surface["438 U. S. 265"] == "438 U.S. 265"  # Bakke
    assert any(n.startswith("438 U.S., at") for n in by_surface.values())  # short form
    assert not any(text[m.start : m.end].lower().startswith(("id.", "supra")) for m in found)
    judges = {m.normalized for m in found if m.type == "JUDGE"}
    assert {"kennedy", "ginsburg"} <= judges


def test_corpus_caption_court_and_attorneys(backend: EntityBackend, corpus: Path) -> None:
    text = clean_text((corpus / "courtlistener/opinions_txt/opinion_text.txt").read_text())
    found = extract(backend, text)
    parties = pick(found, text, "PARTY")
    assert parties["Ideal Electronic Security Co., Inc."] == "ideal electronic security co., inc."
    assert "International Fidelity Insurance Company" in parties
    courts = {m.normalized for m in found if m.type == "COURT"}
    assert "cadc" in courts  # "United States Court of Appeals FOR THE DISTRICT OF COLUMBIA CIRCUIT"
    assert {"john w. karr", "neil l. henrichsen"} <= {
        m.normalized for m in found if m.type == "ATTORNEY"
    }
    assert {"1997-09-03", "1997-11-07"} <= {m.normalized for m in found if m.type == "DATE"}
    assert {"96-7169", "96-7186"} <= {m.normalized for m in found if m.type == "DOCKET_NUMBER"}


def test_backend_runs_in_a_process_pool(backend: EntityBackend) -> None:
    clone = pickle.loads(pickle.dumps(backend))
    assert clone.version == backend.version
    with ProcessPoolExecutor(max_workers=1) as pool:
        remote = pool.submit(entities_stage.run_backend, backend, [SAMPLE]).result(timeout=120)
    assert remote == backend.extract([SAMPLE])


# --- the stage ---------------------------------------------------------------------------


def make_ctx(settings: Settings, cache: DictChunkCache | None) -> StageContext:
    return StageContext(
        project="p", settings=settings, blobs=NoBlobs(), canonical=NoCanonical(), chunk_cache=cache
    )


async def test_stage_cache_gives_identical_output(corpus: Path) -> None:
    settings = Settings(_env_file=None, chunk_chars=1200, chunk_overlap=300)
    text = clean_text((corpus / "eyecite/opinion.txt").read_text())[:40_000]
    doc = Cleaned(document_id=DOC_ID, text=text, pages=[], category="opinion")
    chunks = await chunk_stage.run(doc, make_ctx(settings, None))
    plain = await entities_stage.run(chunks, make_ctx(settings, None))

    cache = DictChunkCache()
    first = await entities_stage.run(chunks, make_ctx(settings, cache))
    # every distinct chunk, and the document's context (the rules backend reads one)
    assert cache.hits == 0 and cache.puts == len({c.text for c in chunks.chunks}) + 1
    second = await entities_stage.run(chunks, make_ctx(settings, cache))
    assert cache.hits == len(chunks.chunks) + 1
    assert plain == first == second

    # corrupt entries are recomputed, not trusted
    for key in cache.data:
        cache.data[key] = b"not json"
    assert await entities_stage.run(chunks, make_ctx(settings, cache)) == plain

    ms = plain.mentions
    assert plain.chunk_ids == [c.id for c in chunks.chunks]
    assert len(ms) > 100
    assert ms == sorted(ms, key=lambda m: (m.start, m.end, m.type))
    assert len({(m.start, m.end, m.type) for m in ms}) == len(ms)
    by_id = {c.id: c for c in chunks.chunks}
    for m in ms:
        assert m.text == text[m.start : m.end]
        assert m.id == mention_id(DOC_ID, m.type, m.start, m.end)
        assert by_id[m.chunk_id].start <= m.start and m.end <= by_id[m.chunk_id].end
    # the overlap regions produced no duplicates even though chunks overlap by 300 chars
    starts = [(m.start, m.type) for m in ms]
    assert len(starts) == len(set(starts))


async def test_stage_empty_document(settings: Settings) -> None:
    doc = Cleaned(document_id=DOC_ID, text="", pages=[], category="other")
    chunks = await chunk_stage.run(doc, make_ctx(settings, None))
    out = await entities_stage.run(chunks, make_ctx(settings, DictChunkCache()))
    assert out.mentions == [] and out.chunk_ids == [] and out.document_id == DOC_ID
