"""Local OCR with tesseract, through the pipeline: scans, images and mixed PDFs come
out as text, page by page; OCR is cached by content and counted per run, on any
worker; bad scans and images each get a clear per-document result.

These tests opt in to OCR (the ``settings`` fixture has ``ocr_backend="none"``) and
use small pages so that the whole file stays well under a minute. The corpus's scans
and its OCR pairs are in ``test_ocr_corpus.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import shutil
import struct
import zlib
from pathlib import Path

import asyncpg
import msgspec
import pytest
import redis.asyncio as aioredis
from PIL import Image, ImageDraw, ImageFont
from pydantic import ValidationError
from pypdf import PdfReader, PdfWriter

from accelerated import aio, state
from accelerated.batch import summary_line, summary_table
from accelerated.batch_run import BatchOptions, BatchReport, run_batch
from accelerated.caches import RedisOcrCache
from accelerated.codec import Codec
from accelerated.extractors import extract_bytes
from accelerated.ids import document_id
from accelerated.keys import Keys
from accelerated.ocr.tesseract import TesseractEngine
from accelerated.runtime import Runtime
from accelerated.settings import Settings
from accelerated.stages.ocr import OCR_PAGES, cache_version
from persistence.schema import migrate
from tests.conftest import EXAMPLES
from tests.support import make_runtime

TEXT_PDF = "courtlistener/opinions_pdf/opinion_pdf_text_based.pdf"
SCAN_PDF = "courtlistener/recap_pdf/pdf_ocr_test.pdf"  # one scanned page
RUN_S = 120  # bound on each batch run here (they take seconds)


def engine_pages(source: str = "engine") -> float:
    """This process's count of pages read by the engine (or taken from the cache)."""
    return sum(
        s.value
        for m in OCR_PAGES.collect()
        for s in m.samples
        if s.name.endswith("_total") and s.labels["source"] == source
    )


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def page(lines: list[str], size: tuple[int, int] = (1700, 600)) -> Image.Image:
    """An image of a few lines of text, as a 300 dpi scanner makes (small: fast OCR)."""
    img = Image.new("L", size, 255)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=48)
    for i, line in enumerate(lines):
        draw.text((100, 100 + 80 * i), line, fill=0, font=font)
    return img


def scanned_pdf_page(lines: list[str]) -> bytes:
    """A one-page letter-size PDF that is only an image of text."""
    buf = io.BytesIO()
    page(lines, (2550, 3300)).save(buf, "PDF", resolution=300)
    return buf.getvalue()


def tiff(pages: list[Image.Image], compression: str = "tiff_adobe_deflate") -> bytes:
    buf = io.BytesIO()
    pages[0].save(
        buf, "TIFF", save_all=True, append_images=pages[1:], compression=compression, dpi=(300, 300)
    )
    return buf.getvalue()


def image_bytes(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, dpi=(300, 300))
    return buf.getvalue()


def broken_tiff_page(data: bytes, index: int) -> bytes:
    """``data`` with the compressed pixels of frame ``index`` overwritten by garbage."""
    with Image.open(io.BytesIO(data)) as im:
        im.seek(index)
        offsets, counts = im.tag_v2[273], im.tag_v2[279]
    offset = offsets[0] if isinstance(offsets, tuple) else offsets
    count = counts[0] if isinstance(counts, tuple) else counts
    out = bytearray(data)
    out[offset : offset + count] = (b"\xaa\x00\xff\x13" * count)[:count]
    return bytes(out)


def png_claiming(width: int, height: int, idat: bytes) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` 1-bit grey pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def blank_pdf(pages: int) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(612, 792)
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


@pytest.fixture
def ocr_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"ocr_backend": "tesseract"})


async def batch(rt: Runtime, opts: BatchOptions) -> BatchReport:
    return await aio.wait_for(run_batch(rt, opts), RUN_S)


async def documents(pool: asyncpg.Pool, project: str) -> dict[str, asyncpg.Record]:
    rows = await pool.fetch(
        "SELECT source_key, status, error, method, format, text, raw_text, raw_pages, metadata "
        "FROM documents WHERE project = $1",
        project,
    )
    return {r["source_key"]: r for r in rows}


async def test_scans_images_and_a_mixed_pdf_come_out_as_text_and_are_ocred_once(
    corpus: Path,
    tmp_path: Path,
    ocr_settings: Settings,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(corpus / SCAN_PDF, src / "scan.pdf")
    # A filed brief with a scanned exhibit: two text pages, then an image-only page.
    writer = PdfWriter()
    for p in PdfReader(corpus / TEXT_PDF).pages[:2]:
        writer.add_page(p)
    exhibit = ["EXHIBIT A", "The plaintiff Acme Widgets filed", "this agreement on June 1, 2017."]
    writer.add_page(PdfReader(io.BytesIO(scanned_pdf_page(exhibit))).pages[0])
    with (src / "mixed.pdf").open("wb") as fh:
        writer.write(fh)
    assert extract_bytes((src / "mixed.pdf").read_bytes(), "mixed.pdf").metadata["ocr_pages"] == "3"
    # A production's multi-page TIFF (bilevel, CCITT G4 as scanners write it), a PNG, a JPEG.
    tiff_pages = [
        page([f"Bates ACME-{n:04d}", f"Invoice number {n} dated March {n}, 2019."]).convert("1")
        for n in (1, 2, 3)
    ]
    (src / "production.tif").write_bytes(tiff(tiff_pages, "group4"))
    (src / "receipt.png").write_bytes(image_bytes(page(["Receipt for Brightline LLC"]), "PNG"))
    (src / "photo.jpg").write_bytes(
        image_bytes(page(["Settlement conference notes"]).convert("RGB"), "JPEG")
    )

    await migrate(pg_pool, ocr_settings.pg_schema)
    rt = make_runtime(ocr_settings, pg_pool, redis, accelerated=True)
    before = engine_pages()
    report = await batch(rt, BatchOptions("ocr", [src]))
    assert report.failed == {} and report.needs_ocr == 0 and report.done == 5
    # One page of the scan, one of the brief, three of the TIFF, one each of the images.
    assert engine_pages() - before == 7
    assert (report.ocr_pages, report.ocr_cached_pages) == (7, 0)
    assert report.ocr_seconds > 0
    assert "ocr_pages=7 ocr_cached_pages=0" in summary_line(report)
    assert "pages OCRed" in {str(c) for c in summary_table(report).columns[0].cells}

    rows = await documents(pg_pool, "ocr")
    mixed = msgspec.json.decode(rows["mixed.pdf"]["metadata"])
    assert rows["mixed.pdf"]["method"] == "text_layer+ocr"
    assert mixed["page_methods"] == "text_layer,text_layer,ocr"
    assert mixed["ocr_pages"] == "3" and float(mixed["ocr_confidence"]) > 50
    text = rows["mixed.pdf"]["text"]
    assert "Acme Widgets" in text and "June 1, 2017" in text
    assert "Syllabus" in text  # the text layer of the first pages is kept
    assert rows["scan.pdf"]["method"] == "ocr" and len(words(rows["scan.pdf"]["text"])) > 50

    prod = rows["production.tif"]
    assert (prod["format"], prod["method"], prod["status"]) == ("tiff", "ocr", "done")
    meta = msgspec.json.decode(prod["metadata"])
    assert meta["page_methods"] == "ocr,ocr,ocr" and len(meta["ocr_confidence"].split(",")) == 3
    spans = [(p["start"], p["end"]) for p in msgspec.json.decode(prod["raw_pages"])]
    assert len(spans) == 3
    raw = prod["raw_text"]
    for n, (start, end) in enumerate(spans, start=1):  # each page's text on its own page
        assert f"ACME-{n:04d}" in raw[start:end] and f"March {n}, 2019" in raw[start:end]
    assert rows["receipt.png"]["format"] == "png" and "Brightline" in rows["receipt.png"]["text"]
    assert rows["photo.jpg"]["format"] == "jpeg" and "Settlement" in rows["photo.jpg"]["text"]
    # Seconds per page are in the state hash, not in the stored content.
    doc = document_id("ocr", "production.tif")
    seconds = (await redis.hget(rt.keys.state(doc), state.OCR_PAGE_SECONDS) or b"").decode()
    assert [s.split("=")[0] for s in seconds.split(",")] == ["1", "2", "3"], seconds
    assert "seconds" not in prod["metadata"]

    # The same files under other names, in another project: no OCR at all. A second
    # runtime does the work while the batch's only queues (a worker elsewhere): the
    # summary's figures come from Redis, not from the process that ran the stage.
    again = tmp_path / "again"
    again.mkdir()
    for p in sorted(src.iterdir()):
        shutil.copy(p, again / f"renamed-{p.name}")
    before, cached = engine_pages(), engine_pages("cache")
    worker = make_runtime(ocr_settings, pg_pool, redis, accelerated=True)
    stop = asyncio.Event()
    work = asyncio.create_task(worker.engine().run(stop))
    try:
        queuer = make_runtime(ocr_settings, pg_pool, redis, accelerated=True)
        report = await batch(queuer, BatchOptions("ocr-again", [again], consume=False))
    finally:
        stop.set()
        await aio.wait_for(work, 30)
    assert report.done == 5 and report.failed == {}
    assert engine_pages() == before and engine_pages("cache") - cached == 7
    assert (report.ocr_pages, report.ocr_cached_pages) == (0, 7)
    renamed = await documents(pg_pool, "ocr-again")
    assert renamed["renamed-production.tif"]["text"] == prod["text"]

    # Reprocessing from a later stage never reaches OCR at all.
    report = await batch(
        make_runtime(ocr_settings, pg_pool, redis, accelerated=True),
        BatchOptions("ocr", reprocess=True, from_stage="chunk"),
    )
    assert report.done == 5 and engine_pages() == before
    assert (report.ocr_pages, report.ocr_cached_pages) == (0, 0)


async def test_bad_scans_and_images_each_get_a_clear_result_and_the_batch_completes(
    corpus: Path,
    tmp_path: Path,
    ocr_settings: Settings,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    # 2,000 blank pages: no text layer, so all would be OCRed; the page cap refuses it.
    (src / "blank.pdf").write_bytes(blank_pdf(2000))
    # A PNG header claiming 100,000 x 100,000 pixels: Pillow's own guard, at extract.
    (src / "bomb.png").write_bytes(png_claiming(100_000, 100_000, zlib.compress(b"\0" * 64)))
    # 8,000 x 8,000 (64 million pixels, a 1 MB file): under Pillow's guard, over
    # OCR_MAX_PIXELS, refused from the header before any pixel is decoded.
    rows_8k = zlib.compress((b"\0" + b"\xff" * 1000) * 8000, 9)
    (src / "huge.png").write_bytes(png_claiming(8000, 8000, rows_8k))
    # A scan with a user password.
    writer = PdfWriter(clone_from=corpus / SCAN_PDF)
    writer.encrypt(user_password="sealed", owner_password="owner", algorithm="AES-128")
    with (src / "sealed-scan.pdf").open("wb") as fh:
        writer.write(fh)
    # A TIFF whose second of three pages is damaged.
    pages = [page([f"Exhibit page {n}", f"Reference number {n}{n}{n}"]) for n in (1, 2, 3)]
    good_tiff = tiff(pages)
    (src / "broken.tif").write_bytes(broken_tiff_page(good_tiff, 1))
    # And documents that are fine.
    (src / "good.png").write_bytes(image_bytes(page(["Order granting the motion"]), "PNG"))
    shutil.copy(EXAMPLES / "order_on_motion_to_dismiss.txt", src / "order.txt")

    await migrate(pg_pool, ocr_settings.pg_schema)
    rt = make_runtime(ocr_settings, pg_pool, redis, accelerated=True)
    report = await batch(rt, BatchOptions("bad", [src]))
    assert report.done == 2 and report.needs_ocr == 0, report.failed
    rows = await documents(pg_pool, "bad")
    assert rows["good.png"]["status"] == "done" and "granting" in rows["good.png"]["text"]
    assert rows["order.txt"]["status"] == "done"
    errors = {k: r["error"] for k, r in rows.items() if r["status"] == "failed"}
    assert errors == report.failed
    assert set(errors) == {"blank.pdf", "bomb.png", "huge.png", "sealed-scan.pdf", "broken.tif"}
    assert errors["blank.pdf"].startswith("ocr: too_large: ")
    assert "2,000 pages to OCR" in errors["blank.pdf"] and "OCR_MAX_PAGES" in errors["blank.pdf"]
    assert errors["bomb.png"].startswith("extract: too_large: ")
    assert "decompression bomb" in errors["bomb.png"]
    assert errors["huge.png"].startswith("ocr: too_large: ")
    assert "8,000x8,000 pixels" in errors["huge.png"] and "OCR_MAX_PIXELS" in errors["huge.png"]
    assert errors["sealed-scan.pdf"].startswith("extract: encrypted: ")
    assert errors["broken.tif"].startswith("ocr: corrupt: Page 2 of the TIFF cannot be decoded")
    # Its good pages were read and kept: fixing the file's page 2 is all that is left.
    keys, codec = Keys(ocr_settings.redis_prefix), Codec()
    cache = RedisOcrCache(redis, keys, codec, 60)
    engine = rt.backends_.ocr
    assert engine is not None
    sha = hashlib.sha256((src / "broken.tif").read_bytes()).hexdigest()
    kept = await cache.get(cache_version(engine.version), sha)
    assert kept is not None and sorted(kept) == [1, 3]
    assert "Reference number 333" in kept[3].text
    assert (report.ocr_pages, report.ocr_cached_pages) == (3, 0)  # good.png, broken 1 and 3


async def test_a_page_over_the_time_limit_fails_its_document_with_the_page_named(
    tmp_path: Path, ocr_settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    text = [f"Line {n} of a dense page, set out for the time limit test." for n in range(30)]
    (src / "dense.png").write_bytes(image_bytes(page(text, (2550, 3300)), "PNG"))
    shutil.copy(EXAMPLES / "order_on_motion_to_dismiss.txt", src / "order.txt")
    tight = ocr_settings.model_copy(update={"ocr_page_timeout_s": 0.01})
    await migrate(pg_pool, tight.pg_schema)
    report = await batch(
        make_runtime(tight, pg_pool, redis, accelerated=True), BatchOptions("t", [src])
    )
    assert report.done == 1
    assert report.failed["dense.png"].startswith("ocr: ocr_timeout: Page 1 took longer than")
    assert "OCR_PAGE_TIMEOUT_S=0.01s" in report.failed["dense.png"]


def test_tesseract_is_the_default_and_the_bounds_are_validated() -> None:
    assert Settings(_env_file=None).ocr_backend == "tesseract"  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="ocr_max_pages"):
        Settings(_env_file=None, ocr_max_pages=0)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="ocr_max_pixels"):
        Settings(_env_file=None, ocr_max_pixels=10**9)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="ocr_page_timeout_s"):
        Settings(_env_file=None, ocr_page_timeout_s=0)  # type: ignore[call-arg]
    # The time limit does not change what a page reads as, so it is not in the cache key.
    assert TesseractEngine(timeout_s=5).version == TesseractEngine(timeout_s=60).version
