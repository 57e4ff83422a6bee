"""The six stages: pure async transforms over typed records.

No Redis or SQL in here: whatever a stage needs from outside (file bytes, content
caches, the project's canonical registry, a CPU pool) arrives in ``StageContext``
as a small protocol, so the accelerated and the traditional path run the very same
stage code with different implementations behind it.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

from accelerated.backends import Backends, OcrText, Segment
from accelerated.cpu import CpuPool
from accelerated.models import CanonicalEntity, Extracted, SourceRef
from accelerated.settings import Settings

R = TypeVar("R")


class BlobReader(Protocol):
    """What a stage reads document bytes through (``backends.BlobSource`` implements it)."""

    async def read(self, source: SourceRef, max_bytes: int) -> bytes: ...


class ExtractCache(Protocol):
    """Extraction result by file sha256 (same bytes under a new id = no re-extraction)."""

    async def get(self, sha256: str) -> Extracted | None: ...

    async def put(self, sha256: str, value: Extracted) -> None: ...


class ChunkResultCache(Protocol):
    """Per-chunk entity results by (extractor version, sha256 of chunk text)."""

    async def get_many(self, version: str, hashes: Sequence[str]) -> list[bytes | None]: ...

    async def put_many(self, version: str, items: dict[str, bytes]) -> None: ...


class OcrCache(Protocol):
    """OCR results by (engine version with dpi, file sha256): page number -> text."""

    async def get(self, version: str, sha256: str) -> dict[int, OcrText] | None: ...

    async def put(self, version: str, sha256: str, pages: dict[int, OcrText]) -> None: ...

    def exclusive(self, version: str, sha256: str) -> AbstractAsyncContextManager[None]:
        """Held while one document reads this content with the engine; another with
        the same content waits, then finds the pages in the cache."""
        ...


class OcrJobs(Protocol):
    """Documents read by an asynchronous OCR service (``accelerated/ocr/jobs.py``)."""

    async def pages(
        self, source: SourceRef, extracted: Extracted, read: Callable[[], Awaitable[bytes]]
    ) -> dict[int, OcrText]:
        """Every page the service read, once it has; until then it starts the job (at
        most one per file content) and raises ``accelerated.parking.Parked``. A job
        that failed for this document raises ``DocumentError``."""
        ...

    async def first_take(self, sha256: str) -> tuple[bool, float]:
        """(whether this document is the first to take its content's job's pages, the
        job's seconds): the run's tally counts a job's pages as read once."""
        ...


class TranscriptCache(Protocol):
    """Transcripts by (transcriber version, audio sha256): the timed segments."""

    async def get(self, version: str, sha256: str) -> list[Segment] | None: ...

    async def put(self, version: str, sha256: str, segments: list[Segment]) -> None: ...

    def exclusive(self, version: str, sha256: str) -> AbstractAsyncContextManager[None]:
        """As ``OcrCache.exclusive``: one transcription of a recording at a time."""
        ...


class OcrTally(Protocol):
    """Adds to a run's OCR figures (``accelerated/ocr/tally.py``): shared by every
    worker, so the batch summary counts pages OCRed anywhere."""

    async def add(
        self, project: str, generation: int, engine_pages: int, cached_pages: int, seconds: float
    ) -> None: ...


class CanonicalRegistry(Protocol):
    """Project-wide canonical entities; ``get_or_create`` is atomic across workers.

    Returns, for each requested entity, the entity as registered. Ids are uuid5 over
    (project, type, key) and the registry keeps the least display name seen, exactly
    as the database does, so the outcome never depends on document order.
    """

    async def get_or_create(
        self, project: str, entities: Sequence[CanonicalEntity]
    ) -> list[CanonicalEntity]: ...


@dataclass
class StageContext:
    """Everything a stage may use besides its input record."""

    project: str
    settings: Settings
    blobs: BlobReader
    canonical: CanonicalRegistry
    extract_cache: ExtractCache | None = None  # None on the traditional path
    chunk_cache: ChunkResultCache | None = None  # None on the traditional path
    ocr_cache: OcrCache | None = None  # None on the traditional path
    ocr_jobs: OcrJobs | None = None  # with an asynchronous OCR service (OCR_BACKEND=textract)
    transcript_cache: TranscriptCache | None = None  # None on the traditional path
    ocr_tally: OcrTally | None = None
    executor: Executor | None = None  # None: the loop's default thread pool
    source: SourceRef | None = None  # the document being processed
    extras: dict[str, Any] = field(default_factory=dict)
    backends: Backends | None = None  # built once at the CLI edge (accelerated/backends.py)
    # Fields the stage adds to the document's state hash with its output (figures that
    # vary run to run, such as seconds, and so must stay out of the stored content).
    state_fields: dict[str, str] = field(default_factory=dict)
    # Accounting, so "time inside stage code" is CPU the stage itself used: its own
    # thread CPU on the loop, less what other tasks used while it awaited, plus the CPU
    # its offloaded calls used where they ran (not the wait for a free executor).
    cpu_s: float = 0.0  # CPU seconds the offloaded calls used where they ran
    offloaded_cpu_s: float = 0.0  # loop-thread CPU spent on other tasks while awaiting
    cpu_in_flight: int = 0  # offloaded calls not yet returned
    cpu_abandoned: int = 0  # offloaded calls cancelled while running (a time limit fired)

    async def run_cpu(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """Run CPU-bound code off the event loop (process pool when configured)."""
        loop = asyncio.get_running_loop()
        call = functools.partial(fn, *args, **kwargs) if kwargs else functools.partial(fn, *args)
        t0 = time.thread_time()
        self.cpu_in_flight += 1
        try:
            if isinstance(self.executor, CpuPool):
                # Supervised: a child that dies under the call is replaced and the call
                # resubmitted; the engine recycles the pool if the time limit fires.
                result, cpu = await self.executor.run(
                    functools.partial(_timed, call), self.settings.cpu_retries
                )
            else:
                result, cpu = await loop.run_in_executor(self.executor, _timed, call)
        except asyncio.CancelledError:
            self.cpu_abandoned += 1  # still running where it was sent: see the engine
            raise
        finally:
            self.cpu_in_flight -= 1
            self.offloaded_cpu_s += time.thread_time() - t0
        self.cpu_s += cpu
        return result

    def __post_init__(self) -> None:
        # Awaiting I/O (file reads, caches, the registry) is not stage compute either:
        # other documents' work runs on the loop meanwhile.
        self.blobs = cast(BlobReader, _Awaited(self.blobs, self))
        self.canonical = cast(CanonicalRegistry, _Awaited(self.canonical, self))
        if self.extract_cache is not None:
            self.extract_cache = cast(ExtractCache, _Awaited(self.extract_cache, self))
        if self.chunk_cache is not None:
            self.chunk_cache = cast(ChunkResultCache, _Awaited(self.chunk_cache, self))
        if self.ocr_cache is not None:
            self.ocr_cache = cast(OcrCache, _Awaited(self.ocr_cache, self))
        if self.ocr_jobs is not None:
            self.ocr_jobs = cast(OcrJobs, _Awaited(self.ocr_jobs, self))
        if self.transcript_cache is not None:
            self.transcript_cache = cast(TranscriptCache, _Awaited(self.transcript_cache, self))
        if self.ocr_tally is not None:
            self.ocr_tally = cast(OcrTally, _Awaited(self.ocr_tally, self))

    def compute_seconds(self, thread_cpu_s: float) -> float:
        """CPU inside stage code, given the loop thread's CPU over the whole stage call."""
        return max(0.0, thread_cpu_s - self.offloaded_cpu_s) + self.cpu_s


class _Awaited:
    """Proxy that books the loop CPU spent while awaiting the target's coroutines (the
    I/O client's own work and other documents' tasks) as not this stage's compute."""

    def __init__(self, target: Any, ctx: StageContext) -> None:
        self._target, self._ctx = target, ctx

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        @functools.wraps(attr)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.thread_time()
            try:
                return await attr(*args, **kwargs)
            finally:
                self._ctx.offloaded_cpu_s += time.thread_time() - t0

        return timed


def _timed(call: Callable[[], R]) -> tuple[R, float]:
    """Runs in the executor (thread or process): the call's result and its CPU time."""
    t0 = time.thread_time()
    result = call()
    return result, time.thread_time() - t0
