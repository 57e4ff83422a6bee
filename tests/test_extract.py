"""Extraction of real corpus documents in every format, and the extract stage's cache.

Page counts are checked against pypdf (an independent PDF parser), expected words
were read from the files themselves, and the cache test counts real extractor runs
through the stage's Prometheus counter.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from email.message import EmailMessage
from pathlib import Path

import pypdf
import pytest
from prometheus_client import REGISTRY

from accelerated.blobs import LocalBlobReader
from accelerated.errors import DocumentError
from accelerated.extractors import (
    ExtractResult,
    LegacyTools,
    extract_bytes,
    page_texts,
    sniff_format,
)
from accelerated.models import FORMATS, CanonicalEntity, Extracted, SourceRef
from accelerated.settings import Settings
from accelerated.stages import StageContext
from accelerated.stages import extract as extract_stage
from accelerated.stages.extract import EXTRACTOR_CALLS
from tests.conftest import CORPUS, EXAMPLES


def check_pages(result: ExtractResult) -> None:
    """Pages are numbered from 1 and tile the text: contiguous, no gaps, no overlap."""
    assert result.pages, "every result has at least one page"
    assert [p.number for p in result.pages] == list(range(1, len(result.pages) + 1))
    assert result.pages[0].start == 0
    assert result.pages[-1].end == len(result.text)
    for before, after in zip(result.pages, result.pages[1:], strict=False):
        assert before.end == after.start
        assert before.start <= before.end


def extract_file(path: Path) -> ExtractResult:
    result = extract_bytes(path.read_bytes(), path.name)
    check_pages(result)
    assert result.format in FORMATS
    return result


# ----------------------------------------------------------------------------- PDF

TEXT_PDFS = [
    (
        "courtlistener/opinions_pdf/10thCircuit-06-6247.pdf",
        ["STEVEN MONTRAIL TRIPLET", "No. 06-6247"],
    ),
    ("courtlistener/opinions_pdf/8thCircuit-071306U.pdf", ["Linda R. Reade", "543 U.S. 220"]),
    # Real court PDFs with junk bytes before %PDF- (`file` calls them "data").
    ("doctor/edge_cases_malformed_pdf/broken-mime.pdf", ["GIFT SURPLUS, LLC", "2022-NCSC-1"]),
    ("doctor/edge_cases_malformed_pdf/missouri.pdf", ["NICHOLE MARIE JAGELS", "ED108783"]),
    ("cuad/contracts_pdf/ALCOSTORESINC_12_14_2005-EX-10.26-AGENCY AGREEMENT.PDF", ["Duckwall"]),
    ("x-ray/recap_filings_pdf/gov.uscourts.cand.346583.102.0.pdf", ["LEVANDOWSKI", "Alsup"]),
]


@pytest.mark.parametrize(("rel", "words"), TEXT_PDFS)
def test_pdf_text_layer(corpus: Path, rel: str, words: list[str]) -> None:
    result = extract_file(corpus / rel)
    assert (result.format, result.method, result.needs_ocr) == ("pdf", "text_layer", False)
    expected_pages = len(pypdf.PdfReader(corpus / rel).pages)
    assert len(result.pages) == expected_pages
    assert result.metadata["page_count"] == str(expected_pages)
    for word in words:
        assert word in result.text
    # The page ranges really are pages: each page's text is that page alone.
    texts = page_texts(result)
    assert len(texts) == expected_pages and all(texts)


def test_pdf_page_text_matches_its_page(corpus: Path) -> None:
    result = extract_file(corpus / "courtlistener/opinions_pdf/10thCircuit-06-6247.pdf")
    texts = page_texts(result)
    assert "STEVEN MONTRAIL TRIPLET" in texts[0]
    assert "- 23 -" in texts[22] and "- 23 -" not in texts[0]


SCANNED_PDFS = [
    "courtlistener/opinions_pdf/opinion_pdf_image_based.pdf",
    "doctor/opinions_pdf/image-pdf.pdf",
    "disclosure-extractor/financial_disclosure_pdf/2011-Alito-J3.pdf",
    # A scan whose only text is the court's e-filing stamp across the top.
    "doctor/recap_documents_pdf/ca4_17.pdf",
    "x-ray/recap_filings_pdf/gov.uscourts.azd.1257439.1.0.pdf",
]


@pytest.mark.parametrize("rel", SCANNED_PDFS)
def test_scanned_pdf_needs_ocr(corpus: Path, rel: str) -> None:
    result = extract_file(corpus / rel)
    assert (result.method, result.needs_ocr, result.text) == ("needs_ocr", True, "")
    assert len(result.pages) == len(pypdf.PdfReader(corpus / rel).pages)


def test_pdf_with_some_scanned_pages_lists_them(corpus: Path) -> None:
    """The slip opinion's last two pages are images: text kept, those pages flagged."""
    result = extract_file(corpus / "courtlistener/opinions_pdf/opinion_pdf_text_based.pdf")
    assert result.method == "text_layer" and not result.needs_ocr
    assert result.metadata["ocr_pages"] == "29,30"
    assert "TARRANT REGIONAL WATER DISTRICT v." in result.text
    assert page_texts(result)[28:] == ["", ""]


# ------------------------------------------------------------------- other formats


def test_docx(corpus: Path) -> None:
    result = extract_file(corpus / "doctor/opinions_word/word-docx.docx")
    assert (result.format, result.method) == ("docx", "docx")
    # The docket number lives only in the section header; the rest in body paragraphs.
    assert result.text.startswith("Docket No. MD17-00012")
    assert "Narrative Reason for Discharge:" in result.text and "MISCONDUCT" in result.text


def test_txt_latin1_decodes_as_legacy_code_page(corpus: Path) -> None:
    path = corpus / "courtlistener/opinions_txt/txt_file_with_no_encoding__latin1.txt"
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")
    result = extract_file(path)
    assert result.metadata["encoding"] in ("cp1252", "latin-1")
    assert "DeGraff v. Burnett" in result.text
    assert "¶" in result.text and "\ufffd" not in result.text


def test_txt_form_feeds_are_pages(corpus: Path) -> None:
    path = corpus / "eyecite/opinion.txt"
    raw = path.read_text("utf-8")
    result = extract_file(path)
    assert result.metadata["encoding"] == "utf-8"
    non_empty = [p for p in raw.split("\f") if p.strip()]
    assert len(result.pages) == len(non_empty) > 30
    assert "FISHER v. UNIVERSITY OF TEXAS AT AUSTIN" in page_texts(result)[1]


@pytest.mark.parametrize(
    ("encoding", "reported"),
    [("utf-8-sig", "utf-8-sig"), ("utf-16", "utf-16"), ("utf-16-le", "utf-16-le")],
)
def test_txt_bom_and_utf16_give_the_same_text(corpus: Path, encoding: str, reported: str) -> None:
    path = corpus / "courtlistener/opinions_txt/opinion_text.txt"
    plain = extract_file(path)
    recoded = extract_bytes(path.read_text("utf-8").encode(encoding), path.name)
    check_pages(recoded)
    assert recoded.metadata["encoding"] == reported
    assert recoded.text == plain.text and not recoded.text.startswith("\ufeff")


def test_txt_utf8_contract(corpus: Path) -> None:
    result = extract_file(
        corpus / "cuad/contracts_txt/BLACKROCKMUNIHOLDINGSINVESTMENTQUALITYFUND_04_07_2020"
        "-EX-99.01-JOINT FILING AGREEMENT.txt"
    )
    assert result.method == "plain" and "JOINT FILING AGREEMENT" in result.text.upper()


def test_html_opinion(corpus: Path) -> None:
    result = extract_file(corpus / "courtlistener/opinions_html/opinion_html.html")
    assert (result.format, result.method) == ("html", "html")
    assert "REAGAN, United States Marshal" in result.text and "AIKEN et al." in result.text
    assert "<" not in result.text
    # Block structure survives: the caption parts are separate lines.
    assert "\nv.\n" in result.text


def test_html_drops_scripts_and_styles(corpus: Path) -> None:
    path = corpus / "juriscraper/scotus_docket_html/01-10063.htm"
    assert b"function" in path.read_bytes() and b"<script" in path.read_bytes()
    result = extract_file(path)
    assert "Supreme Court" in result.text
    assert "function" not in result.text and "OpenRadWindow" not in result.text


def test_eml_html_body(corpus: Path) -> None:
    result = extract_file(corpus / "courtlistener/email_eml/recap_mail_example.eml")
    assert (result.format, result.method) == ("eml", "eml")
    assert result.text.startswith("From: TXW_USDC_Notice@txwd.uscourts.gov\n")
    assert "Subject: Activity in Case 6:20-cv-00580-ADA" in result.text
    assert "Case Name:\tWSOU Investments LLC v. Google LLC" in result.text
    assert "<html" not in result.text.lower()


def test_eml_attachments_are_extracted_as_pages(corpus: Path) -> None:
    """The corpus e-mails carry no attachments, so attach real corpus documents."""
    pdf = corpus / "courtlistener/opinions_pdf/8thCircuit-071306U.pdf"
    txt = corpus / "courtlistener/opinions_txt/txt_file_with_no_encoding__latin1.txt"
    wpd = corpus / "courtlistener/opinions_word/opinion_wpd.wpd"
    doc = corpus / "courtlistener/opinions_word/opinion_doc.doc"
    msg = EmailMessage()
    msg["From"] = "clerk@example.org"
    msg["To"] = "counsel@example.org"
    msg["Subject"] = "Opinions attached"
    msg.set_content("Please find the opinions attached.")
    msg.add_attachment(pdf.read_bytes(), "application", "pdf", filename=pdf.name)
    msg.add_attachment(txt.read_bytes(), "text", "plain", filename=txt.name)
    msg.add_attachment(wpd.read_bytes(), "application", "octet-stream", filename=wpd.name)
    # A .doc cut short: the OLE header survives, the document does not.
    msg.add_attachment(doc.read_bytes()[:3000], "application", "msword", filename="cut.doc")
    result = extract_bytes(msg.as_bytes(), "mail.eml")
    check_pages(result)
    texts = page_texts(result)
    assert len(texts) == 1 + 2 + 1 + 1  # body, the PDF's two pages, the text, the .wpd
    assert texts[0].startswith("From: clerk@example.org") and "opinions attached" in texts[0]
    assert texts[1].startswith(f"Attachment: {pdf.name}") and "Linda R. Reade" in texts[1]
    assert "543 U.S. 220" in texts[2]
    assert texts[3].startswith(f"Attachment: {txt.name}") and "DeGraff" in texts[3]
    assert texts[4].startswith(f"Attachment: {wpd.name}") and "RICHARD J. JOHNSON" in texts[4]
    # The damaged .doc fails on its own and is recorded, not fatal.
    assert "cut.doc" in result.metadata["attachment_errors"]
    assert "corrupt" in result.metadata["attachment_errors"]
    assert "cut.doc" in result.metadata["attachments"]


def test_cap_case_json(corpus: Path) -> None:
    result = extract_file(corpus / "courtlistener/cap_case_json/cases_case_3.json")
    assert (result.format, result.method) == ("json", "json")
    assert result.metadata["citation"] == "1 B.T.A. 694"
    assert result.metadata["court"] == "United States Board of Tax Appeals"
    assert "HAMILTON & CHAMBERS CO., INC." in result.text
    assert "Revenue Act of 1918" in result.text
    # The casebody XML became text: no tags, no API URLs.
    assert "<parties" not in result.text and "api.case.law" not in result.text


CAP_JSON = sorted(p.name for p in (CORPUS / "courtlistener/cap_case_json").glob("*.json"))


@pytest.mark.parametrize("name", CAP_JSON)
def test_every_cap_json_yields_its_case_name(corpus: Path, name: str) -> None:
    path = corpus / "courtlistener/cap_case_json" / name
    record = json.loads(path.read_text("utf-8"))
    result = extract_file(path)
    assert record["name"].strip() in result.text
    assert len(result.text) > 500


def test_columbia_xml(corpus: Path) -> None:
    result = extract_file(corpus / "courtlistener/columbia_opinion_xml/0ba94a49729b36a7.xml")
    assert (result.format, result.method) == ("xml", "xml")
    assert "Paul Elwyn THORNBURG v. Barbara Ann THORNBURG." in result.text
    assert "$25,000 as alimony in gross" in result.text
    assert "<" not in result.text
    # Star-pagination markers are dropped, not glued into sentences.
    assert "Page 886" not in result.text


def test_legacy_corpus_formats_are_named_when_turned_off(corpus: Path) -> None:
    off = LegacyTools(mode="off")
    for rel, label in [
        ("courtlistener/opinions_word/opinion_doc.doc", "Word 97-2003"),
        ("courtlistener/opinions_word/opinion_wpd.wpd", "WordPerfect"),
    ]:
        path = corpus / rel
        with pytest.raises(DocumentError) as info:
            extract_bytes(path.read_bytes(), path.name, off)
        assert info.value.code == "unsupported_format"
        assert label in str(info.value) and "LEGACY_FORMATS=off" in str(info.value)


def test_sniff_format(corpus: Path) -> None:
    def sniff(rel: str) -> str:
        path = corpus / rel
        return sniff_format(path.name, path.read_bytes()[:4096])

    assert sniff("doctor/edge_cases_malformed_pdf/missouri.pdf") == "pdf"
    assert sniff("courtlistener/opinions_word/opinion_doc.doc") == "doc"
    assert sniff("doctor/opinions_word/MD1700012.rtf") == "rtf"
    assert sniff("juriscraper/scotus_docket_html/01-10063.htm") == "html"
    assert sniff("courtlistener/email_eml/recap_mail_example.eml") == "eml"
    eml_head = (corpus / "courtlistener/email_eml/recap_mail_example.eml").read_bytes()[:4096]
    assert sniff_format("no_extension", eml_head) == "eml"  # by content, not by name
    pdf_head = (corpus / "courtlistener/opinions_pdf/8thCircuit-071306U.pdf").read_bytes()[:4096]
    assert sniff_format("mislabelled.txt", pdf_head) == "pdf"  # magic beats extension


# ----------------------------------------------------------------- bundled examples

EXAMPLE_FILES = sorted(p.name for p in EXAMPLES.iterdir()) if EXAMPLES.is_dir() else []


def test_examples_cover_every_format() -> None:
    formats = {extract_bytes((EXAMPLES / n).read_bytes(), n).format for n in EXAMPLE_FILES}
    assert formats == {"pdf", "docx", "txt", "html", "eml", "json", "xml"}


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_example_documents_extract(name: str) -> None:
    result = extract_file(EXAMPLES / name)
    assert not result.needs_ocr and len(result.text) > 500
    # Each filing carries the entities the later stages look for.
    assert "Acme" in result.text or "ACME" in result.text or "Harbor Point" in result.text
    assert "§" in result.text and "$" in result.text and " v. " in result.text


def test_example_email_attachments() -> None:
    result = extract_file(EXAMPLES / "email_settlement_term_sheet.eml")
    texts = page_texts(result)
    assert [t.splitlines()[0] for t in texts[1:]] == [
        "Attachment: term_sheet.pdf",
        "Attachment: draft_stipulation.txt",
    ]
    assert "$1,150,000.00" in texts[1] and "STIPULATION OF DISMISSAL" in texts[2]


# ------------------------------------------------------------------------- stage


class MemoryExtractCache:
    """Our ExtractCache protocol over a dict (a test double of our protocol, no driver)."""

    def __init__(self) -> None:
        self.items: dict[str, Extracted] = {}

    async def get(self, sha256: str) -> Extracted | None:
        return self.items.get(sha256)

    async def put(self, sha256: str, value: Extracted) -> None:
        self.items[sha256] = value


class NoCanonical:
    """The extract stage never touches the registry; fail loudly if it ever does."""

    async def get_or_create(
        self, project: str, entities: Sequence[CanonicalEntity]
    ) -> list[CanonicalEntity]:
        raise AssertionError("extract must not use the canonical registry")


def source_for(path: Path, *, sha256: str | None = None) -> SourceRef:
    data = path.read_bytes()
    return SourceRef(
        document_id=uuid.uuid4(),
        project="p1",
        source=str(path),
        source_key=path.name,
        sha256=sha256 or hashlib.sha256(data).hexdigest(),
        size=len(data),
        format=sniff_format(path.name, data[:4096]),
    )


def calls(fmt: str) -> float:
    """Read the counter the way a scrape would: from the default registry."""
    value = REGISTRY.get_sample_value("extractor_calls_total", {"format": fmt})
    return value or 0.0


def context(settings: Settings, cache: MemoryExtractCache | None = None) -> StageContext:
    return StageContext(
        project="p1",
        settings=settings,
        blobs=LocalBlobReader(),
        canonical=NoCanonical(),
        extract_cache=cache,
    )


async def test_stage_extracts_and_caches_by_sha(corpus: Path, settings: Settings) -> None:
    path = corpus / "doctor/edge_cases_malformed_pdf/missouri.pdf"
    cache = MemoryExtractCache()
    ctx = context(settings, cache)
    first_source = source_for(path)
    before = calls("pdf")
    first = await extract_stage.run(first_source, ctx)
    assert calls("pdf") == before + 1
    assert first.document_id == first_source.document_id
    assert first.sha256 == first_source.sha256 and first.method == "text_layer"
    assert "NICHOLE MARIE JAGELS" in first.text and len(first.pages) == 5
    assert set(cache.items) == {first_source.sha256}
    metric = next(iter(EXTRACTOR_CALLS.collect()))
    exported = {s.labels["format"]: s.value for s in metric.samples if s.name.endswith("_total")}
    assert exported["pdf"] == calls("pdf")  # the module's counter is the registered one

    # Same bytes under another document id (a re-run or a duplicate): no extraction.
    second_source = source_for(path)
    second = await extract_stage.run(second_source, ctx)
    assert calls("pdf") == before + 1, "the cached result must not call the extractor"
    assert second.document_id == second_source.document_id != first.document_id
    assert (second.text, second.pages, second.sha256) == (first.text, first.pages, first.sha256)


async def test_stage_without_cache_calls_extractor_each_time(
    corpus: Path, settings: Settings
) -> None:
    path = corpus / "courtlistener/columbia_opinion_xml/0ba94a49729b36a7.xml"
    ctx = context(settings)
    before = calls("xml")
    for _ in range(2):
        result = await extract_stage.run(source_for(path), ctx)
        assert "THORNBURG" in result.text
    assert calls("xml") == before + 2


async def test_stage_rejects_changed_file(corpus: Path, settings: Settings) -> None:
    path = corpus / "courtlistener/opinions_txt/opinion_text.txt"
    cache = MemoryExtractCache()
    with pytest.raises(DocumentError) as info:
        await extract_stage.run(source_for(path, sha256="0" * 64), context(settings, cache))
    assert info.value.code == "changed"
    assert not cache.items


async def test_stage_in_process_pool(corpus: Path, settings: Settings, tmp_path: Path) -> None:
    """extract_bytes and its errors cross a process pool (picklable, code kept)."""
    good = corpus / "doctor/opinions_word/word-docx.docx"
    wpd = corpus / "courtlistener/opinions_word/opinion_wpd.wpd"
    bad = tmp_path / "cut.wpd"  # the converters' settings cross the pool too
    bad.write_bytes(wpd.read_bytes()[:4000])
    with ProcessPoolExecutor(max_workers=1) as pool:
        ctx = context(settings)
        ctx.executor = pool
        result = await extract_stage.run(source_for(good), ctx)
        assert result.format == "docx" and "MD17-00012" in result.text
        result = await extract_stage.run(source_for(wpd), ctx)
        assert result.method == "wpd2text" and "RICHARD J. JOHNSON" in result.text
        with pytest.raises(DocumentError) as info:
            await extract_stage.run(source_for(bad), ctx)
        assert info.value.code == "corrupt"


async def test_concurrent_pdfs_in_threads_match_sequential(
    corpus: Path, settings: Settings
) -> None:
    """PDFium is not thread-safe: the default thread pool must still give exact results."""
    paths = [corpus / rel for rel, _ in TEXT_PDFS] * 2
    expected = [extract_bytes(p.read_bytes(), p.name).text for p in paths]
    ctx = context(settings)  # executor None: the loop's default thread pool
    results = await asyncio.gather(*(extract_stage.run(source_for(p), ctx) for p in paths))
    assert [r.text for r in results] == expected
