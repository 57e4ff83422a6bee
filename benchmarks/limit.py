"""The limit: the stages alone, in-process, with nothing between them.

``python -m benchmarks.run --mode cold,limit`` runs this beside the two paths' cold
runs, on the same staged documents, alternating with them. Each document's stages
run one after the other in one task, each stage behind its own semaphore of
``--concurrency`` slots (what the engine's per-stage concurrency is), with the
registry's stage functions and routes, the same backends, the same CPU process pool
(the harness's one executor) and in-memory dict caches and canonical registry (the
least-name rule of the real ones). No Redis, no Postgres, no codec, no stream, no
writer: the stage outputs are handed to the next stage as objects.

What it leaves out on purpose: intake (hashing the files into ``SourceRef`` is done
before the clock starts; the paths' runs include it, about 1 ms a document) and
everything after the last stage. So ``docs_per_s`` is what this code can do on this
machine, and a path's ``fraction`` (its docs/s over the limit's in the same
invocation and latency) is how close the pipeline comes to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accelerated.backends import OcrText, Segment, resolve_backends
from accelerated.canonical import field_of
from accelerated.errors import DocumentError
from accelerated.intake import discover, fingerprint_all
from accelerated.models import CanonicalEntity, Extracted, SourceRef
from accelerated.pipeline import FIRST, PIPELINE, Finish
from accelerated.scope import project_scope
from accelerated.settings import Settings
from accelerated.stages import StageContext
from benchmarks import cpu_ledger

PROJECT = "limit"


class MemExtractCache:
    def __init__(self) -> None:
        self.d: dict[str, Extracted] = {}

    async def get(self, sha256: str) -> Extracted | None:
        return self.d.get(sha256)

    async def put(self, sha256: str, value: Extracted) -> None:
        self.d[sha256] = value


class MemChunkCache:
    def __init__(self) -> None:
        self.d: dict[tuple[str, str], bytes] = {}

    async def get_many(self, version: str, hashes: Sequence[str]) -> list[bytes | None]:
        return [self.d.get((version, h)) for h in hashes]

    async def put_many(self, version: str, items: dict[str, bytes]) -> None:
        for h, v in items.items():
            self.d[(version, h)] = v


class _Exclusive:
    """One reader of a content at a time, within this process (``OcrCache.exclusive``)."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def exclusive(self, version: str, sha256: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault((version, sha256), asyncio.Lock())
        async with lock:
            yield


class MemOcrCache(_Exclusive):
    def __init__(self) -> None:
        super().__init__()
        self.d: dict[tuple[str, str], dict[int, OcrText]] = {}

    async def get(self, version: str, sha256: str) -> dict[int, OcrText] | None:
        return self.d.get((version, sha256))

    async def put(self, version: str, sha256: str, pages: dict[int, OcrText]) -> None:
        self.d[(version, sha256)] = pages


class MemTranscriptCache(_Exclusive):
    def __init__(self) -> None:
        super().__init__()
        self.d: dict[tuple[str, str], list[Segment]] = {}

    async def get(self, version: str, sha256: str) -> list[Segment] | None:
        return self.d.get((version, sha256))

    async def put(self, version: str, sha256: str, segments: list[Segment]) -> None:
        self.d[(version, sha256)] = segments


class MemCanonicalRegistry:
    """One dict per project; the least display name (code point order) wins."""

    def __init__(self) -> None:
        self.d: dict[tuple[str, str], CanonicalEntity] = {}

    async def get_or_create(
        self, project: str, entities: Sequence[CanonicalEntity]
    ) -> list[CanonicalEntity]:
        out = []
        for e in entities:
            k = (project, field_of(e))
            have = self.d.get(k)
            if have is None or e.name < have.name:
                self.d[k] = have = e
            out.append(have)
        return out


@dataclass
class LimitResult:
    docs: int
    done: int
    failed: int
    elapsed_s: float
    first_done_s: float
    last5_s: float
    stage_compute_s: float
    cpu_s: dict[str, float] = field(default_factory=dict)

    @property
    def docs_per_s(self) -> float:
        return self.docs / self.elapsed_s if self.elapsed_s else 0.0


def tail_times(done_at: Sequence[float], t0: float, t_end: float) -> tuple[float, float]:
    """(time to the first document done, time from 95 % done to the end), seconds."""
    if not done_at:
        return 0.0, 0.0
    ordered = sorted(done_at)
    k = max(0, math.ceil(0.95 * len(ordered)) - 1)
    return ordered[0] - t0, max(0.0, t_end - ordered[k])


async def run_limit(
    root: Path, settings: Settings, executor: Executor | None, concurrency: int
) -> LimitResult:
    """Every document under ``root`` through the enabled stages; see the module doc."""
    files = discover([root]).files
    refs = await fingerprint_all(PROJECT, files, generation=1)
    backends = resolve_backends(settings)
    specs = {s.name: s for s in PIPELINE if s.enabled(settings)}
    fns = {name: spec.resolve() for name, spec in specs.items()}
    sems = {name: asyncio.Semaphore(concurrency) for name in specs}
    extract_cache, chunk_cache = MemExtractCache(), MemChunkCache()
    ocr_cache, transcript_cache = MemOcrCache(), MemTranscriptCache()
    canonical = MemCanonicalRegistry()
    done_at: list[float] = []
    compute = 0.0
    failed = 0

    def context(ref: SourceRef) -> StageContext:
        return StageContext(
            project=ref.project,
            settings=settings,
            blobs=backends.blobs,
            canonical=canonical,
            extract_cache=extract_cache,
            chunk_cache=chunk_cache,
            ocr_cache=ocr_cache,
            transcript_cache=transcript_cache,
            executor=executor,
            source=ref,
            extras={"entity_backend": settings.entity_backend},
            backends=backends,
        )

    async def one(ref: SourceRef) -> None:
        nonlocal compute, failed
        outputs: dict[str, Any] = {}
        name = FIRST
        while True:
            spec = specs[name]
            inp = ref if spec.input_key is None else outputs[spec.input_key]
            async with sems[name]:
                ctx = context(ref)
                token = cpu_ledger.stage_scope()
                t0 = time.thread_time()
                try:
                    with project_scope(ctx.project):
                        out = await fns[name](inp, ctx)
                except DocumentError:
                    failed += 1
                    done_at.append(time.perf_counter())
                    return
                finally:
                    compute += ctx.compute_seconds(time.thread_time() - t0)
                    cpu_ledger.end_stage_scope(token)
            outputs[spec.output_key] = out
            route = spec.route(out, settings)
            if isinstance(route, Finish):
                done_at.append(time.perf_counter())
                return
            name = route

    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(one(r) for r in refs))
        t_end = time.perf_counter()
    finally:
        await backends.aclose()
    first, last5 = tail_times(done_at, t0, t_end)
    return LimitResult(
        docs=len(refs),
        done=len(done_at) - failed,
        failed=failed,
        elapsed_s=t_end - t0,
        first_done_s=first,
        last5_s=last5,
        stage_compute_s=compute,
    )
