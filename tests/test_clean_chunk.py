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
from accelerated.stages import StageContext, clean
from accelerated.stages import chunk as chunk_stage
from accelerated.stages import clean as clean_stage
from accelerated.stages.chunk import chunk_spans
from accelerated.stages.clean import categorize, clean_pages, clean_text
from tests.conftest import EXAMPLES

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


# Invented lines per rule of ``clean.RULES`` (by index), each matched by its rule: for
# every word of the rule's prefilter, one line in which it is the only such word.
_RULE_SAMPLES: dict[int, tuple[str, ...]] = {
    0: ("Justice Roe delivered the opinion of the Court.",),
    1: ("PER CURIAM.", "MEMORANDUM OPINION AND ORDER"),
    2: ("The Opinion of the Court follows", "SYLLABUS"),
    3: ("ROE, J., delivered", "ROE, J., dissenting.", "POE, J. concurring", "DOE, J., wrote"),
    4: ("Mary Roe, Presiding Judge", "Ann Roe, Associate Justice", "ROE, J."),
    5: (
        "Decided March 3, 2020",
        "Filed: 4 May 2021",
        "Promulgated June 1, 2019",
        "Argued Jan. 5, 2018",
        "Submitted on May 2, 2017",
        "Decision Date: 3/4/2016",
    ),
    6: ("Jane Poe, for the appellants.",),
    7: ("Appeal from the District Court", "On Writ of Certiorari", "Appeal of Jane Roe"),
    8: ("Before: ROE, POE and DOE", "ROE and POE, JJ."),
    9: ("FINDINGS OF FACT and CONCLUSIONS OF LAW",),
    10: ("In our opinion the claim fails.", "Slip Op. 12"),
    11: ("Court of Appeals of Nowhere", "Nowhere Supreme Court"),
    12: (
        "For these reasons we affirm.",
        "Thus we reverse.",
        "So we vacate it.",
        "Here we hold so.",
        "Last, we conclude.",
    ),
    13: ("AFFIRMED", "REVERSED", "REMANDED"),
    14: ("See 123 U.S. 456 (1890).",),
    15: ("IT IS HEREBY ORDERED that the motion is granted.",),
    16: ("ORDER GRANTING MOTION",),
    17: ("SCHEDULING ORDER",),
    18: ("SO ORDERED.", "JUDGMENT"),
    19: ("MEMORANDUM OF LAW IN SUPPORT",),
    20: ("MOTION TO DISMISS", "Motion for Relief"),
    21: ("BRIEF OF APPELLANT", "COMPLAINT", "PETITION", "REPLY", "ANSWER"),
    22: ("Plaintiff respectfully moves this Court", "Roe submits the Court"),
    23: ("Respectfully submitted,", "WHEREFORE, Roe prays"),
    24: ("PRELIMINARY STATEMENT", "ARGUMENT", "STATEMENT OF FACTS"),
    25: ("Attorneys for Plaintiff",),
    26: ("This Services Agreement is made as of May 1",),
    27: ("IN WITNESS WHEREOF, signed.", "NOW, THEREFORE, it is"),
    28: ("MASTER SERVICES AGREEMENT", "SERVICE CONTRACT"),
    29: ("The parties hereby agree as follows:", "hereinafter referred to as Acme"),
    30: ("WHEREAS, the Company wishes to sell;",),
    31: ("the parties hereto", "Acme, hereinafter Seller"),
    32: ("EX-10.1", "EXHIBIT 10.2"),
    33: ("a Licensor", "the Licensee", "a Franchisee", "a Distributor", "the Lessee", "a Supplier"),
    34: ("This is governed by the laws of Delaware.",),
    35: ('Acme Corp. (the "Company")',),
    36: ("From: a@example.com\nTo: b@example.com\nSubject: hello",),
    37: ("Dear Judge Roe,",),
    38: ("Sincerely,", "Very truly yours,", "Best regards,"),
    39: ("Notice of Electronic Filing", "This is an automatic e-mail message"),
}
_ALL_SAMPLES = tuple(t for lines in _RULE_SAMPLES.values() for t in lines)


def _scores_without_prefilter(text: str, fmt: str) -> dict[str, int]:
    head = text[: clean.HEAD_CHARS]
    scores = dict.fromkeys(clean.CATEGORIES, 0)
    if fmt == "eml":
        scores["correspondence"] += clean.EML_PRIOR
    for category, weight, rx in clean.RULES:
        if rx.search(head):
            scores[category] += weight
    return scores


def _odd_cases(text: str) -> list[str]:
    """What IGNORECASE also matches: long s, dotless and dotted i, the Kelvin sign."""
    return [
        text,
        text.upper(),
        text.replace("s", "\u017f"),
        text.replace("i", "\u0131"),
        text.replace("I", "\u0130"),
        text.replace("k", "\u212a"),
    ]


def test_the_category_prefilter_never_skips_a_rule_that_matches() -> None:
    assert len(_RULE_SAMPLES) == len(clean.RULES) == len(clean.PREFILTER)
    for i, (_cat, _w, rx) in enumerate(clean.RULES):
        words = clean.PREFILTER[i]
        for sample in _RULE_SAMPLES[i]:
            assert rx.search(sample), f"{sample!r} does not match rule {i} {rx.pattern!r}"
            for text in _odd_cases(sample):
                lowered = text.translate(clean._FOLD).lower()
                if rx.search(text) and words is not None:
                    assert any(w in lowered for w in words), (i, text)
        # Each word is needed: some line of the rule has it and none of the others.
        for word in words or ():
            alone = [
                t
                for t in _RULE_SAMPLES[i]
                if word in t.lower() and not any(w in t.lower() for w in words if w != word)
            ]
            assert alone, f"rule {i}: no sample line has {word!r} alone"


def test_category_scores_are_those_of_every_pattern_run() -> None:
    texts = [*_ALL_SAMPLES, "\n".join(_ALL_SAMPLES), "nothing to see here", ""]
    texts += [p.read_text(errors="replace") for p in sorted(EXAMPLES.rglob("*.txt"))]
    for text in texts:
        for variant in _odd_cases(text):
            for fmt in ("txt", "eml"):
                assert clean.category_scores(variant, fmt) == _scores_without_prefilter(
                    variant, fmt
                )
