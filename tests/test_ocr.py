"""Local OCR with tesseract: scans and mixed PDFs come out as text, OCR is cached by
content, and its results match the text layer of the same document."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import asyncpg
import msgspec
import pytest
import redis.asyncio as aioredis
from PIL import Image, ImageDraw, ImageFont
from pypdf import PdfReader, PdfWriter

from accelerated.batch_run import BatchOptions, run_batch
from accelerated.extractors import extract_bytes
from accelerated.settings import Settings
from accelerated.stages.ocr import OCR_PAGES
from persistence.schema import migrate
from tests.support import make_runtime

TEXT_PDF = "courtlistener/opinions_pdf/opinion_pdf_text_based.pdf"
# The same documents as scans and with a text layer (corpus SOURCES.md).
PAIRS = [
    ("doctor/opinions_pdf/image-pdf.pdf", "courtlistener/opinions_pdf/opinion_pdf_text_based.pdf"),
    ("courtlistener/recap_pdf/pdf_ocr_test.pdf", "doctor/opinions_pdf/ocr_pdf_variation.pdf"),
]
# ocr_pdf_variation.pdf holds only the first lines of that page (the e-filing stamp and
# "UNITED", drawn as outlines: it is OCRed too): for that pair the check is that every
# word it has is read from the scan, not F1 over a page it does not hold.


def ocr_pages(source: str) -> float:
    return sum(
        s.value
        for m in OCR_PAGES.collect()
        for s in m.samples
        if s.name.endswith("_total") and s.labels["source"] == source
    )


def scanned_page(lines: list[str]) -> bytes:
    """A one-page PDF that is only an image of text (what a scanner makes)."""
    img = Image.new("L", (2550, 3300), 255)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=64)
    for i, line in enumerate(lines):
        draw.text((200, 300 + 120 * i), line, fill=0, font=font)
    buf = io.BytesIO()
    img.save(buf, "PDF", resolution=300)
    return buf.getvalue()


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def f1(got: str, want: str) -> float:
    """Word-level F1 over bags of words (order-free: layouts differ, words should not)."""
    from collections import Counter

    g, w = Counter(words(got)), Counter(words(want))
    overlap = sum((g & w).values())
    if not overlap:
        return 0.0
    p, r = overlap / sum(g.values()), overlap / sum(w.values())
    return 2 * p * r / (p + r)


def contained(part: str, whole: str) -> float:
    """Share of the words of ``part`` (with multiplicity) found in ``whole``."""
    from collections import Counter

    p, w = Counter(words(part)), Counter(words(whole))
    return sum((p & w).values()) / max(sum(p.values()), 1)


@pytest.fixture
def ocr_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"ocr_backend": "tesseract"})


async def test_scans_and_a_mixed_pdf_come_out_as_text_and_ocr_is_cached(
    corpus: Path,
    tmp_path: Path,
    ocr_settings: Settings,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(corpus / PAIRS[1][0], src / "scan.pdf")
    # A filed brief with a scanned exhibit: two text pages, then an image-only page.
    writer = PdfWriter()
    reader = PdfReader(corpus / TEXT_PDF)
    for page in reader.pages[:2]:
        writer.add_page(page)
    exhibit = ["EXHIBIT A", "The plaintiff Acme Widgets filed", "this agreement on June 1, 2017."]
    writer.add_page(PdfReader(io.BytesIO(scanned_page(exhibit))).pages[0])
    with (src / "mixed.pdf").open("wb") as fh:
        writer.write(fh)
    assert extract_bytes((src / "mixed.pdf").read_bytes(), "mixed.pdf").metadata["ocr_pages"] == "3"

    await migrate(pg_pool, ocr_settings.pg_schema)
    before = ocr_pages("engine")
    report = await run_batch(
        make_runtime(ocr_settings, pg_pool, redis, accelerated=True), BatchOptions("ocr", [src])
    )
    assert report.failed == {} and report.needs_ocr == 0 and report.done == 2
    assert ocr_pages("engine") - before == 2  # one page of the scan, one of the brief
    rows = {
        r["source_key"]: r
        for r in await pg_pool.fetch("SELECT source_key, method, text, metadata FROM documents")
    }
    mixed = rows["mixed.pdf"]
    assert mixed["method"] == "text_layer+ocr"
    assert '"page_methods": "text_layer,text_layer,ocr"' in mixed["metadata"]
    assert "Acme Widgets" in mixed["text"] and "June 1, 2017" in mixed["text"]
    assert "Syllabus" in mixed["text"]  # the text layer of the first pages is kept
    assert rows["scan.pdf"]["method"] == "ocr" and len(words(rows["scan.pdf"]["text"])) > 50

    # The same scans under other names, in another project: no OCR at all.
    again = tmp_path / "again"
    again.mkdir()
    shutil.copy(src / "scan.pdf", again / "renamed-scan.pdf")
    shutil.copy(src / "mixed.pdf", again / "renamed-mixed.pdf")
    before, cached = ocr_pages("engine"), ocr_pages("cache")
    report = await run_batch(
        make_runtime(ocr_settings, pg_pool, redis, accelerated=True),
        BatchOptions("ocr-again", [again]),
    )
    assert report.done == 2
    assert ocr_pages("engine") == before
    assert ocr_pages("cache") - cached == 2

    # Reprocessing from a later stage never OCRs either.
    report = await run_batch(
        make_runtime(ocr_settings, pg_pool, redis, accelerated=True),
        BatchOptions("ocr", reprocess=True, from_stage="chunk"),
    )
    assert report.done == 2 and ocr_pages("engine") == before


@pytest.mark.slow
@pytest.mark.parametrize(("scan", "text_layer"), PAIRS)
async def test_ocr_matches_the_text_layer_of_the_same_document(
    scan: str,
    text_layer: str,
    corpus: Path,
    tmp_path: Path,
    ocr_settings: Settings,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(corpus / scan, src / "scan.pdf")
    shutil.copy(corpus / text_layer, src / "other.pdf")
    await migrate(pg_pool, ocr_settings.pg_schema)
    report = await run_batch(
        make_runtime(ocr_settings, pg_pool, redis, accelerated=True), BatchOptions("pair", [src])
    )
    assert report.done == 2
    docs = {
        r["source_key"]: r
        for r in await pg_pool.fetch(
            "SELECT source_key, method, raw_text, raw_pages FROM documents"
        )
    }
    got, other = docs["scan.pdf"], docs["other.pdf"]
    assert got["method"] == "ocr"
    # ``other`` is the text layer (pair 1), or a "vector" PDF whose words are drawn as
    # outlines and that is therefore OCRed too (pair 2). The scan may hold only the
    # first pages of the same document: compare those.
    pages = msgspec.json.decode(other["raw_pages"])
    n = len(msgspec.json.decode(got["raw_pages"]))
    want = other["raw_text"][: pages[min(n, len(pages)) - 1]["end"]]
    got = got["raw_text"]
    if scan == PAIRS[1][0]:
        score, what = contained(want, got), "words contained"
    else:
        score, what = f1(got, want), "word F1"
    print(f"{scan}: {what} {score:.3f} against {text_layer}")
    assert score >= 0.95
