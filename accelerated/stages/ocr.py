"""Branch stage ``ocr``: text for the pages ``extract`` found no text layer on.

It runs only when an OCR engine is configured (``OCR_BACKEND``; see
``accelerated/backends.py``) and ``extract`` reported ``needs_ocr``; otherwise the
document ends as ``needs_ocr``. With a page engine (tesseract) every page is rendered
and read in the process pool, one call per page, so the pages of many documents are
OCRed at once. With a document service (Textract) the first run starts the job and
parks the document; the deployment's poller puts the text in the OCR cache and sends
the document back here, where it is a cache hit. Either way only the pages without a
text layer take OCR text. The output replaces ``extract``'s under the same ``ocr``
key, so ``clean`` reads it either way.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
from prometheus_client import Counter

from accelerated.backends import OcrEngine, OcrText, PageImage, ocr_mode
from accelerated.errors import ConfigError, DocumentError
from accelerated.extractors.base import assemble, page_texts, tidy
from accelerated.models import Extracted
from accelerated.stages import StageContext

OCR_DPI = 300
OCR_PAGES = Counter(
    "ocr_pages_total", "Pages read by an OCR engine or taken from the OCR cache", ["source"]
)


def render_pdf_page(data: bytes, index: int, dpi: int) -> PageImage:
    """One PDF page as 8-bit grey pixels (PDFium; runs in a pool process)."""
    from accelerated.extractors.pdf import _LOCK, _open

    with _LOCK:
        doc = _open(data)
        try:
            page = doc[index]
            bitmap = page.render(scale=dpi / 72, grayscale=True)
            width, height, stride = bitmap.width, bitmap.height, bitmap.stride
            raw = bytes(bitmap.buffer)
            page.close()
        finally:
            doc.close()
    if stride != width:
        raw = b"".join(raw[r * stride : r * stride + width] for r in range(height))
    return PageImage(number=index + 1, width=width, height=height, dpi=dpi, pixels=raw)


def ocr_pdf_page(data: bytes, index: int, dpi: int, engine: OcrEngine) -> tuple[OcrText, float]:
    """Render and read one page; returns the text and the seconds it took."""
    t0 = time.perf_counter()
    result = engine.recognize(render_pdf_page(data, index, dpi))
    return result, time.perf_counter() - t0


def pages_to_read(extracted: Extracted) -> list[int]:
    """Page numbers without a text layer: all of a scan, the scanned pages of a mixed PDF."""
    if extracted.needs_ocr:
        return [p.number for p in extracted.pages]
    listed = extracted.metadata.get("ocr_pages", "")
    return [int(n) for n in listed.split(",") if n.strip().isdigit()]


async def run(extracted: Extracted, ctx: StageContext) -> Extracted:
    engine = ctx.backends.ocr if ctx.backends is not None else None
    if engine is None:
        raise ConfigError("the ocr stage ran without an OCR engine (OCR_BACKEND)")
    assert ctx.source is not None
    wanted = pages_to_read(extracted)
    if ocr_mode(engine) == "document":
        # A service reading the whole document (Textract): the first run starts its job
        # and parks the document; the poller sends it back here once the text is in.
        version = engine.version
        read = await _read_by_service(extracted, ctx)
    else:
        assert isinstance(engine, OcrEngine)
        if extracted.format != "pdf":
            raise DocumentError(f"OCR of {extracted.format} files is not supported", code="ocr")
        version = f"{engine.version}@{OCR_DPI}dpi"
        read = await _read_pages(engine, version, extracted, wanted, ctx)
    layer = [] if extracted.needs_ocr else page_texts(extracted)
    scanned = set(wanted)  # a service reads every page: take its text for these only
    parts = [
        (read[p.number].text.strip() if p.number in read else "")
        if p.number in scanned
        else layer[p.number - 1]
        for p in extracted.pages
    ]
    text, ranges = assemble([tidy(t) for t in parts])
    meta = dict(extracted.metadata)
    meta["ocr_engine"] = version
    meta["ocr_pages"] = ",".join(map(str, wanted))
    meta["ocr_confidence"] = ",".join(
        f"{read[n].confidence:.1f}" if n in read else "-1.0" for n in wanted
    )
    meta["page_methods"] = ",".join(
        "ocr" if p.number in scanned else "text_layer" for p in extracted.pages
    )
    # Per-page seconds vary run to run, so they are not part of the stored content: the
    # stage's compute time (state hash, metrics) accounts for them.
    method = "ocr" if extracted.needs_ocr else "text_layer+ocr"
    return msgspec.structs.replace(
        extracted, method=method, text=text, pages=ranges, needs_ocr=False, metadata=meta
    )


async def _read_pages(
    engine: OcrEngine, version: str, extracted: Extracted, wanted: list[int], ctx: StageContext
) -> dict[int, OcrText]:
    """Page by page in the process pool, the pages the cache does not hold yet."""
    assert ctx.source is not None
    read: dict[int, OcrText] = {}
    if ctx.ocr_cache is not None:
        read = await ctx.ocr_cache.get(version, extracted.sha256) or {}
    missing = [n for n in wanted if n not in read]
    if missing:
        data = await ctx.blobs.read(ctx.source, ctx.settings.max_file_bytes)
        done = await asyncio.gather(
            *(ctx.run_cpu(ocr_pdf_page, data, n - 1, OCR_DPI, engine) for n in missing)
        )
        OCR_PAGES.labels("engine").inc(len(missing))
        read.update({n: r for n, (r, _s) in zip(missing, done, strict=True)})
        if ctx.ocr_cache is not None:
            await ctx.ocr_cache.put(version, extracted.sha256, read)
    OCR_PAGES.labels("cache").inc(len(wanted) - len(missing))
    return read


async def _read_by_service(extracted: Extracted, ctx: StageContext) -> dict[int, OcrText]:
    """Every page, as the service read the whole file (see ``accelerated/ocr/jobs.py``):
    raises ``Parked`` while its job runs, ``DocumentError`` when it failed."""
    source = ctx.source
    assert source is not None
    if ctx.ocr_jobs is None:
        raise ConfigError(
            "OCR_BACKEND names an asynchronous OCR service, which needs Redis (REDIS_URL) "
            "for its jobs and its poller"
        )

    async def read() -> bytes:
        return await ctx.blobs.read(source, ctx.settings.max_file_bytes)

    return await ctx.ocr_jobs.pages(source, extracted, read)
