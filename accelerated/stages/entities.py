"""Stage 4, ``entities``: run an entity backend per chunk, with a content-hash cache.

Results are cached per (backend version, sha256 of the chunk text, prefixed by the
document context when the backend reads one): a backend sees only the chunk text and
that short context string, so a cached and a fresh result are the same bytes and the
output is identical either way.
"""

from __future__ import annotations

import asyncio
import hashlib

import msgspec

from accelerated.backends import (
    ENTITY_BACKENDS,
    AsyncEntityBackend,
    EntityBackend,
    PoolEntityBackend,
    SplitBackend,
    entity_mode,
)
from accelerated.entities import ContextualBackend, RawMention
from accelerated.errors import PipelineError
from accelerated.ids import mention_id
from accelerated.models import ENTITY_TYPES, Chunked, Mention, Mentions
from accelerated.stages import StageContext

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(list[RawMention])
_TYPES = frozenset(ENTITY_TYPES)
CONTEXT_OFFLOAD_CHARS = 200_000  # larger documents get their context off the event loop


def run_backend(
    backend: EntityBackend, texts: list[str], context: str = ""
) -> list[list[RawMention]]:
    """Top-level so the backend and texts can be pickled to a process pool."""
    if context and isinstance(backend, ContextualBackend):
        return backend.extract_in_context(texts, context)
    assert isinstance(backend, PoolEntityBackend)
    return backend.extract(texts)


async def call_backend(
    backend: EntityBackend, texts: list[str], ctx: StageContext, context: str = ""
) -> list[list[RawMention]]:
    """Run the backend where its mode says: the process pool, or awaited on the loop
    (a split backend: both at once, merged per text)."""
    if isinstance(backend, SplitBackend):
        cpu, other = await asyncio.gather(
            ctx.run_cpu(run_backend, backend.cpu_part, texts, context),
            backend.async_part.extract_async(texts),
        )
        return [backend.merge(a, b) for a, b in zip(cpu, other, strict=True)]
    if entity_mode(backend) == "pool":
        return await ctx.run_cpu(run_backend, backend, texts, context)
    assert isinstance(backend, AsyncEntityBackend)
    return await backend.extract_async(texts)


def document_text(doc: Chunked) -> str:
    """The cleaned text again, from the chunks (they cover it, overlapping)."""
    parts: list[str] = []
    covered = 0
    for c in doc.chunks:
        if c.end > covered:
            parts.append(c.text[max(0, covered - c.start) :])
            covered = c.end
    return "".join(parts)


def context_of(backend: EntityBackend, doc: Chunked) -> str:
    """The document context a contextual backend (or a split backend's pool part) gets
    with each chunk ("" otherwise)."""
    part = backend.cpu_part if isinstance(backend, SplitBackend) else backend
    if not isinstance(part, ContextualBackend) or not doc.chunks:
        return ""
    return part.document_context(document_text(doc))


def backend_results(backend: EntityBackend, doc: Chunked) -> list[list[RawMention]]:
    """Uncached backend results for a document's chunks (benchmarks, tests)."""
    return run_backend(backend, [c.text for c in doc.chunks], context_of(backend, doc))


def cache_hash(text: str, context: str) -> str:
    """The chunk-cache key: the text's sha256, or of context and text when there is one."""
    data = text if not context else f"{context}\x00{text}"
    return hashlib.sha256(data.encode("utf-8", "surrogatepass")).hexdigest()


def encode_result(mentions: list[RawMention]) -> bytes:
    return _ENCODER.encode(mentions)


def decode_result(data: bytes) -> list[RawMention] | None:
    """A corrupt cache entry is a miss (recomputed), never a failed document."""
    try:
        return _DECODER.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


async def chunk_results(
    texts: list[str], backend: EntityBackend, ctx: StageContext, context: str = ""
) -> list[list[RawMention]]:
    """Backend results per text: cache hits first, one backend call for all misses."""
    hashes = [cache_hash(t, context) for t in texts]
    results: list[list[RawMention] | None] = [None] * len(texts)
    if ctx.chunk_cache is not None and texts:
        cached = await ctx.chunk_cache.get_many(backend.version, hashes)
        for i, data in enumerate(cached):
            if data is not None:
                results[i] = decode_result(data)
    missing: dict[str, list[int]] = {}  # same text twice in a document: computed once
    for i, r in enumerate(results):
        if r is None:
            missing.setdefault(hashes[i], []).append(i)
    if missing:
        todo = [texts[idx[0]] for idx in missing.values()]
        fresh = await call_backend(backend, todo, ctx, context)
        if len(fresh) != len(todo):
            raise PipelineError(f"entity backend {backend.version} returned a wrong result count")
        for idx, found in zip(missing.values(), fresh, strict=True):
            for i in idx:
                results[i] = found
        if ctx.chunk_cache is not None:
            await ctx.chunk_cache.put_many(
                backend.version, {h: encode_result(f) for h, f in zip(missing, fresh, strict=True)}
            )
    return [r if r is not None else [] for r in results]


def assemble(doc: Chunked, found: list[list[RawMention]]) -> list[Mention]:
    """Chunk-relative backend results -> document mentions, each reported once.

    Pure, so the quality benchmark measures exactly what the stage emits.
    """
    chunks = doc.chunks
    mentions: dict[tuple[int, int, str], Mention] = {}
    for i, (chunk, raw) in enumerate(zip(chunks, found, strict=True)):
        # A chunk owns [start, next start): overlapping regions are reported once.
        owns_to = chunks[i + 1].start if i + 1 < len(chunks) else chunk.end
        for m in raw:
            start, end = chunk.start + m.start, chunk.start + m.end
            if not (chunk.start <= start < owns_to) or m.type not in _TYPES:
                continue
            if not (0 <= m.start < m.end <= len(chunk.text)):
                continue  # a backend bug must not corrupt spans
            key = (start, end, m.type)
            if key not in mentions:
                mentions[key] = Mention(
                    id=mention_id(doc.document_id, m.type, start, end),
                    document_id=doc.document_id,
                    chunk_id=chunk.id,
                    type=m.type,
                    text=chunk.text[m.start : m.end],
                    normalized=m.normalized,
                    start=start,
                    end=end,
                    role=m.role,
                )
    return [mentions[k] for k in sorted(mentions)]


async def run(doc: Chunked, ctx: StageContext) -> Mentions:
    backend = (
        ctx.backends.entities
        if ctx.backends is not None
        else ENTITY_BACKENDS.create(ctx.settings.entity_backend, ctx.settings)
    )
    if sum(len(c.text) for c in doc.chunks) > CONTEXT_OFFLOAD_CHARS:
        context = await ctx.run_cpu(context_of, backend, doc)  # a scan of the whole text
    else:
        context = context_of(backend, doc)
    found = await chunk_results([c.text for c in doc.chunks], backend, ctx, context)
    return Mentions(
        document_id=doc.document_id,
        chunk_ids=[c.id for c in doc.chunks],
        mentions=assemble(doc, found),
    )
