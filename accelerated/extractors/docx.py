"""DOCX with python-docx: body paragraphs and tables in document order.

A DOCX is a ZIP, so a hostile one can unpack to gigabytes: the central directory's
declared sizes are checked before python-docx touches it (Python's zipfile never
inflates a member past its declared size, so the check cannot be lied around).
"""

from __future__ import annotations

import io
import zipfile
from typing import Any, Final

import docx
from docx.table import Table
from docx.text.paragraph import Paragraph

from accelerated.errors import DocumentError
from accelerated.extractors.base import ExtractResult, single_page

MAX_UNPACKED_BYTES: Final = 256 * 1024 * 1024
MAX_MEMBERS: Final = 10_000
_MAIN_PART: Final = "word/document.xml"


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):,.0f} MB"


def check_zip(data: bytes, what: str = "Word document") -> zipfile.ZipFile:
    """Open the package, refusing non-ZIPs and anything that would unpack too large."""
    try:
        package = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError):
        raise DocumentError(
            f"The {what} is damaged or is not really a {what} (not a valid ZIP package).",
            code="corrupt",
        ) from None
    infos = package.infolist()
    unpacked = sum(i.file_size for i in infos)
    if len(infos) > MAX_MEMBERS or unpacked > MAX_UNPACKED_BYTES:
        package.close()
        raise DocumentError(
            f"The {what} would unpack to {_mb(unpacked)} in {len(infos)} parts "
            f"(limit {_mb(MAX_UNPACKED_BYTES)}); refused as a possible zip bomb.",
            code="too_large",
        )
    return package


def _table_lines(table: Table) -> list[str]:
    lines = []
    for row in table.rows:
        cells: list[str] = []
        seen: set[int] = set()
        for cell in row.cells:  # merged cells repeat: keep each once
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            cells.append(" ".join(cell.text.split()))
        if any(cells):
            lines.append("\t".join(cells))
    return lines


def _header_lines(document: Any) -> list[str]:
    """Section headers often carry the docket number: each distinct line leads once."""
    lines: list[str] = []
    try:
        for section in document.sections:
            for paragraph in section.header.paragraphs:
                text = paragraph.text.strip()
                if text and text not in lines:
                    lines.append(text)
    except Exception:  # a broken header part must not lose the body
        return []
    return [*lines, ""] if lines else []


def extract_docx(data: bytes) -> ExtractResult:
    with check_zip(data) as package:
        if _MAIN_PART not in package.namelist():
            raise DocumentError(
                "The ZIP package has no Word document body (word/document.xml).", code="corrupt"
            )
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises KeyError/ValueError/lxml errors alike
        raise DocumentError(
            f"The Word document is damaged and cannot be read ({type(exc).__name__}).",
            code="corrupt",
        ) from None
    lines = _header_lines(document)
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            lines.append(block.text)
        else:
            lines.extend(["", *_table_lines(block), ""])
    return single_page("docx", "docx", "\n".join(lines))
