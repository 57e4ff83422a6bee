"""Bytes in, text and page ranges out: one entry point for every supported format.

``extract_bytes`` is a picklable top-level function so the extract stage can run it in
a process pool; its only I/O is the external converters of the legacy formats (a
bounded subprocess each, see ``legacy``), which it is told about by a
``LegacyTools`` record. Every failure is a ``DocumentError`` with a short code and a
sentence a paralegal can act on.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Final

from accelerated.errors import DocumentError
from accelerated.extractors.base import ExtractResult, assemble, page_texts, tidy
from accelerated.extractors.detect import (
    HEAD_BYTES,
    SUPPORTED,
    UNSUPPORTED,
    extension,
    ole_kind,
    sniff_format,
    sniff_kind,
)
from accelerated.extractors.docx import check_zip, extract_docx
from accelerated.extractors.eml import extract_eml
from accelerated.extractors.html import extract_html, html_to_text
from accelerated.extractors.image import extract_image
from accelerated.extractors.legacy import LegacyTools, discover, extract_doc, extract_wpd
from accelerated.extractors.pdf import extract_pdf
from accelerated.extractors.rtf import extract_rtf
from accelerated.extractors.structured import extract_json, extract_xml, xml_to_text
from accelerated.extractors.text import decode_text, extract_txt

__all__ = [
    "HEAD_BYTES",
    "ExtractResult",
    "LegacyTools",
    "assemble",
    "decode_text",
    "extract_bytes",
    "html_to_text",
    "page_texts",
    "sniff_format",
    "sniff_kind",
    "tidy",
    "xml_to_text",
]

MAX_NESTING: Final = 3  # e-mail inside e-mail inside e-mail: deeper is refused
_ENCRYPTED_OOXML: Final = "EncryptedPackage".encode("utf-16-le")


def extract_audio(data: bytes) -> ExtractResult:
    """A recording has no text to extract: the transcribe stage makes it."""
    return ExtractResult(format="audio", method="needs_transcription", text="", pages=[])


_BY_KIND: Final[dict[str, Callable[[bytes], ExtractResult]]] = {
    "pdf": extract_pdf,
    "docx": extract_docx,
    "txt": extract_txt,
    "html": extract_html,
    "json": extract_json,
    "xml": extract_xml,
    "audio": extract_audio,
    "rtf": extract_rtf,
    "tiff": functools.partial(extract_image, kind="tiff"),
    "png": functools.partial(extract_image, kind="png"),
    "jpeg": functools.partial(extract_image, kind="jpeg"),
}
_BY_TOOL: Final[dict[str, Callable[[bytes, LegacyTools], ExtractResult]]] = {
    "doc": extract_doc,
    "wpd": extract_wpd,
}


def _resolve_zip(data: bytes, kind: str) -> str:
    """A ZIP whose name and head did not say what it is: look at its parts."""
    with check_zip(data, "ZIP package") as package:
        names = set(package.namelist())
    if "word/document.xml" in names:
        return "docx"
    if "xl/workbook.xml" in names:
        return "xlsx"
    if "ppt/presentation.xml" in names:
        return "pptx"
    return kind


def _extract(data: bytes, filename: str, depth: int, tools: LegacyTools) -> ExtractResult:
    if not data:
        raise DocumentError("The file is empty (0 bytes).", code="empty")
    kind = sniff_kind(filename, data[:HEAD_BYTES])
    if kind == "zip":
        kind = _resolve_zip(data, kind)
    if kind in ("ole", "doc", "xls", "ppt", "msg"):
        if _ENCRYPTED_OOXML in data[:65536]:
            raise DocumentError(
                "The Office document is password-protected; remove the password and re-submit it.",
                code="encrypted",
            )
        kind = ole_kind(extension(filename), data)  # the stream names, wherever they are
    if kind not in SUPPORTED:
        what = UNSUPPORTED.get(kind, "an unrecognised file")
        raise DocumentError(
            f"The file is {what}, which cannot be extracted; convert it to PDF or DOCX.",
            code="unsupported_format",
        )
    if kind == "eml":
        if depth >= MAX_NESTING:
            raise DocumentError(
                f"E-mails nested more than {MAX_NESTING} deep are not extracted.",
                code="too_large",
            )
        result = extract_eml(data, functools.partial(_extract, depth=depth + 1, tools=tools))
    elif kind in _BY_TOOL:
        result = _BY_TOOL[kind](data, tools)
    else:
        result = _BY_KIND[kind](data)
    if not result.needs_ocr and kind != "audio" and not result.text.strip():
        raise DocumentError(f"The {kind.upper()} file contains no readable text.", code="empty")
    return result


@functools.cache
def _default_tools() -> LegacyTools:
    return discover()


def extract_bytes(data: bytes, filename: str, tools: LegacyTools | None = None) -> ExtractResult:
    """Extract text and pages from a document's bytes; ``filename`` only hints the format.

    ``tools``: the legacy converters this run may use (built at start-up from the
    settings); None uses those on ``PATH`` with default bounds.
    """
    return _extract(data, filename, 0, tools if tools is not None else _default_tools())
