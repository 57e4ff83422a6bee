"""Rich Text Format with ``striprtf``: pure Python, in-process, no system package.

striprtf over GNU unrtf (the other converter doctor-style pipelines use): it installs
with pip like every other extractor here, so RTF works wherever the pipeline does and
needs no start-up check; it runs in the CPU pool without a subprocess per file; and
its output is plain text, where unrtf's text mode prints a banner and font comments
that would have to be stripped again. striprtf is pinned exactly in pyproject.toml:
its output is part of the extract stage's version.

Two things striprtf does not do are added here. It drops page headers (a
"destination"), where court documents keep the docket number, so the text of each
``\\header`` group is converted on its own and leads the text once, as the DOCX
extractor does. And it accepts anything: a truncated file (groups never closed) or
random bytes behind ``{\\rtf`` would come out as fragments or noise, so both are
refused as ``corrupt`` first.
"""

from __future__ import annotations

import re
from typing import Final

from striprtf.striprtf import rtf_to_text

from accelerated.errors import DocumentError
from accelerated.extractors.base import ExtractResult, single_page

RTF_MAGIC: Final = b"{\\rtf"
MAX_HEADER_GROUPS: Final = 20
MAX_HEADER_CHARS: Final = 65536
_BOMS: Final = (b"\xef\xbb\xbf",)
# An escaped brace or backslash, \binN (N raw bytes follow), or a group brace.
_TOKEN_RE: Final = re.compile(r"\\[{}\\]|\\bin(\d+) ?|[{}]")
_HEADER_RE: Final = re.compile(r"\{\\header[lrf]?(?![a-zA-Z])")
_FONTTBL_RE: Final = re.compile(r"\{\\fonttbl(?![a-zA-Z])")
# Groups of hex-coded binary (pictures, embedded objects, theme and XML data stores):
# no text in them, and most of a large RTF's bytes. Cut out in C-speed regex scans
# before striprtf walks the rest character by character (10 MB of picture: 8.5 s).
_BLOB_RE: Final = re.compile(
    r"\{(?:\\\*)?\\(?:pict|objdata|datastore|themedata|colorschememapping)(?![a-zA-Z])"
)
_CONTROL_RE: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_CHECK_CHARS: Final = 65536


def group_end(text: str, start: int) -> int | None:
    """Index just past the group that opens at ``text[start] == "{"``; None when the
    text ends first (a truncated file). ``\\binN`` data is skipped unread."""
    depth = 0
    pos = start
    while True:
        m = _TOKEN_RE.search(text, pos)
        if m is None:
            return None
        pos = m.end()
        token = m.group()
        if m.group(1) is not None:
            pos += int(m.group(1))
        elif token == "{":
            depth += 1
        elif token == "}":
            depth -= 1
            if depth == 0:
                return pos


def _strip_blobs(text: str) -> str:
    parts: list[str] = []
    pos = 0
    while m := _BLOB_RE.search(text, pos):
        end = group_end(text, m.start())
        if end is None:
            break  # unreachable after _check: the document group closes
        parts.append(text[pos : m.start()])
        pos = end
    parts.append(text[pos:])
    return "".join(parts)


def _check(text: str) -> None:
    sample = text[:_CHECK_CHARS]
    if "\\bin" not in sample and len(_CONTROL_RE.findall(sample)) > len(sample) // 100:
        raise DocumentError(
            "The RTF document is damaged: it holds binary data, not RTF text.", code="corrupt"
        )
    if group_end(text, 0) is None:
        raise DocumentError(
            "The RTF document is truncated or damaged: its groups are never closed.",
            code="corrupt",
        )


def _convert(rtf: str) -> str:
    try:
        # striprtf ships py.typed but leaves this one function unannotated.
        text = rtf_to_text(rtf, encoding="cp1252", errors="replace")  # type: ignore[no-untyped-call]
        return str(text)
    except Exception as exc:  # striprtf raises IndexError/ValueError/LookupError alike
        raise DocumentError(
            f"The RTF document is damaged and cannot be read ({type(exc).__name__}).",
            code="corrupt",
        ) from None


def _header_lines(text: str) -> list[str]:
    """Each distinct line of the page headers, converted with the document's code page
    and font table (the header groups' own text would otherwise be dropped)."""
    first_group = text.find("{", 1)
    prologue = text[:first_group] if first_group > 0 else "{\\rtf1"
    fonts = ""
    if m := _FONTTBL_RE.search(text):
        end = group_end(text, m.start())
        fonts = text[m.start() : end] if end is not None else ""
    lines: list[str] = []
    for n, m in enumerate(_HEADER_RE.finditer(text)):
        end = group_end(text, m.start())
        if n >= MAX_HEADER_GROUPS or end is None:
            break
        body = text[m.end() : min(end, m.end() + MAX_HEADER_CHARS)]
        for line in _convert(f"{prologue}{fonts}{{\\pard {body}}}").splitlines():
            line = line.strip()
            if line and line not in lines:
                lines.append(line)
    return [*lines, ""] if lines else []


def extract_rtf(data: bytes) -> ExtractResult:
    for bom in _BOMS:
        data = data.removeprefix(bom)
    if not data.lstrip().startswith(RTF_MAGIC):
        raise DocumentError(
            "The file is named .rtf but is not a Rich Text Format document "
            "(it does not start with {\\rtf).",
            code="corrupt",
        )
    # RTF is 7-bit text with escapes; latin-1 maps each byte to one character, so
    # \binN byte counts stay character counts and nothing can fail to decode.
    text = data.decode("latin-1").lstrip()
    _check(text)
    text = _strip_blobs(text)
    lines = _header_lines(text)
    return single_page("rtf", "striprtf", "\n".join([*lines, _convert(text)]))
