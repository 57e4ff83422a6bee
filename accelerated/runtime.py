"""Wiring: builds the engine's parts from settings and injected clients.

Clients (Redis, the Postgres pool) are created by the CLI edge and passed in; this
module only assembles, so tests and the benchmark build a runtime the same way the
batch command and the worker do. Backends that need a client (the LLM backends) get
the runtime's own (``NeedsClients.bind``) and are closed by :meth:`Runtime.aclose`.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import socket
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from accelerated import fingerprint
from accelerated.backends import (
    AsyncDocumentOcr,
    BackendClients,
    Backends,
    NeedsClients,
    ocr_mode,
    resolve_backends,
)
from accelerated.caches import (
    RedisChunkCache,
    RedisExtractCache,
    RedisOcrCache,
    RedisTranscriptCache,
)
from accelerated.canonical import PassThroughCanonicalRegistry, RedisCanonicalRegistry
from accelerated.cluster import RedisClient
from accelerated.codec import Codec
from accelerated.cpu import CpuPool
from accelerated.engine import Engine
from accelerated.handoff import AcceleratedHandoff, Handoff, TraditionalHandoff
from accelerated.keys import Keys
from accelerated.models import SourceRef
from accelerated.ocr.jobs import RedisOcrJobs
from accelerated.ocr.tally import LocalOcrTally, RedisOcrTally
from accelerated.pipeline import StageFn
from accelerated.settings import Settings
from accelerated.shards import default_shards
from accelerated.spill import make_spill
from accelerated.stages import CanonicalRegistry, StageContext
from accelerated.transport import LocalTransport, RedisTransport, Transport
from persistence.intents import IntentMemo
from persistence.traditional import TraditionalStore
from persistence.writebehind import WriteBehindWriter

log = logging.getLogger(__name__)


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def tune_gc() -> None:
    """Collect cycles less often, and never rescan what start-up loaded.

    Documents turn into millions of short-lived, acyclic objects (rows, records); at
    CPython's default thresholds the collector ran about a thousand times per 345
    documents, each pass rescanning every long-lived object, and took about 16 % of the
    event loop's CPU. Reference counting still frees all of it at once; cycles are still
    collected, only less often. Called by the command-line entry points and in every
    executor process, not on import.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def make_executor(settings: Settings) -> CpuPool | None:
    """Supervised process pool for CPU-bound stage code (PDF parsing, eyecite, OCR), or
    None for the loop's threads (``CPU_POOL=thread``: tests, debugging)."""
    if settings.cpu_pool == "thread":
        return None
    return CpuPool(settings.cpu_workers or os.cpu_count() or 1, initializer=tune_gc)


@dataclass
class Runtime:
    settings: Settings
    pool: asyncpg.Pool
    redis: RedisClient | None
    keys: Keys
    codec: Codec
    transport: Transport
    handoff: Handoff
    canonical: CanonicalRegistry
    executor: Executor | None
    consumer: str
    extract_cache: RedisExtractCache | None = None
    chunk_cache: RedisChunkCache | None = None
    ocr_cache: RedisOcrCache | None = None
    transcript_cache: RedisTranscriptCache | None = None
    ocr_tally: RedisOcrTally | LocalOcrTally = field(default_factory=LocalOcrTally)
    writer: WriteBehindWriter | None = None
    ocr_jobs: RedisOcrJobs | None = None  # an asynchronous OCR service's jobs and poller
    backends: Backends | None = None  # None: built from settings on first use
    stage_overrides: dict[str, StageFn] = field(default_factory=dict)  # tests, experiments
    # (project, sha256) -> fingerprints, of the stage_params in _fingerprints_of.
    _fingerprint_memo: dict[tuple[str, str], dict[str, str]] = field(
        default_factory=dict, init=False, repr=False
    )
    _fingerprints_of: dict[str, str] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.backends is None:
            self.backends = resolve_backends(self.settings)
        clients = BackendClients(self.redis, self.keys, caches=self.accelerated)
        for component in self.backends.components():
            if isinstance(component, NeedsClients):
                component.bind(clients)

    @property
    def accelerated(self) -> bool:
        return self.handoff.name == "accelerated"

    def context(self, ref: SourceRef) -> StageContext:
        return StageContext(
            project=ref.project,
            settings=self.settings,
            blobs=self.backends_.blobs,
            canonical=self.canonical,
            extract_cache=self.extract_cache,
            chunk_cache=self.chunk_cache,
            ocr_cache=self.ocr_cache,
            ocr_jobs=self.ocr_jobs,
            transcript_cache=self.transcript_cache,
            ocr_tally=self.ocr_tally,
            executor=self.executor,
            source=ref,
            extras={"entity_backend": self.settings.entity_backend},
            backends=self.backends_,
        )

    @property
    def backends_(self) -> Backends:
        assert self.backends is not None
        return self.backends

    @functools.cached_property
    def stage_params(self) -> dict[str, str]:
        return fingerprint.stage_params(self.settings, self.backends_)

    def fingerprints(self, ref: SourceRef) -> dict[str, str]:
        """The document's fingerprints per stage. The engine asks once per stage of each
        document, and they depend only on its project and content: kept for the
        documents in flight (a bounded dict, oldest out) instead of hashed again."""
        params, memo = self.stage_params, self._fingerprint_memo
        if self._fingerprints_of is not params:  # the backends changed
            memo.clear()
            self._fingerprints_of = params
        key = (ref.project, ref.sha256)
        hit = memo.get(key)
        if hit is None:
            hit = memo[key] = fingerprint.fingerprints(ref, params)
            if len(memo) > 4096:
                del memo[next(iter(memo))]
        return hit

    def engine(self) -> Engine:
        background: list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = []
        if self.writer is not None:
            background.append(self.writer.run)
        if self.ocr_jobs is not None:
            background.append(self.ocr_jobs.poller.run)  # polls only while it leads
        engine = Engine(
            settings=self.settings,
            transport=self.transport,
            handoff=self.handoff,
            context=self.context,
            background=background,
            fingerprints=self.fingerprints,
            stages=self.stage_overrides,
        )
        if self.writer is not None:
            # With no document in flight here, the writer's batch need not wait for more.
            stats = engine.stats
            self.writer.producer_idle = lambda: stats.in_flight == 0
        return engine

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)

    async def aclose_backends(self) -> None:
        """Release what the backends hold (an S3 client's pool, the LLM backends' HTTP
        clients), on this loop; the executor stays (the benchmark shares it)."""
        await self.backends_.aclose()

    async def aclose(self) -> None:
        """Shutdown: the backends, then the executor (the CLI edge calls it last)."""
        try:
            await self.aclose_backends()
        finally:
            self.close()


def build_runtime(
    settings: Settings,
    pool: asyncpg.Pool,
    redis: RedisClient | None,
    *,
    executor: Executor | None = None,
    consumer: str | None = None,
    backends: Backends | None = None,
) -> Runtime:
    """Accelerated when Redis is given and the flag is on; traditional otherwise."""
    # Shards: resolved from Redis's layout record by the CLI edge (connect.open_clients);
    # a runtime built directly (tests, benchmarks) takes the setting or the default.
    keys = Keys(settings.redis_prefix, settings.stream_shards or default_shards(redis))
    codec = Codec(
        max_value_bytes=settings.max_value_bytes,
        max_decompressed_bytes=settings.max_decompressed_bytes,
        spill=make_spill(settings),
    )
    name = consumer or consumer_name()
    resolved = backends or resolve_backends(settings)
    ocr_jobs = None
    if resolved.ocr is not None and ocr_mode(resolved.ocr) == "document" and redis is not None:
        assert isinstance(resolved.ocr, AsyncDocumentOcr)
        ocr_jobs = RedisOcrJobs(redis, keys, codec, resolved.ocr, settings, consumer=name)
    transport: Transport = (
        RedisTransport(redis, keys, name, settings.ttl_stage_s)
        if redis is not None
        else LocalTransport()
    )
    common: dict[str, Any] = {
        "settings": settings,
        "pool": pool,
        "redis": redis,
        "keys": keys,
        "codec": codec,
        "transport": transport,
        "executor": executor,
        "consumer": name,
        "backends": resolved,
        "ocr_jobs": ocr_jobs,
        # Workers anywhere add to a run's OCR figures in Redis; without Redis, here.
        "ocr_tally": RedisOcrTally(redis, keys, settings.ttl_stage_s)
        if redis is not None
        else LocalOcrTally(),
    }
    if redis is not None and settings.enable_redis_acceleration:
        memo = IntentMemo()  # the writer below takes what the handoff queues, undecoded
        return Runtime(
            **common,
            handoff=AcceleratedHandoff(redis, transport, keys, codec, settings, memo),
            canonical=RedisCanonicalRegistry(redis, keys),
            extract_cache=RedisExtractCache(redis, keys, codec, settings.ttl_cache_s),
            chunk_cache=RedisChunkCache(redis, keys, settings.ttl_cache_s),
            ocr_cache=RedisOcrCache(redis, keys, codec, settings.ttl_cache_s),
            transcript_cache=RedisTranscriptCache(redis, keys, codec, settings.ttl_cache_s),
            writer=WriteBehindWriter(redis, pool, keys, codec, settings, consumer=name, memo=memo),
        )
    return Runtime(
        **common,
        handoff=TraditionalHandoff(TraditionalStore(pool), transport),
        canonical=PassThroughCanonicalRegistry(),
    )
