"""Plain text: decode by BOM, then UTF-8, then a legacy 8-bit code page.

Court and EDGAR text files are still often latin-1/cp1252 with no declaration, so a
strict UTF-8 failure is not an error; bytes that are not text at all (NULs, control
bytes) are, because "decoding" them would hand mojibake to every later stage.
"""

from __future__ import annotations

import codecs
import re
from typing import Final

from accelerated.errors import DocumentError
from accelerated.extractors.base import ExtractResult, assemble, tidy

_CONTROL_RE: Final = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")
_MAX_CONTROL_RATIO: Final = 0.005
_BOMS: Final = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _not_text(why: str) -> DocumentError:
    return DocumentError(f"The file is not readable text ({why}).", code="not_text")


def _utf16_without_bom(data: bytes) -> str | None:
    """Windows exports are often UTF-16-LE with no BOM: ASCII with every odd byte NUL."""
    sample = data[:4096]
    if len(sample) < 4 or len(sample) % 2:
        return None
    if sample[1::2].count(0) > 0.9 * (len(sample) // 2) and 0 not in sample[0::2]:
        return "utf-16-le"
    if sample[0::2].count(0) > 0.9 * (len(sample) // 2) and 0 not in sample[1::2]:
        return "utf-16-be"
    return None


def decode_text(data: bytes) -> tuple[str, str]:
    """Return (text, encoding name) or raise ``DocumentError(code="not_text")``."""
    encoding: str | None = next((enc for bom, enc in _BOMS if data.startswith(bom)), None)
    encoding = encoding or _utf16_without_bom(data)
    if encoding is not None:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            raise _not_text(f"it starts like {encoding} but does not decode as it") from None
    else:
        try:
            text, encoding = data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            if b"\x00" in data:
                raise _not_text("it contains NUL bytes, so it is probably binary") from None
            try:
                text, encoding = data.decode("cp1252"), "cp1252"
            except UnicodeDecodeError:
                text, encoding = data.decode("latin-1"), "latin-1"
    controls = len(_CONTROL_RE.findall(text))
    if "\x00" in text or controls > max(1, len(text) * _MAX_CONTROL_RATIO):
        raise _not_text(f"{controls} control characters; it is probably binary")
    return text.removeprefix("\ufeff"), encoding


def extract_txt(data: bytes) -> ExtractResult:
    """Form feeds are the page breaks of text exports (EDGAR, slip opinions): keep them."""
    text, encoding = decode_text(data)
    parts = [tidy(p) for p in text.split("\f")]
    while len(parts) > 1 and not parts[-1]:
        parts.pop()
    body, pages = assemble(parts)
    return ExtractResult(
        format="txt", method="plain", text=body, pages=pages, metadata={"encoding": encoding}
    )
