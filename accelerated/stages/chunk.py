"""Stage 3, ``chunk``: overlapping, page-aware chunks with deterministic ids.

Chunk boundaries depend only on the text and the two size settings, so a re-run
yields the same chunks and ids (and the entity cache keeps hitting).
"""

from __future__ import annotations

import re
from bisect import bisect_right

from accelerated.errors import ConfigError
from accelerated.ids import chunk_id
from accelerated.models import Chunk, Chunked, Cleaned, Page
from accelerated.stages import StageContext

OFFLOAD_CHARS = 500_000
BREAK_WINDOW = 0.2  # look for a good break in the last 20% of a chunk

_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE = re.compile(r"[.!?][\"'”’)\]]*\s+")
_SPACE = re.compile(r"\s+")
_WORD_START = re.compile(r"(?<!\S)\S")


def _last_end(rx: re.Pattern[str], text: str, lo: int, hi: int) -> int | None:
    """End of the last match lying wholly inside text[lo:hi], if any."""
    end = None
    for m in rx.finditer(text, lo, hi):
        end = m.end()
    return end


def _break_at(text: str, start: int, limit: int, size: int) -> int:
    """Best end in (start, limit]: paragraph, sentence, whitespace; a word cut only if forced."""
    lo = max(start + 1, limit - max(1, int(size * BREAK_WINDOW)))
    for rx in (_PARAGRAPH, _SENTENCE, _SPACE):
        end = _last_end(rx, text, lo, limit)
        if end is not None and end > start:
            return end
    end = _last_end(_SPACE, text, start + 1, limit)  # whitespace earlier in the chunk
    return end if end is not None else limit


def _next_start(start: int, end: int, overlap: int, text: str) -> int:
    """First word start at or after ``end - overlap`` (and after ``start``), else ``end``."""
    want = max(end - overlap, start + 1)
    m = _WORD_START.search(text, want, end) if want < end else None
    return m.start() if m is not None else end


def chunk_spans(text: str, size: int, overlap: int) -> list[tuple[int, int]]:
    """[(start, end)] covering ``text``; each next start is in (start, end]."""
    if size <= 0 or not 0 <= overlap < size:
        raise ConfigError(
            f"need chunk_chars > 0 and 0 <= chunk_overlap < chunk_chars: {size}, {overlap}"
        )
    spans: list[tuple[int, int]] = []
    start, n = 0, len(text)
    while start < n:
        if n - start <= size:
            spans.append((start, n))
            break
        end = _break_at(text, start, start + size, size)
        spans.append((start, end))
        start = _next_start(start, end, overlap, text)
    return spans


def _page_of(ends: list[int], numbers: list[int], offset: int) -> int:
    i = min(bisect_right(ends, offset), len(ends) - 1)
    return numbers[i]


def build_chunks(doc: Cleaned, size: int, overlap: int) -> list[Chunk]:
    pages = doc.pages or [Page(1, 0, len(doc.text))]
    ends = [p.end for p in pages]
    numbers = [p.number for p in pages]
    return [
        Chunk(
            id=chunk_id(doc.document_id, i),
            document_id=doc.document_id,
            index=i,
            text=doc.text[s:e],
            start=s,
            end=e,
            page_start=_page_of(ends, numbers, s),
            page_end=_page_of(ends, numbers, e - 1),
        )
        for i, (s, e) in enumerate(chunk_spans(doc.text, size, overlap))
    ]


async def run(doc: Cleaned, ctx: StageContext) -> Chunked:
    size, overlap = ctx.settings.chunk_chars, ctx.settings.chunk_overlap
    if len(doc.text) > OFFLOAD_CHARS:
        chunks = await ctx.run_cpu(build_chunks, doc, size, overlap)
    else:
        chunks = build_chunks(doc, size, overlap)
    return Chunked(document_id=doc.document_id, chunks=chunks)
