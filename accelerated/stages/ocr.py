"""Branch stage ``ocr``: text for the pages ``extract`` found no text layer on.

It runs when an OCR engine is configured (``OCR_BACKEND``, ``tesseract`` by default;
see ``accelerated/backends.py``) and ``extract`` reported a scan (``needs_ocr``: a
PDF without a text layer, or an image) or a mixed PDF (``partly_scanned``: only the
pages without one are read); with ``OCR_BACKEND=none`` a scan ends as ``needs_ocr``.
Every page is rendered and read in the process pool, one call per page, so the pages
of many documents are OCRed at once. The output replaces ``extract``'s under the
same ``ocr`` key, so ``clean`` reads it either way.

Bounds, all checked before the page's pixels are decoded: ``OCR_MAX_PAGES`` pages to
read per document (more fails the document at once), ``OCR_MAX_PIXELS`` per page
(from the page box or the image header: decompression bombs), and the engine's
``OCR_PAGE_TIMEOUT_S`` per page. A page that cannot be read (over a bound, a broken
TIFF frame, a timeout) fails the document with an error naming the page, rather
than passing on a document with a silent hole in it; the pages that were read are
in the OCR cache by then, so a second attempt (with a larger limit) reads only the
rest. Results are cached by engine version, dpi and the file's sha256, and stored
progressively, so a stage time-out or a crash does not lose the pages done.

Recorded per page: the method (``page_methods``: ``text_layer`` or ``ocr``) and the
engine's confidence (``ocr_confidence``) in the document's metadata, which is stored
content and therefore deterministic; the seconds per page, which vary run to run, go
to the state hash (``ocr:page_seconds``), the ``ocr_page_seconds`` histogram and the
run's tally (``accelerated/ocr/tally.py``), with the pages read and the pages taken
from the cache, which the batch summary shows.

With a document service (Textract) the first run starts the job and parks the
document; the deployment's poller puts the text in the OCR cache and sends the
document back here, where it is a cache hit (``accelerated/ocr/jobs.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Final

import msgspec
from prometheus_client import Counter, Histogram

from accelerated import state
from accelerated.backends import OcrEngine, OcrText, ocr_mode
from accelerated.errors import ConfigError, DocumentError
from accelerated.extractors.base import assemble, page_texts, tidy
from accelerated.extractors.detect import IMAGE_KINDS
from accelerated.models import Extracted
from accelerated.ocr.render import ocr_page
from accelerated.stages import StageContext

OCR_DPI: Final = 300  # PDF pages are drawn at this resolution; images keep their own
OCR_FORMATS: Final = frozenset({"pdf"} | IMAGE_KINDS)
CACHE_FLUSH_S: Final = 10.0  # store pages read at least this often (progress survives)
OCR_PAGES = Counter(
    "ocr_pages_total", "Pages read by an OCR engine or taken from the OCR cache", ["source"]
)
OCR_PAGE_SECONDS = Histogram(
    "ocr_page_seconds",
    "Seconds per page read by an OCR engine (render and recognition, in the pool)",
    buckets=(0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128),
)


def pages_to_read(extracted: Extracted) -> list[int]:
    """Page numbers without a text layer: all of a scan, the scanned pages of a mixed PDF."""
    if extracted.needs_ocr:
        return [p.number for p in extracted.pages]
    listed = extracted.metadata.get("ocr_pages", "")
    return [int(n) for n in listed.split(",") if n.strip().isdigit()]


def cache_version(engine_version: str) -> str:
    """The OCR cache's version part: engine, its data and language, and the dpi."""
    return f"{engine_version}@{OCR_DPI}dpi"


@contextlib.asynccontextmanager
async def staged(data: bytes, suffix: str) -> AsyncIterator[str]:
    """The document's bytes in a private temporary file for the pool calls to open
    (written once per document; removed afterwards, whatever happens)."""
    fd, path = tempfile.mkstemp(prefix="lp-ocr-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            await asyncio.to_thread(fh.write, data)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _check_bounds(extracted: Extracted, wanted: list[int], max_pages: int) -> None:
    if extracted.format not in OCR_FORMATS:
        raise DocumentError(f"OCR of {extracted.format} files is not supported", code="ocr")
    if len(wanted) > max_pages:
        raise DocumentError(
            f"The document has {len(wanted):,} pages to OCR, over the OCR_MAX_PAGES limit "
            f"of {max_pages:,}; split it or raise OCR_MAX_PAGES.",
            code="too_large",
        )


async def _read_pages(
    extracted: Extracted,
    missing: list[int],
    read: dict[int, OcrText],
    ctx: StageContext,
    version: str,
) -> tuple[dict[int, float], list[tuple[int, Exception]]]:
    """OCR ``missing`` into ``read`` in the pool; the seconds per page read, and the
    pages that failed with why. Pages read are stored in the cache as they come."""
    engine = ctx.backends.ocr if ctx.backends is not None else None
    assert engine is not None and ctx.source is not None
    settings = ctx.settings
    data = await ctx.blobs.read(ctx.source, settings.max_file_bytes)
    digest = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
    if digest != extracted.sha256:  # else the cache would file new pages under old bytes
        raise DocumentError(
            "The file changed after it was extracted (its content hash differs); "
            "re-run intake for it.",
            code="changed",
        )
    seconds: dict[int, float] = {}
    failed: list[tuple[int, Exception]] = []
    # A bound per document keeps one 1,000-page scan from queueing ahead of every
    # other document's calls in the pool; several documents still fill it.
    gate = asyncio.Semaphore(2 * (settings.cpu_workers or os.cpu_count() or 1))

    async def one(path: str, number: int) -> tuple[int, tuple[OcrText, float] | Exception]:
        async with gate:
            try:
                return number, await ctx.run_cpu(
                    ocr_page, path, extracted.format, number, OCR_DPI,
                    settings.ocr_max_pixels, engine,
                )  # fmt: skip
            except Exception as exc:  # sorted by the caller: bad page, or retry
                return number, exc

    stored, flushed_at = len(read), time.monotonic()

    async def flush(force: bool = False) -> None:
        nonlocal stored, flushed_at
        due = force or time.monotonic() - flushed_at >= CACHE_FLUSH_S
        if ctx.ocr_cache is not None and len(read) > stored and due:
            await ctx.ocr_cache.put(version, extracted.sha256, dict(read))
            stored, flushed_at = len(read), time.monotonic()

    async with staged(data, f".{extracted.format}") as path:
        tasks = [asyncio.ensure_future(one(path, n)) for n in missing]
        try:
            for next_done in asyncio.as_completed(tasks):
                number, result = await next_done
                if isinstance(result, Exception):
                    failed.append((number, result))
                    continue
                read[number], seconds[number] = result
                await flush()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await flush(force=True)  # what was read is kept, even on the way out
    return seconds, sorted(failed, key=lambda f: f[0])


def _raise_for(failed: list[tuple[int, Exception]]) -> None:
    """One error for the document: the first page's, naming every page that failed."""
    number, first = failed[0]
    if not isinstance(first, DocumentError):
        raise first  # a crashed pool child, a backend: the engine's retry rules apply
    others = [n for n, _e in failed[1:]]
    more = f" Pages {', '.join(map(str, others))} failed too." if others else ""
    message = str(first.args[0]) if first.args else str(first)
    if not message.lower().startswith("page"):
        message = f"Page {number}: {message}"
    raise DocumentError(message + more, code=first.code)


async def run(extracted: Extracted, ctx: StageContext) -> Extracted:
    engine = ctx.backends.ocr if ctx.backends is not None else None
    if engine is None:
        raise ConfigError("the ocr stage ran without an OCR engine (OCR_BACKEND)")
    assert ctx.source is not None
    wanted = pages_to_read(extracted)
    _check_bounds(extracted, wanted, ctx.settings.ocr_max_pages)
    if ocr_mode(engine) == "document":
        # A service reading the whole document (Textract): the first run starts its job
        # and parks the document; the poller sends it back here once the text is in.
        pages = await _read_by_service(extracted, ctx)
        await _tally_service_pages(ctx, extracted.sha256, len(wanted))
        return _with_ocr_text(extracted, wanted, pages, engine.version)
    assert isinstance(engine, OcrEngine)
    version = cache_version(engine.version)
    cache = ctx.ocr_cache
    read: dict[int, OcrText] = {}
    if cache is not None:
        read = await cache.get(version, extracted.sha256) or {}
    seconds: dict[int, float] = {}
    failed: list[tuple[int, Exception]] = []
    # Only a miss takes the content's lease, and looks again under it: a document with
    # the same scan that held it first has put its pages in the cache by then.
    leased = cache if cache is not None and any(n not in read for n in wanted) else None
    async with (
        leased.exclusive(version, extracted.sha256)
        if leased is not None
        else contextlib.nullcontext()
    ):
        if leased is not None:
            read = await leased.get(version, extracted.sha256) or {}
        missing = [n for n in wanted if n not in read]
        cached = len(wanted) - len(missing)
        if missing:
            seconds, failed = await _read_pages(extracted, missing, read, ctx, version)
    OCR_PAGES.labels("engine").inc(len(seconds))
    OCR_PAGES.labels("cache").inc(cached)
    for s in seconds.values():
        OCR_PAGE_SECONDS.observe(s)
    if ctx.ocr_tally is not None:
        await ctx.ocr_tally.add(
            ctx.source.project, ctx.source.generation, len(seconds), cached, sum(seconds.values())
        )
    if failed:
        _raise_for(failed)
    ctx.state_fields[state.OCR_PAGE_SECONDS] = ",".join(
        f"{n}={s:.3f}" for n, s in sorted(seconds.items())
    )
    return _with_ocr_text(extracted, wanted, read, version)


def _with_ocr_text(
    extracted: Extracted, wanted: list[int], read: dict[int, OcrText], version: str
) -> Extracted:
    layer = [] if extracted.needs_ocr else page_texts(extracted)
    ocred = set(wanted)
    parts = [  # a service that returned no text for a page: that page is empty
        (read[p.number].text.strip() if p.number in read else "")
        if p.number in ocred
        else layer[p.number - 1]
        for p in extracted.pages
    ]
    text, ranges = assemble([tidy(t) for t in parts])
    if not text.strip():
        raise DocumentError(
            f"OCR found no text on any of the {len(parts)} page(s) (blank pages?).",
            code="empty",
        )
    meta = dict(extracted.metadata)
    meta["ocr_engine"] = version
    meta["ocr_pages"] = ",".join(map(str, wanted))
    meta["ocr_confidence"] = ",".join(
        f"{read[n].confidence:.1f}" if n in read else "-1.0" for n in wanted
    )
    meta["page_methods"] = ",".join(
        "ocr" if p.number in ocred else "text_layer" for p in extracted.pages
    )
    method = "ocr" if extracted.needs_ocr else "text_layer+ocr"
    return msgspec.structs.replace(
        extracted, method=method, text=text, pages=ranges, needs_ocr=False, metadata=meta
    )


async def _tally_service_pages(ctx: StageContext, sha256: str, pages: int) -> None:
    """The run's tally for a service's pages: read by the service for the first document
    to take a job's result, from the cache for every other one (a copy of the scan, a
    re-run), as for the page engines."""
    if ctx.ocr_tally is None or ctx.ocr_jobs is None or ctx.source is None:
        return
    first, seconds = await ctx.ocr_jobs.first_take(sha256)
    OCR_PAGES.labels("engine" if first else "cache").inc(pages)
    await ctx.ocr_tally.add(
        ctx.source.project,
        ctx.source.generation,
        pages if first else 0,
        0 if first else pages,
        seconds,
    )


async def _read_by_service(extracted: Extracted, ctx: StageContext) -> dict[int, OcrText]:
    """Every page, as the service read the whole file (see ``accelerated/ocr/jobs.py``):
    raises ``Parked`` while its job runs, ``DocumentError`` when it failed."""
    source = ctx.source
    assert source is not None
    if ctx.ocr_jobs is None:
        raise ConfigError(
            "OCR_BACKEND names an asynchronous OCR service, which needs Redis (REDIS_URL) "
            "for its jobs and its poller"
        )

    async def read() -> bytes:
        return await ctx.blobs.read(source, ctx.settings.max_file_bytes)

    return await ctx.ocr_jobs.pages(source, extracted, read)
