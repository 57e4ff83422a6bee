"""Branch stage ``ocr``: text for the pages ``extract`` found no text layer on.

It runs only when an OCR engine is configured (``OCR_BACKEND``; see
``accelerated/backends.py``) and ``extract`` reported ``needs_ocr``; otherwise the
document ends as ``needs_ocr``. Every page is rendered and read in the process pool,
one call per page, so the pages of many documents are OCRed at once. The output
replaces ``extract``'s under the same ``ocr`` key, so ``clean`` reads it either way.
"""

from __future__ import annotations

import asyncio
import time

import msgspec

from accelerated.backends import OcrEngine, OcrText, PageImage
from accelerated.errors import ConfigError, DocumentError
from accelerated.extractors.base import assemble
from accelerated.models import Extracted
from accelerated.stages import StageContext

OCR_DPI = 300


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


async def run(extracted: Extracted, ctx: StageContext) -> Extracted:
    engine = ctx.backends.ocr if ctx.backends is not None else None
    if engine is None:
        raise ConfigError("the ocr stage ran without an OCR engine (OCR_BACKEND)")
    if extracted.format != "pdf":
        raise DocumentError(f"OCR of {extracted.format} files is not supported", code="ocr")
    assert ctx.source is not None
    data = await ctx.blobs.read(ctx.source, ctx.settings.max_file_bytes)
    pages = await asyncio.gather(
        *(ctx.run_cpu(ocr_pdf_page, data, i, OCR_DPI, engine) for i in range(len(extracted.pages)))
    )
    text, ranges = assemble([r.text for r, _s in pages])
    meta = dict(extracted.metadata)
    meta["ocr_engine"] = engine.version
    meta["ocr_pages"] = ",".join(str(i + 1) for i in range(len(pages)))
    meta["ocr_confidence"] = ",".join(f"{r.confidence:.1f}" for r, _s in pages)
    # Per-page seconds vary run to run, so they are not part of the stored content: the
    # stage's compute time (state hash, metrics) accounts for them.
    return msgspec.structs.replace(
        extracted, method="ocr", text=text, pages=ranges, needs_ocr=False, metadata=meta
    )
