"""E-mail (RFC 822 / MIME) with the stdlib parser: headers, body, then attachments.

A production is judged by what was attached as much as by what was written, so each
attachment goes through the same extractors and becomes its own page(s). One bad
attachment is recorded in the metadata and never fails the e-mail itself.
"""

from __future__ import annotations

from collections.abc import Callable
from email import policy
from email.message import EmailMessage, MIMEPart
from email.parser import BytesParser
from typing import Final

from accelerated.errors import DocumentError
from accelerated.extractors.base import ExtractResult, assemble, page_texts, tidy
from accelerated.extractors.html import html_to_text
from accelerated.extractors.text import decode_text

HEADERS: Final = ("From", "To", "Cc", "Date", "Subject")
MAX_ATTACHMENTS: Final = 200

Recurse = Callable[[bytes, str], ExtractResult]


def _header(msg: MIMEPart, name: str) -> str:
    try:
        value = msg.get(name)
    except Exception:  # malformed header: policy.default raises while parsing it
        value = msg.get_all(name, failobj=[""])[0] if name in msg else None
    return " ".join(str(value).split()) if value else ""


def _part_text(part: MIMEPart) -> str:
    """Decoded text of a text/* part, tolerating unknown or lying charsets."""
    try:
        content = part.get_content()
        if isinstance(content, str):
            return content
    except (LookupError, UnicodeError, KeyError, AssertionError):
        pass
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    try:
        return decode_text(payload)[0]
    except DocumentError:
        return payload.decode("utf-8", "replace")


def _body(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    text = _part_text(part)
    return html_to_text(text) if part.get_content_subtype() == "html" else text


def _attachment_bytes(part: MIMEPart) -> bytes:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], MIMEPart):
            return bytes(inner[0].as_bytes(policy=policy.default))
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def extract_eml(data: bytes, recurse: Recurse) -> ExtractResult:
    msg = BytesParser(policy=policy.default).parsebytes(data)
    if not isinstance(msg, EmailMessage) or (not msg.keys() and not msg.get_payload()):
        raise DocumentError("The e-mail file has no headers or body.", code="corrupt")
    header_lines = [f"{n}: {v}" for n in HEADERS if (v := _header(msg, n))]
    parts = [tidy("\n".join(header_lines) + "\n\n" + _body(msg))]
    meta: dict[str, str] = {}
    names: list[str] = []
    errors: list[str] = []
    needs_ocr: list[str] = []
    for index, part in enumerate(msg.iter_attachments(), start=1):
        if index > MAX_ATTACHMENTS:
            errors.append(f"attachments after the first {MAX_ATTACHMENTS} were skipped")
            break
        name = part.get_filename() or f"attachment-{index}" + (
            ".eml" if part.get_content_type() == "message/rfc822" else ""
        )
        names.append(name)
        try:
            result = recurse(_attachment_bytes(part), name)
        except DocumentError as exc:
            errors.append(f"{name}: {exc}")
            continue
        if result.needs_ocr:
            needs_ocr.append(name)
            parts.append(f"Attachment: {name} (scanned; text pending OCR)")
            continue
        texts = page_texts(result)
        texts[0] = f"Attachment: {name}\n\n{texts[0]}"
        parts.extend(texts)
    if names:
        meta["attachments"] = "; ".join(names)
    if errors:
        meta["attachment_errors"] = "; ".join(errors)
    if needs_ocr:
        meta["attachments_needing_ocr"] = "; ".join(needs_ocr)
    if subject := _header(msg, "Subject"):
        meta["subject"] = subject
    text, pages = assemble(parts)
    return ExtractResult(format="eml", method="eml", text=text, pages=pages, metadata=meta)
