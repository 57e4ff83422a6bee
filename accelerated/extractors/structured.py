"""JSON (CAP / CourtListener case records) and XML opinions (Columbia, CAP casebody).

Case JSON carries its opinion as an XML or HTML string in ``casebody.data`` plus the
caption fields; the useful text is those fields, not every string in the record
(ids, URLs, hashes), so the generic all-strings walk is only the fallback.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from lxml import etree  # type: ignore[import-untyped]

from accelerated.errors import DocumentError
from accelerated.extractors.base import ExtractResult, single_page
from accelerated.extractors.html import html_to_text
from accelerated.extractors.text import decode_text

# Inline elements of the Columbia and CAP schemas; every other element is a block.
_INLINE: Final = frozenset(
    {
        "italic", "bold", "em", "i", "b", "u", "strong", "span", "a", "sup", "sub",
        "center", "citation", "cross_reference", "footnote_reference", "footnotemark",
        "footnote_mark", "footnote_number", "extracted-citation", "bracketnum", "small",
    }
)  # fmt: skip
# Star-pagination markers ("*16", "Page 886"): they split sentences mid-flow.
_SKIP: Final = frozenset({"page_number", "page-number"})
_SPACES_RE: Final = re.compile(r"[ \t\u00a0]+")
_CL_TEXT_FIELDS: Final = (
    "plain_text", "html_with_citations", "html_columbia", "html_lawbox", "xml_harvard", "html",
)  # fmt: skip
_CAPTION_FIELDS: Final = ("name", "case_name", "docket_number", "decision_date", "date_filed")


def _parser() -> Any:
    # No DTDs, no entity expansion, no network: XML from outside must not reach out
    # or expand a billion laughs.
    return etree.XMLParser(
        recover=True, resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )


def _local(tag: Any) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def xml_to_text(text: str) -> str:
    """Text content of an XML document, with block elements on their own lines."""
    # Already decoded: drop the declaration so its encoding claim cannot contradict.
    raw = re.sub(r"^\s*<\?xml[^>]*\?>", "", text).encode("utf-8")
    try:
        root = etree.fromstring(raw, _parser())
    except etree.XMLSyntaxError as exc:
        raise DocumentError(f"The XML file cannot be parsed ({exc}).", code="corrupt") from None
    if root is None:
        raise DocumentError("The XML file has no readable elements.", code="corrupt")
    out: list[str] = []
    walker = etree.iterwalk(root, events=("start", "end"))
    for event, el in walker:
        name = _local(el.tag)
        block = name not in _INLINE
        if event == "start":
            if block:
                out.append("\n")
            if name in _SKIP:
                walker.skip_subtree()
            elif el.text and isinstance(el.tag, str):
                out.append(el.text)
        else:
            if block:
                out.append("\n")
            if el.tail and el is not root:
                out.append(el.tail)
    lines = (_SPACES_RE.sub(" ", ln).strip() for ln in "".join(out).split("\n"))
    return "\n".join(lines)


def extract_xml(data: bytes) -> ExtractResult:
    text, encoding = decode_text(data)  # binary named .xml fails as not_text, like .txt
    return single_page("xml", "xml", xml_to_text(text), encoding=encoding)


def _markup_to_text(value: str) -> str:
    stripped = value.lstrip()
    if stripped.startswith("<?xml") or "<casebody" in stripped[:300]:
        return xml_to_text(value)
    if stripped.startswith("<"):
        return html_to_text(value)
    return value


def _strings(obj: Any, out: list[str]) -> None:
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
        elif (
            isinstance(item, str) and item.strip() and not item.startswith(("http://", "https://"))
        ):
            out.append(item.strip())


def _case_text(record: dict[str, Any]) -> tuple[str, dict[str, str]] | None:
    """Caption + opinion text of a CAP or CourtListener record; None if it is neither."""
    meta: dict[str, str] = {}
    head: list[str] = []
    for key in _CAPTION_FIELDS:
        if isinstance(record.get(key), str) and record[key].strip():
            head.append(record[key].strip())
            meta[key] = record[key].strip()
    cites = [
        c["cite"] for c in record.get("citations") or [] if isinstance(c, dict) and "cite" in c
    ]
    court = record.get("court")
    court_name = court.get("name") if isinstance(court, dict) else None
    if cites:
        head.insert(1, "; ".join(map(str, cites)))
        meta["citation"] = str(cites[0])
    if isinstance(court_name, str):
        head.insert(1, court_name)
        meta["court"] = court_name
    body: list[str] = []
    casebody = record.get("casebody")
    data = casebody.get("data") if isinstance(casebody, dict) else None
    if isinstance(data, str):
        body.append(_markup_to_text(data))
    elif isinstance(data, dict):  # CAP "text" body format
        _strings([data.get(k) for k in ("head_matter", "parties", "judges", "attorneys")], body)
        for op in data.get("opinions") or []:
            if isinstance(op, dict):
                _strings([op.get("author"), op.get("text")], body)
    else:
        field = next(
            (f for f in _CL_TEXT_FIELDS if isinstance(record.get(f), str) and record[f]), None
        )
        if field is None:
            return None
        body.append(_markup_to_text(record[field]))
    return "\n".join(head) + "\n\n" + "\n\n".join(body), meta


def extract_json(data: bytes) -> ExtractResult:
    text, _encoding = decode_text(data)
    try:
        record = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise DocumentError(f"The JSON file is not valid JSON ({exc}).", code="corrupt") from None
    found = _case_text(record) if isinstance(record, dict) else None
    if found is not None:
        body, meta = found
        return single_page("json", "json", body, **meta)
    strings: list[str] = []
    _strings(record, strings)
    return single_page("json", "json", "\n".join(strings), layout="all_strings")
