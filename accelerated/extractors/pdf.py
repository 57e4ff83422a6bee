"""PDF text layer with pypdfium2 (PDFium, C): fast and tolerant of real court PDFs.

PDFium is not thread-safe, even across different documents, and stages may run in a
thread pool, so every call into it holds one process-wide lock; in a process pool each
worker has its own lock and PDFium copy. Every document, page and text page is closed
in ``finally`` so hundreds of files do not leak native memory.
"""

from __future__ import annotations

import threading
from typing import Final

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from accelerated.errors import DocumentError
from accelerated.extractors.base import ExtractResult, assemble, tidy
from accelerated.extractors.detect import HEAD_BYTES, PDF_MAGIC_WINDOW, sniff_kind
from accelerated.models import Page

MAX_PAGES: Final = 5000
# A page with less text than this that is mostly covered by an image is a scan with
# only a court's e-filing stamp ("Case 2:15-cv-... Filed 07/29/19 Page 1 of 1") on it.
SCAN_MAX_CHARS: Final = 200
SCAN_MIN_IMAGE_COVER: Final = 0.5

_LOCK: Final = threading.Lock()
_LOOKS_LIKE: Final = {
    "html": "a web page, such as a saved download error",
    "xml": "an XML file",
    "json": "a JSON file",
    "eml": "an e-mail",
    "txt": "plain text",
}


def _image_cover(page: pdfium.PdfPage) -> float:
    """Share of the page covered by images, or by vector paths: a page whose words are
    drawn as outlines (a "vector" or flattened PDF) has no text to read either."""
    width, height = page.get_size()
    area = max(width * height, 1.0)
    covered = 0.0
    kinds = [pdfium_c.FPDF_PAGEOBJ_IMAGE, pdfium_c.FPDF_PAGEOBJ_PATH]
    for obj in page.get_objects(filter=kinds, max_depth=4):
        left, bottom, right, top = obj.get_bounds()
        covered += max(right - left, 0.0) * max(top - bottom, 0.0)
    return float(min(covered / area, 1.0))


def _read_page(doc: pdfium.PdfDocument, index: int) -> tuple[str, bool]:
    """(text, is_scan) for one page."""
    page = doc[index]
    try:
        textpage = page.get_textpage()
        try:
            text = tidy(textpage.get_text_range())
        finally:
            textpage.close()
        chars = sum(not c.isspace() for c in text)
        if chars >= SCAN_MAX_CHARS:
            return text, False
        cover = _image_cover(page)
        return text, cover >= SCAN_MIN_IMAGE_COVER or (chars == 0 and cover > 0)
    finally:
        page.close()


def _open(data: bytes) -> pdfium.PdfDocument:
    if b"%PDF-" not in data[:PDF_MAGIC_WINDOW]:
        looks_like = sniff_kind("", data[:HEAD_BYTES])
        hint = f" (it looks like {_LOOKS_LIKE[looks_like]})" if looks_like in _LOOKS_LIKE else ""
        raise DocumentError(
            f"The file is named or labelled as a PDF but is not one{hint}.", code="corrupt"
        )
    return open_pdf(data)


def open_pdf(source: bytes | str) -> pdfium.PdfDocument:
    """PDFium's document from bytes or a path (the OCR stage's pool calls read a file
    the stage wrote once), its errors mapped; callers hold ``_LOCK``."""
    try:
        return pdfium.PdfDocument(source)
    except pdfium.PdfiumError as exc:
        code = getattr(exc, "err_code", None)
        if code in (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY):
            raise DocumentError(
                "The PDF is password-protected; remove the password and re-submit it.",
                code="encrypted",
            ) from None
        raise DocumentError(
            "The PDF is damaged or incomplete and cannot be opened.",
            code="corrupt",
        ) from None


def extract_pdf(data: bytes) -> ExtractResult:
    """Text of every page; a PDF with no page carrying real text is handed to OCR."""
    with _LOCK:
        doc = _open(data)
        try:
            total = len(doc)
            count = min(total, MAX_PAGES)
            read = [_read_page(doc, i) for i in range(count)]
        finally:
            doc.close()
    meta = {"page_count": str(total)}
    if total > count:
        meta["truncated"] = f"only the first {MAX_PAGES} of {total} pages were extracted"
    if total == 0:
        raise DocumentError("The PDF has no pages.", code="empty")
    scans = [i + 1 for i, (text, is_scan) in enumerate(read) if is_scan or not text]
    if len(scans) == count:
        # No text layer worth keeping: the OCR stage fills text and pages later.
        pages = [Page(n, 0, 0) for n in range(1, count + 1)]
        return ExtractResult(
            format="pdf", method="needs_ocr", text="", pages=pages, needs_ocr=True, metadata=meta
        )
    ocr_pages = [n for n in scans if read[n - 1][1]]
    if ocr_pages:
        meta["ocr_pages"] = ",".join(map(str, ocr_pages))
    text, pages = assemble([t for t, _ in read])
    return ExtractResult(format="pdf", method="text_layer", text=text, pages=pages, metadata=meta)
