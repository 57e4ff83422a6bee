"""Stage 1, extract: document bytes to text and page ranges.

The result is cached by the file's sha256 (when the context has a cache), so the
same bytes under another id, or a ``--reprocess`` run, never pay for extraction
twice; ``EXTRACTOR_CALLS`` counts the real extractor runs so that can be checked.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import PurePosixPath

import msgspec
from prometheus_client import Counter

from accelerated.errors import DocumentError
from accelerated.extractors import (
    HEAD_BYTES,
    ExtractResult,
    LegacyTools,
    extract_bytes,
    sniff_format,
)
from accelerated.extractors.legacy import legacy_tools
from accelerated.models import Extracted, SourceRef
from accelerated.stages import StageContext

EXTRACTOR_CALLS = Counter(
    "extractor_calls_total", "Extractor runs (cache misses), by sniffed format", ["format"]
)
_HASH_IN_THREAD_BYTES = 1024 * 1024  # hashlib drops the GIL; worth a thread above this


def _filename(source: SourceRef) -> str:
    return PurePosixPath(source.source_key or source.source).name or source.source


async def _sha256(data: bytes) -> str:
    if len(data) < _HASH_IN_THREAD_BYTES:
        return hashlib.sha256(data).hexdigest()
    return await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())


def to_extracted(source: SourceRef, sha256: str, result: ExtractResult) -> Extracted:
    return Extracted(
        document_id=source.document_id,
        sha256=sha256,
        format=result.format,
        method=result.method,
        text=result.text,
        pages=list(result.pages),
        needs_ocr=result.needs_ocr,
        metadata=dict(result.metadata),
    )


def extract_capped(
    data: bytes, name: str, max_chars: int, tools: LegacyTools | None = None
) -> ExtractResult:
    """Extract, refusing text past the cap where it was made (in the pool child), so a
    150 MB text file or a DOCX that unpacks to 200 MiB fails once, fast, and its text
    never crosses the process boundary or reaches the later stages."""
    result = extract_bytes(data, name, tools)
    if len(result.text) > max_chars:
        raise DocumentError(
            f"The document's text is {len(result.text):,} characters, over the "
            f"{max_chars:,} limit; split it or raise MAX_TEXT_CHARS.",
            code="too_large",
        )
    return result


async def run(source: SourceRef, ctx: StageContext) -> Extracted:
    data = await ctx.blobs.read(source, ctx.settings.max_file_bytes)
    sha = await _sha256(data)
    if sha != source.sha256:
        raise DocumentError(
            "The file changed after it was registered (its content hash differs); "
            "re-run intake for it.",
            code="changed",
        )
    if ctx.extract_cache is not None:
        cached = await ctx.extract_cache.get(sha)
        if cached is not None:
            return msgspec.structs.replace(cached, document_id=source.document_id)
    name = _filename(source)
    EXTRACTOR_CALLS.labels(format=sniff_format(name, data[:HEAD_BYTES])).inc()
    # The converters chosen at start-up (backends.resolve_backends); a context built
    # without backends (a test, an embedding) finds them from its settings.
    tools = ctx.backends.legacy if ctx.backends is not None else legacy_tools(ctx.settings)
    result = await ctx.run_cpu(extract_capped, data, name, ctx.settings.max_text_chars, tools)
    extracted = to_extracted(source, sha, result)
    if ctx.extract_cache is not None:
        await ctx.extract_cache.put(sha, extracted)
    return extracted
