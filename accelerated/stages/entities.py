"""Stage 4, ``entities``: run an entity backend per chunk, with a content-hash cache.

Results are cached per (backend version, sha256 of the chunk text, combined with the
document context when the backend reads one): a backend sees only the chunk text and
that short context string, so a cached and a fresh result are the same bytes and the
output is identical either way. A contextual backend's context is computed in the
process pool with the chunks (never on the event loop) and cached per document.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

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
_CONTEXT_DECODER = msgspec.json.Decoder(str)
_TYPES = frozenset(ENTITY_TYPES)


def run_backend(
    backend: EntityBackend, texts: list[str], context: str | None = None
) -> list[list[RawMention]]:
    """Top-level so the backend and texts can be pickled to a process pool.

    ``context`` is the document context when one was computed (a contextual backend),
    None otherwise.
    """
    if context is not None and isinstance(backend, ContextualBackend):
        return backend.extract_in_context(texts, context)
    assert isinstance(backend, PoolEntityBackend)
    return backend.extract(texts)


def run_document(
    backend: EntityBackend, texts: list[str], starts: list[int], todo: list[int]
) -> tuple[str, list[list[RawMention]]]:
    """In the process pool: the document context (from the chunks, which cover the
    text) and then the results of the chunks ``todo`` (indexes into ``texts``)."""
    context = context_of_chunks(backend, texts, starts)
    return context, run_backend(backend, [texts[i] for i in todo], context)


async def call_backend(
    backend: EntityBackend, texts: list[str], ctx: StageContext, context: str | None = None
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


def joined_text(texts: list[str], starts: list[int]) -> str:
    """The cleaned text again, from chunks that cover it (overlapping), in order."""
    parts: list[str] = []
    covered = 0
    for text, start in zip(texts, starts, strict=True):
        end = start + len(text)
        if end > covered:
            parts.append(text[max(0, covered - start) :])
            covered = end
    return "".join(parts)


def document_text(doc: Chunked) -> str:
    """The cleaned text again, from the chunks (they cover it, overlapping)."""
    return joined_text([c.text for c in doc.chunks], [c.start for c in doc.chunks])


def context_of_chunks(backend: EntityBackend, texts: list[str], starts: list[int]) -> str:
    if not isinstance(backend, ContextualBackend) or not texts:
        return ""
    return backend.document_context(joined_text(texts, starts))


def pool_part(backend: EntityBackend) -> EntityBackend:
    """What runs in the process pool: a split backend's ``cpu_part``, else the backend."""
    return backend.cpu_part if isinstance(backend, SplitBackend) else backend


def is_contextual(backend: EntityBackend) -> bool:
    """A backend whose pool part reads a document context (computed in the pool too)."""
    part = pool_part(backend)
    in_pool = isinstance(backend, SplitBackend) or entity_mode(backend) == "pool"
    return in_pool and isinstance(part, ContextualBackend)


def context_of(backend: EntityBackend, doc: Chunked) -> str:
    """The document context a contextual backend (or a split backend's pool part) gets
    with each chunk ("" otherwise)."""
    return context_of_chunks(
        pool_part(backend), [c.text for c in doc.chunks], [c.start for c in doc.chunks]
    )


def backend_results(backend: EntityBackend, doc: Chunked) -> list[list[RawMention]]:
    """Uncached backend results for a document's chunks (benchmarks, tests; pool backends)."""
    texts = [c.text for c in doc.chunks]
    if not is_contextual(backend):
        return run_backend(backend, texts)
    return run_document(backend, texts, [c.start for c in doc.chunks], list(range(len(texts))))[1]


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def cache_hash(text: str, context: str) -> str:
    """The chunk-cache key: the text's sha256, or of context and text when there is one."""
    return keyed_hash(text_hash(text), context)


def keyed_hash(text_sha: str, context: str) -> str:
    return text_sha if not context else text_hash(f"{context}\x00{text_sha}")


def context_hash(text_shas: list[str], starts: list[int]) -> str:
    """The key of a document's context entry: its chunks (which make up its text).

    Prefixed so it can never equal a chunk's key."""
    listing = ",".join(f"{s}:{h}" for s, h in zip(starts, text_shas, strict=True))
    return text_hash(f"document-context\x00{listing}")


def encode_result(mentions: list[RawMention]) -> bytes:
    return _ENCODER.encode(mentions)


def decode_result(data: bytes) -> list[RawMention] | None:
    """A corrupt cache entry is a miss (recomputed), never a failed document."""
    try:
        return _DECODER.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


async def chunk_results(
    texts: list[str],
    backend: EntityBackend,
    ctx: StageContext,
    context: str | None = None,
    shas: list[str] | None = None,
) -> list[list[RawMention]]:
    """Backend results per text: cache hits first, one backend call for all misses."""
    shas = shas if shas is not None else [text_hash(t) for t in texts]
    hashes = [keyed_hash(h, context or "") for h in shas]
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
        _check_count(backend, fresh, todo)
        for idx, found in zip(missing.values(), fresh, strict=True):
            for i in idx:
                results[i] = found
        if ctx.chunk_cache is not None:
            await ctx.chunk_cache.put_many(
                backend.version, {h: encode_result(f) for h, f in zip(missing, fresh, strict=True)}
            )
    return [r if r is not None else [] for r in results]


async def contextual_results(
    doc: Chunked, backend: EntityBackend, ctx: StageContext
) -> list[list[RawMention]]:
    """A contextual backend's results, its document context computed in the pool.

    The context is a scan of the whole text (milliseconds per document), so it is never
    computed on the event loop. A document seen before finds its context in the cache
    (under ``context_hash``) and then its chunks' results; otherwise one pool call
    computes the context and every distinct chunk, and both are cached.
    """
    texts, starts = [c.text for c in doc.chunks], [c.start for c in doc.chunks]
    shas = [text_hash(t) for t in texts]
    ckey = context_hash(shas, starts)
    if ctx.chunk_cache is not None:
        [raw] = await ctx.chunk_cache.get_many(backend.version, [ckey])
        known = decode_context(raw) if raw is not None else None
        if known is not None:
            return await chunk_results(texts, backend, ctx, known, shas)
    first: dict[str, int] = {}  # same text twice in a document: computed once
    for i, h in enumerate(shas):
        first.setdefault(h, i)
    todo = list(first.values())
    if isinstance(backend, SplitBackend):  # the pool part with its context, the other alongside
        (context, cpu), other = await asyncio.gather(
            ctx.run_cpu(run_document, backend.cpu_part, texts, starts, todo),
            backend.async_part.extract_async([texts[i] for i in todo]),
        )
        _check_count(backend, cpu, todo)
        _check_count(backend, other, todo)
        fresh = [backend.merge(a, b) for a, b in zip(cpu, other, strict=True)]
    else:
        context, fresh = await ctx.run_cpu(run_document, backend, texts, starts, todo)
    _check_count(backend, fresh, todo)
    by_sha = dict(zip(first, fresh, strict=True))
    if ctx.chunk_cache is not None:
        items = {keyed_hash(h, context): encode_result(f) for h, f in by_sha.items()}
        items[ckey] = _ENCODER.encode(context)
        await ctx.chunk_cache.put_many(backend.version, items)
    return [by_sha[h] for h in shas]


def decode_context(data: bytes) -> str | None:
    """A corrupt context entry is a miss, like a corrupt chunk entry."""
    try:
        return _CONTEXT_DECODER.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


def _check_count(backend: EntityBackend, fresh: list[list[RawMention]], todo: list[Any]) -> None:
    if len(fresh) != len(todo):
        raise PipelineError(f"entity backend {backend.version} returned a wrong result count")


def assemble(doc: Chunked, found: list[list[RawMention]]) -> list[Mention]:
    """Chunk-relative backend results -> document mentions, each reported once.

    Pure, so the quality benchmark measures exactly what the stage emits.
    """
    chunks = doc.chunks
    mentions: dict[tuple[int, int, str], Mention] = {}
    crossing: list[tuple[int, int, str]] = []  # the previous chunk's, past this one's start
    for i, (chunk, raw) in enumerate(zip(chunks, found, strict=True)):
        # A chunk owns [start, next start): overlapping regions are reported once.
        owns_to = chunks[i + 1].start if i + 1 < len(chunks) else chunk.end
        seen_to = chunks[i - 1].end if i else chunk.start  # what the previous chunk saw
        kept_here: list[tuple[int, int, str]] = []
        for m in raw:
            start, end = chunk.start + m.start, chunk.start + m.end
            if not (chunk.start <= start < owns_to) or m.type not in _TYPES:
                continue
            if not (0 <= m.start < m.end <= len(chunk.text)):
                continue  # a backend bug must not corrupt spans
            key = (start, end, m.type)
            if start < seen_to and key not in mentions:
                # Both chunks saw this text: a name cut by this chunk's start ("Board" of
                # "... Disciplinary Board v. Roe") or by the previous one's end. Of two
                # overlapping mentions of one type, the longer is the name.
                other = next(
                    (k for k in crossing if k[2] == m.type and k[0] < end and start < k[1]),
                    None,
                )
                if other is not None:
                    if other[1] - other[0] >= end - start:
                        continue
                    del mentions[other]
                    crossing.remove(other)
            if key not in mentions:
                kept_here.append(key)
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
        crossing = [k for k in kept_here if k[1] > owns_to and k in mentions]
    return [mentions[k] for k in sorted(mentions)]


async def run(doc: Chunked, ctx: StageContext) -> Mentions:
    backend = (
        ctx.backends.entities
        if ctx.backends is not None
        else ENTITY_BACKENDS.create(ctx.settings.entity_backend, ctx.settings)
    )
    texts = [c.text for c in doc.chunks]
    if is_contextual(backend) and texts:
        found = await contextual_results(doc, backend, ctx)
    else:
        found = await chunk_results(texts, backend, ctx)
    return Mentions(
        document_id=doc.document_id,
        chunk_ids=[c.id for c in doc.chunks],
        mentions=assemble(doc, found),
    )
