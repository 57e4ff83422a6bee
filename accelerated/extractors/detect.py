"""Format sniffing: magic bytes first, the file extension second, content last.

Court systems emit PDFs with junk before ``%PDF-`` and download tools save HTML error
pages as ``.pdf``, so neither the name nor byte 0 alone can be trusted. Intake calls
``sniff_format`` on the first ``HEAD_BYTES``; the extractor calls ``sniff_kind`` to
also name the unsupported formats it refuses.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Final

HEAD_BYTES: Final = 4096
PDF_MAGIC_WINDOW: Final = 1024

# Images are read by OCR only (accelerated/extractors/image.py, accelerated/stages/ocr.py).
IMAGE_KINDS: Final = frozenset({"tiff", "png", "jpeg"})
# Kinds this package extracts map to themselves in models.FORMATS; the rest are refused
# with the human name below (what a paralegal reads in the batch summary).
SUPPORTED: Final = frozenset(
    {"pdf", "docx", "txt", "html", "eml", "json", "xml", "doc", "wpd", "rtf", "audio"} | IMAGE_KINDS
)
AUDIO_EXTENSIONS: Final = frozenset({".wav", ".mp3", ".m4a", ".flac", ".ogg"})
UNSUPPORTED: Final[dict[str, str]] = {
    "xls": "an Excel 97-2003 workbook (.xls)",
    "ppt": "a PowerPoint 97-2003 presentation (.ppt)",
    "msg": "an Outlook message (.msg)",
    "ole": "a legacy Microsoft Office file",
    "xlsx": "an Excel workbook (.xlsx)",
    "pptx": "a PowerPoint presentation (.pptx)",
    "odf": "an OpenDocument file",
    "zip": "a ZIP archive",
    "gzip": "a gzip archive",
    "gif": "a GIF image",
    "binary": "an unrecognised binary file",
}

_MAGIC: Final[tuple[tuple[bytes, str], ...]] = (
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "ole"),
    (b"\xffWPC", "wpd"),
    (b"{\\rtf", "rtf"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
    (b"\x1f\x8b", "gzip"),
)
_EXTENSIONS: Final[dict[str, str]] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".docm": "docx",
    ".txt": "txt",
    ".text": "txt",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".eml": "eml",
    ".json": "json",
    ".xml": "xml",
    ".doc": "doc",
    ".wpd": "wpd",
    ".wp": "wpd",
    ".wp5": "wpd",
    ".wp6": "wpd",
    ".rtf": "rtf",
    ".xls": "xls",
    ".ppt": "ppt",
    ".msg": "msg",
    ".xlsx": "xlsx",
    ".pptx": "pptx",
    **dict.fromkeys(AUDIO_EXTENSIONS, "audio"),
    ".tif": "tiff",
    ".tiff": "tiff",
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
}
_OLE_BY_EXT: Final = {".doc": "doc", ".xls": "xls", ".ppt": "ppt", ".msg": "msg"}
# An OLE2 compound file is a container: the names of its streams (UTF-16 in the
# directory) say what it holds, whatever the file is called.
_OLE_STREAMS: Final = (
    ("WordDocument".encode("utf-16-le"), "doc"),
    ("Workbook".encode("utf-16-le"), "xls"),
    ("PowerPoint Document".encode("utf-16-le"), "ppt"),
    ("__substg1.0_".encode("utf-16-le"), "msg"),
)
_BOMS: Final = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")
_MAIL_HEADER_RE: Final = re.compile(
    r"^(from|to|cc|subject|date|received|return-path|message-id|mime-version|"
    r"delivered-to|reply-to|x-[a-z0-9-]+):[ \t]",
    re.IGNORECASE,
)
_HEADER_LINE_RE: Final = re.compile(r"^[A-Za-z0-9-]+:[ \t]|^[ \t]+\S")


def extension(name: str) -> str:
    return PurePosixPath(name.replace("\\", "/")).suffix.lower()


def ole_kind(ext: str, data: bytes) -> str:
    """What an OLE2 file holds, by its stream names in ``data`` (the head, or all of
    it), else by its extension; "ole" when neither says."""
    for name, kind in _OLE_STREAMS:
        if name in data:
            return kind
    return _OLE_BY_EXT.get(ext, "ole")


def _zip_kind(ext: str, head: bytes) -> str:
    if ext in (".docx", ".docm") or b"word/" in head:
        return "docx"
    if ext == ".xlsx" or b"xl/" in head:
        return "xlsx"
    if ext == ".pptx" or b"ppt/" in head:
        return "pptx"
    if b"mimetypeapplication/vnd.oasis.opendocument" in head:
        return "odf"
    return "zip"


def _text_kind(head: bytes) -> str | None:
    """Guess a text format from its first characters; None when nothing stands out."""
    for bom in _BOMS:
        if head.startswith(bom):
            head = head[len(bom) :]
            break
    if b"\x00" in head[:512]:
        return None  # UTF-16 without BOM or binary: leave it to the extension
    sample = head.decode("latin-1").lstrip().lower()
    if sample.startswith(("<!doctype html", "<html")) or "<html" in sample[:512]:
        return "html"
    if sample.startswith("<?xml") or (sample.startswith("<") and not sample.startswith("<!--")):
        return "html" if "<html" in sample or "<body" in sample else "xml"
    if sample.startswith(("{", "[")):
        return "json"
    lines = [ln for ln in sample.splitlines()[:30] if ln.strip()]
    header_block = []
    for line in lines:
        if not _HEADER_LINE_RE.match(line):
            break
        header_block.append(line)
    if sum(1 for ln in header_block if _MAIL_HEADER_RE.match(ln)) >= 2:
        return "eml"
    return None


def sniff_kind(name: str, head: bytes) -> str:
    """Detailed kind: a supported format, a key of ``UNSUPPORTED``, or "unknown" (empty)."""
    if not head:
        return "unknown"
    ext = extension(name)
    if b"%PDF-" in head[:PDF_MAGIC_WINDOW]:
        return "pdf"
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(ext, head)
    if _is_audio(head, ext):
        return "audio"
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return ole_kind(ext, head) if kind == "ole" else kind
    by_ext = _EXTENSIONS.get(ext)
    if by_ext is not None:
        return by_ext
    guessed = _text_kind(head)
    if guessed is not None:
        return guessed
    return "binary" if _looks_binary(head) else "txt"


def _is_audio(head: bytes, ext: str) -> bool:
    """WAV, FLAC, Ogg, MP3 (an ID3 tag, or an MPEG frame sync under an audio name),
    MP4 audio (M4A)."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return True
    if head.startswith((b"fLaC", b"OggS", b"ID3")):
        return True
    if ext in AUDIO_EXTENSIONS and len(head) > 1 and head[0] == 0xFF and head[1] >= 0xE2:
        return True  # an MPEG audio frame header (sync bits, a layer set)
    return head[4:8] == b"ftyp" and head[8:12] in (b"M4A ", b"M4B ", b"mp42", b"isom", b"dash")


def _looks_binary(head: bytes) -> bool:
    if any(head.startswith(bom) for bom in _BOMS):
        return False
    controls = sum(1 for b in head if b < 9 or 13 < b < 32 or b == 127)
    return b"\x00" in head or controls > len(head) // 100


def sniff_format(path_or_name: str, head: bytes) -> str:
    """One of ``models.FORMATS``; anything this package cannot extract is "unknown"."""
    kind = sniff_kind(path_or_name, head)
    return kind if kind in SUPPORTED else "unknown"
