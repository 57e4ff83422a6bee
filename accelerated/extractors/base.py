"""The result type every extractor returns, and the page assembly they share.

Kept free of format libraries so the process-pool worker and the stage can import it
cheaply, and so every format builds page ranges the same way.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

from accelerated.models import Extracted, Page

PAGE_SEP: Final = "\n\n"

# C0 controls other than tab/newline/form feed, DEL, and Unicode non-characters: they
# carry no text, break downstream tokenisers and JSON consumers, and PDFs emit them.
_JUNK_RE: Final = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f\ufffe\uffff]")
_TRAILING_WS_RE: Final = re.compile(r"[ \t\u00a0]+\n")
_BLANK_RUN_RE: Final = re.compile(r"\n{3,}")


class ExtractResult(msgspec.Struct, kw_only=True):
    """What ``extract_bytes`` returns; picklable, so it crosses a process pool."""

    format: str  # one of models.FORMATS
    # text_layer | docx | html | eml | plain | json | xml | antiword | wpd2text | striprtf
    # | needs_ocr
    method: str
    text: str
    pages: list[Page]
    needs_ocr: bool = False
    metadata: dict[str, str] = msgspec.field(default_factory=dict)


def tidy(text: str) -> str:
    """Normalise line ends and blank runs so offsets mean the same in every format."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n")
    text = _JUNK_RE.sub("", text)
    text = _TRAILING_WS_RE.sub("\n", text)
    return _BLANK_RUN_RE.sub("\n\n", text).strip()


def assemble(parts: list[str]) -> tuple[str, list[Page]]:
    """Join page texts with ``PAGE_SEP``; the ranges tile the text without gaps.

    The separator after a page belongs to that page, so every character offset maps
    to exactly one page and the last page ends at ``len(text)``.
    """
    pages: list[Page] = []
    offset = 0
    for number, part in enumerate(parts, start=1):
        end = offset + len(part) + (len(PAGE_SEP) if number < len(parts) else 0)
        pages.append(Page(number, offset, end))
        offset = end
    return PAGE_SEP.join(parts), pages


def page_texts(result: ExtractResult | Extracted) -> list[str]:
    """The text of each page without its trailing separator (inverse of ``assemble``)."""
    out: list[str] = []
    for page in result.pages:
        chunk = result.text[page.start : page.end]
        out.append(chunk.removesuffix(PAGE_SEP) if page.number < len(result.pages) else chunk)
    return out


def single_page(fmt: str, method: str, text: str, **metadata: str) -> ExtractResult:
    body, pages = assemble([tidy(text)])
    return ExtractResult(format=fmt, method=method, text=body, pages=pages, metadata=metadata)
