"""Every scanned PDF of the corpus through the pipeline with local OCR, and the
corpus's two OCR pairs (the same document as a scan and with a text layer) scored
by word-level F1 against each other. At 300 dpi, as in production: no lower dpi to
save time (it costs accuracy). About 60 pages: 2 minutes on two idle cores; slow."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import asyncpg
import msgspec
import pytest
import redis.asyncio as aioredis

from accelerated import aio
from accelerated.batch_run import BatchOptions, run_batch
from accelerated.extractors import extract_bytes
from accelerated.runtime import build_runtime, make_executor
from accelerated.settings import Settings
from persistence.schema import migrate

# The same documents as scans and with a text layer (corpus SOURCES.md).
IMAGE_PDF = "doctor/opinions_pdf/image-pdf.pdf"
TEXT_PDF = "courtlistener/opinions_pdf/opinion_pdf_text_based.pdf"
RECAP_SCAN = "courtlistener/recap_pdf/pdf_ocr_test.pdf"
VARIATION = "doctor/opinions_pdf/ocr_pdf_variation.pdf"


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def f1(got: list[str], want: list[str]) -> float:
    """Word-level F1 over bags of words (order-free: layouts differ, words should not)."""
    g, w = Counter(got), Counter(want)
    overlap = sum((g & w).values())
    if not overlap:
        return 0.0
    p, r = overlap / sum(g.values()), overlap / sum(w.values())
    return 2 * p * r / (p + r)


def corpus_scans(corpus: Path) -> list[str]:
    """The corpus PDFs extract finds no text layer in (``needs_ocr`` without OCR)."""
    found = []
    for path in sorted(corpus.rglob("*")):
        if path.suffix.lower() != ".pdf" or "truth" in path.relative_to(corpus).parts:
            continue
        try:
            result = extract_bytes(path.read_bytes(), path.name)
        except Exception:  # the corpus's broken PDFs are other tests' business
            continue
        if result.needs_ocr:
            found.append(str(path.relative_to(corpus)))
    return found


@pytest.mark.slow
@pytest.mark.timeout(900)  # ~60 pages at 2-3 s a page on two cores; more on a busy machine
async def test_every_corpus_scan_comes_out_as_text_and_the_ocr_pairs_match(
    corpus: Path,
    tmp_path: Path,
    settings: Settings,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
) -> None:
    scans = corpus_scans(corpus)
    assert len(scans) >= 18 and IMAGE_PDF in scans and RECAP_SCAN in scans, scans
    src = tmp_path / "in"
    for rel in [*scans, TEXT_PDF]:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(corpus / rel, src / rel)
    ocr = settings.model_copy(
        update={"ocr_backend": "tesseract", "cpu_pool": "process", "cpu_workers": 2}
    )
    await migrate(pg_pool, ocr.pg_schema)
    rt = build_runtime(ocr, pg_pool, redis, executor=make_executor(ocr))
    try:
        report = await aio.wait_for(run_batch(rt, BatchOptions("scans", [src])), 600)
    finally:
        rt.close()
    assert report.failed == {} and report.needs_ocr == 0
    assert report.done == len(scans) + 1
    rows = {
        r["source_key"]: r
        for r in await pg_pool.fetch(
            "SELECT source_key, status, method, raw_text, raw_pages, metadata FROM documents"
        )
    }
    for rel in scans:
        row = rows[rel]
        assert (row["status"], row["method"]) == ("done", "ocr"), rel
        # The shortest scan is one line ("This matter is before the Foreign Intelligence").
        assert len(words(row["raw_text"])) >= 5, (rel, row["raw_text"][:200])
        pages = msgspec.json.decode(row["raw_pages"])
        methods = msgspec.json.decode(row["metadata"])["page_methods"].split(",")
        assert len(methods) == len(pages) and set(methods) == {"ocr"}, rel
    scan_pages = sum(len(msgspec.json.decode(rows[r]["raw_pages"])) for r in scans)
    assert (report.ocr_pages, report.ocr_cached_pages) == (scan_pages + 2, 0)

    # Pair 1: the scanned slip opinion (2 pages) against the first 2 pages of its text
    # layer (the text PDF's own last two pages are images, OCRed here too).
    scan, text = rows[IMAGE_PDF], rows[TEXT_PDF]
    n = len(msgspec.json.decode(scan["raw_pages"]))
    end = msgspec.json.decode(text["raw_pages"])[n - 1]["end"]
    score1 = f1(words(scan["raw_text"]), words(text["raw_text"][:end]))
    # Pair 2: the recap scan against ocr_pdf_variation.pdf, which holds only the top of
    # the same page (the e-filing stamp and "UNITED", its words drawn as outlines and
    # therefore OCRed too). Over the whole page F1 cannot reach 0.95: the variation
    # lacks ~95% of the page's words. Scored over the part both hold: the scan's
    # first words, as many as the variation has.
    want = words(rows[VARIATION]["raw_text"])
    got = words(rows[RECAP_SCAN]["raw_text"])
    score2, whole2 = f1(got[: len(want)], want), f1(got, want)
    print(
        f"\nOCR pairs, word F1: {IMAGE_PDF} vs {TEXT_PDF} {score1:.3f}; {RECAP_SCAN} vs "
        f"{VARIATION} {score2:.3f} over the {len(want)} words the variation holds "
        f"({whole2:.3f} over the whole page, of which it holds {len(want)}/{len(got)} words)"
    )
    assert score1 >= 0.95 and score2 >= 0.95
