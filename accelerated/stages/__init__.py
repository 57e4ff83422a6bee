"""The six stages: pure async transforms over typed records.

No Redis or SQL in here: whatever a stage needs from outside (file bytes, content
caches, the project's canonical registry, a CPU pool) arrives in ``StageContext``
as a small protocol, so the accelerated and the traditional path run the very same
stage code with different implementations behind it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from accelerated.models import CanonicalEntity, Extracted, SourceRef
from accelerated.settings import Settings

R = TypeVar("R")


class BlobReader(Protocol):
    """Reads a document's bytes (local path today; S3 in a later backend)."""

    async def read(self, source: SourceRef, max_bytes: int) -> bytes: ...


class ExtractCache(Protocol):
    """Extraction result by file sha256 (same bytes under a new id = no re-extraction)."""

    async def get(self, sha256: str) -> Extracted | None: ...

    async def put(self, sha256: str, value: Extracted) -> None: ...


class ChunkResultCache(Protocol):
    """Per-chunk entity results by (extractor version, sha256 of chunk text)."""

    async def get_many(self, version: str, hashes: Sequence[str]) -> list[bytes | None]: ...

    async def put_many(self, version: str, items: dict[str, bytes]) -> None: ...


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
    executor: Executor | None = None  # None: the loop's default thread pool
    source: SourceRef | None = None  # the document being processed
    extras: dict[str, Any] = field(default_factory=dict)

    async def run_cpu(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """Run CPU-bound code off the event loop (process pool when configured)."""
        loop = asyncio.get_running_loop()
        call = functools.partial(fn, *args, **kwargs) if kwargs else functools.partial(fn, *args)
        return await loop.run_in_executor(self.executor, call)
