"""clean and chunk stages on real corpus documents and on short strings."""

from __future__ import annotations

import email
import itertools
import re
import uuid
from collections.abc import Sequence
from email import policy
from pathlib import Path

import pytest

from accelerated.errors import DocumentError
from accelerated.ids import chunk_id
from accelerated.models import CATEGORIES, CanonicalEntity, Cleaned, Extracted, Page, SourceRef
from accelerated.settings import Settings
from accelerated.stages import StageContext
from accelerated.stages import chunk as chunk_stage
from accelerated.stages import clean as clean_stage
from accelerated.stages.chunk import chunk_spans
from accelerated.stages.clean import categorize, clean_pages, clean_text

DOC_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")


class NoBlobs:
    async def read(self, source: SourceRef, max_bytes: int) -> bytes:
        raise AssertionError("clean/chunk never read blobs")


class NoCanonical:
    async def get_or_create(
        self, project: str, entities: Sequence[CanonicalEntity]
    ) -> list[CanonicalEntity]:
        raise AssertionError("clean/chunk never touch canonicals")


def make_ctx(settings: Settings) -> StageContext:
    return StageContext(project="p", settings=settings, blobs=NoBlobs(), canonical=NoCanonical())


def read_text(path: Path) -> tuple[str, str]:
    """Plain-Python reading (the extract stage is someone else's): (text, format)."""
    raw = path.read_bytes()
    if path.suffix == ".eml":
        msg = email.message_from_bytes(raw, policy=policy.default)
        headers = "\n".join(f"{k}: {msg[k]}" for k in ("From", "To", "Subject", "Date") if msg[k])
        body = msg.get_body(preferencelist=("plain", "html"))
        content = body.get_content() if body is not None else ""
        return f"{headers}\n\n{re.sub(r'<[^>]+>', ' ', content)}", "eml"
    text = raw.decode("utf-8", "replace")
    if path.suffix == ".xml":
        return re.sub(r"<[^>]+>", " ", text), "xml"
    return text, "txt"


# --- clean ---------------------------------------------------------------------------


def test_clean_text_normalises() -> None:
    raw = (
        "The ﬁrst\u00a0\u00a0defen-\n  dant\x07 said:   hello \t world  \n\n\n\n\n"
        "End\u200b.\r\nSmith-\nJones"
    )
    assert clean_text(raw) == "The first defendant said: hello world\n\nEnd.\nSmith-\nJones"


def test_clean_text_is_idempotent_on_corpus(corpus: Path) -> None:
    text = (corpus / "courtlistener/opinions_txt/opinion_text.txt").read_text()
    once = clean_text(text)
    assert clean_text(once) == once
    assert "Interna-\n" in text and "International Fidelity Insurance Co." in once
    assert not re.search(r"[ \t]\n|\n{3,}| {2,}", once)


def test_clean_pages_remaps_ranges() -> None:
    pages_raw = ["  Page one  text \n\n\n", "", "page   two\x00 defen-\ndant ", "three"]
    starts, text = [], ""
    for p in pages_raw:
        starts.append(len(text))
        text += p
    pages = [Page(n, s, s + len(p)) for n, s, p in zip(range(5, 9), starts, pages_raw, strict=True)]
    cleaned, out = clean_pages(text, pages)
    assert cleaned == "Page one text\n\npage two defendant\n\nthree"
    assert [p.number for p in out] == [5, 6, 7, 8]
    assert out[0].start == 0 and out[-1].end == len(cleaned)
    assert all(a.end == b.start for a, b in itertools.pairwise(out))
    assert cleaned[out[0].start : out[0].end] == "Page one text\n\n"
    assert out[1].start == out[1].end  # empty page: zero width
    assert cleaned[out[2].start : out[2].end] == "page two defendant\n\n"
    assert cleaned[out[3].start : out[3].end] == "three"


def test_clean_rejects_bad_pages() -> None:
    with pytest.raises(DocumentError) as err:
        clean_pages("abcdef", [Page(1, 0, 4), Page(2, 2, 1), Page(3, 1, 6)])
    assert err.value.code == "bad_pages"


async def test_clean_stage_on_corpus_opinion(corpus: Path, settings: Settings) -> None:
    text = (corpus / "eyecite/opinion.txt").read_text()
    third = len(text) // 3
    pages = [Page(1, 0, third), Page(2, third, 2 * third), Page(3, 2 * third, len(text))]
    doc = Extracted(
        document_id=DOC_ID, sha256="0" * 64, format="txt", method="plain", text=text, pages=pages
    )
    out = await clean_stage.run(doc, make_ctx(settings))
    assert out.category == "opinion"
    assert [p.number for p in out.pages] == [1, 2, 3]
    for before, after in zip(pages, out.pages, strict=True):
        assert out.text[after.start : after.end].strip() == clean_text(
            text[before.start : before.end]
        )


@pytest.mark.parametrize(
    ("text", "fmt", "expected"),
    [
        (
            "IN THE UNITED STATES DISTRICT COURT\nORDER GRANTING MOTION TO DISMISS\n"
            "IT IS HEREBY ORDERED that the motion is granted.",
            "pdf",
            "order",
        ),
        (
            "PLAINTIFF'S MOTION FOR SUMMARY JUDGMENT\nMEMORANDUM OF POINTS AND AUTHORITIES\n"
            "Plaintiff respectfully moves the Court ...\nRespectfully submitted,",
            "pdf",
            "motion_brief",
        ),
        (
            "LICENSE AGREEMENT\nThis License Agreement is made and entered into by Acme Corp. "
            '("Licensor") and Beta LLC.\nNOW, THEREFORE, the parties agree as follows:',
            "docx",
            "contract",
        ),
        (
            "From: a@example.com\nTo: b@example.com\nSubject: hello\n\nDear Mr. Smith,\n"
            "Please find attached.\nSincerely,",
            "txt",
            "correspondence",
        ),
        (
            "Subject: Notice of order\n\nIT IS ORDERED that lunch is at noon.",
            "eml",
            "correspondence",
        ),
        ("Grocery list: apples, pears, milk.", "txt", "other"),
    ],
)
def test_categorize_examples(text: str, fmt: str, expected: str) -> None:
    assert categorize(clean_text(text), fmt) == expected


def test_categorize_accuracy_on_labelled_corpus(corpus: Path) -> None:
    """Labels from the corpus folders (opinions, CUAD/EDGAR contracts, court e-mails)."""
    labelled: list[tuple[Path, str]] = []
    for pattern, label in (
        ("courtlistener/opinions_txt/*.txt", "opinion"),
        ("eyecite/*.txt", "opinion"),
        ("juriscraper/opinions_txt/*.txt", "opinion"),
        ("courtlistener/columbia_opinion_xml/*.xml", "opinion"),
        ("cuad/contracts_txt/*.txt", "contract"),
        ("lexnlp/edgar_contracts_txt/*.txt", "contract"),
        ("*/*email*/*.eml", "correspondence"),
    ):
        labelled += [(p, label) for p in sorted(corpus.glob(pattern))]
    assert len(labelled) > 100
    right = 0
    for path, label in labelled:
        text, fmt = read_text(path)
        predicted = categorize(clean_text(text), fmt)
        assert predicted in CATEGORIES
        right += predicted == label
    assert right / len(labelled) >= 0.9, f"{right}/{len(labelled)}"


# --- chunk ---------------------------------------------------------------------------


def check_invariants(text: str, spans: list[tuple[int, int]], size: int) -> None:
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    for (s1, e1), (s2, _e2) in itertools.pairwise(spans):
        assert s1 < s2 <= e1  # contiguous with overlap, always advancing
    for s, e in spans:
        assert 0 < e - s <= size


async def test_chunk_stage_on_multipage_corpus_doc(corpus: Path, settings: Settings) -> None:
    raw = (corpus / "courtlistener/opinions_txt/opinion_text.txt").read_text()
    parts = (
        raw.split("\f") if "\f" in raw else [raw[i : i + 9000] for i in range(0, len(raw), 9000)]
    )
    pages, pos = [], 0
    for n, p in enumerate(parts, start=1):
        pages.append(Page(n, pos, pos + len(p)))
        pos += len(p)
    text, new_pages = clean_pages("".join(parts), pages)
    doc = Cleaned(document_id=DOC_ID, text=text, pages=new_pages, category="opinion")
    ctx = make_ctx(settings)
    out = await chunk_stage.run(doc, ctx)
    again = await chunk_stage.run(doc, ctx)
    assert out == again
    chunks = out.chunks
    assert len(chunks) > 3 and len(new_pages) > 2
    check_invariants(text, [(c.start, c.end) for c in chunks], settings.chunk_chars)
    for i, c in enumerate(chunks):
        assert c.index == i and c.id == chunk_id(DOC_ID, i) and c.document_id == DOC_ID
        assert c.text == text[c.start : c.end]
        first = next(p for p in new_pages if p.start <= c.start < p.end)
        last = next(p for p in new_pages if p.start < c.end <= p.end)
        assert (c.page_start, c.page_end) == (first.number, last.number)
        if c.end < len(text):  # never split a word when whitespace was available
            assert text[c.end - 1].isspace() or text[c.end].isspace()
        if i:
            assert text[c.start - 1].isspace() and not text[c.start].isspace()
    assert any(c.page_start != c.page_end for c in chunks)
    # overlap is roughly the configured one
    overlaps = [a.end - b.start for a, b in itertools.pairwise(chunks)]
    assert max(overlaps) <= settings.chunk_overlap and min(overlaps) >= 0


def test_chunk_prefers_paragraph_then_sentence() -> None:
    para = "word " * 170 + "\n\n" + "word " * 100
    spans = chunk_spans(para, 1000, 100)
    assert para[: spans[0][1]].endswith("\n\n")
    sent = "word " * 170 + "end. " + "word " * 100
    spans = chunk_spans(sent, 1000, 100)
    assert sent[: spans[0][1]].endswith("end. ")


def test_chunk_edge_cases() -> None:
    assert chunk_spans("", 100, 10) == []
    solid = "x" * 250  # no whitespace at all: hard cuts are the only option
    spans = chunk_spans(solid, 100, 10)
    check_invariants(solid, spans, 100)
    short = "a few words"
    assert chunk_spans(short, 100, 10) == [(0, len(short))]
    with pytest.raises(Exception, match="chunk_overlap"):
        chunk_spans("abc", 10, 10)


async def test_chunk_empty_document(settings: Settings) -> None:
    doc = Cleaned(document_id=DOC_ID, text="", pages=[Page(1, 0, 0)], category="other")
    out = await chunk_stage.run(doc, make_ctx(settings))
    assert out.chunks == [] and out.document_id == DOC_ID
