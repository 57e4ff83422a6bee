"""HTML to text with selectolax (lexbor, C): block elements become line breaks.

``node.text()`` would glue a docket table's cells and an opinion's paragraphs into one
line; a small walk over the tree keeps the block structure the chunker relies on.
"""

from __future__ import annotations

import re
from typing import Final

from selectolax.lexbor import LexborHTMLParser, LexborNode

from accelerated.extractors.base import ExtractResult, single_page
from accelerated.extractors.text import decode_text

_DROP: Final = frozenset(
    {"script", "style", "noscript", "template", "head", "svg", "iframe", "object", "button"}
)
_BLOCK: Final = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "center", "dd",
        "details", "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure",
        "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "html",
        "legend", "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table",
        "tbody", "thead", "tfoot", "tr", "ul", "title", "option",
    }
)  # fmt: skip
_PARAGRAPH: Final = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "section", "title"}
)  # followed by a blank line, so the chunker sees paragraph breaks
_CELL: Final = frozenset({"td", "th"})
_SPACES_RE: Final = re.compile(r"[ \u00a0]+")
_TABS_RE: Final = re.compile(r" ?\t[\t ]*")  # table cells: one tab between cells
_NEWLINES_RE: Final = re.compile(r"\s*\n\s*")


def _flush(line: list[str], out: list[str], *, paragraph: bool = False) -> None:
    text = _TABS_RE.sub("\t", _SPACES_RE.sub(" ", "".join(line))).strip()
    if text:
        out.append(text)
    if paragraph and out and out[-1]:
        out.append("")
    line.clear()


def html_to_text(html: str) -> str:
    """Readable text of an HTML document or fragment; the <title> leads if present."""
    tree = LexborHTMLParser(html)
    out: list[str] = []
    title = tree.css_first("title")
    if title is not None and (title_text := title.text(strip=True)):
        out.extend((title_text, ""))
    root = tree.body or tree.root
    if root is None:
        return "\n".join(out)
    line: list[str] = []
    in_pre = 0
    # Iterative walk (deeply nested pages must not hit the recursion limit): an entry
    # is (node, leaving) so block ends can break the line too.
    stack: list[tuple[LexborNode, bool]] = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        tag = node.tag or ""
        if leaving:
            in_pre -= tag == "pre"
            if tag in _BLOCK:
                _flush(line, out, paragraph=tag in _PARAGRAPH)
            elif tag in _CELL:
                line.append("\t")
            continue
        if node.is_text_node:
            raw = node.text_content or ""
            if in_pre:  # preformatted opinions keep their line breaks
                *complete, rest = raw.split("\n")
                for part in complete:
                    line.append(part)
                    _flush(line, out, paragraph=not part.strip())
                line.append(rest)
            else:
                line.append(_NEWLINES_RE.sub(" ", raw.replace("\t", " ")))
            continue
        if not node.is_element_node or tag in _DROP:
            continue
        if tag == "br":
            _flush(line, out)
            continue
        if tag in _BLOCK:
            _flush(line, out)
        in_pre += tag == "pre"
        stack.append((node, True))
        children = []
        child = node.first_child
        while child is not None:
            children.append(child)
            child = child.next
        stack.extend((c, False) for c in reversed(children))
    _flush(line, out)
    return "\n".join(out)


def extract_html(data: bytes) -> ExtractResult:
    text, encoding = decode_text(data)
    return single_page("html", "html", html_to_text(text), encoding=encoding)
