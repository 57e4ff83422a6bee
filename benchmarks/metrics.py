"""The numbers of one benchmark run, gathered from where they are true.

Round trips come from the proxy's counters, Redis commands from the server's own
``total_commands_processed``, bytes from ``STRLEN`` of the stage keys, latencies and
stage compute from the documents' state (via ``BatchReport``). Nothing is estimated.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio.cluster import RedisCluster

from accelerated.batch_run import BatchReport
from accelerated.cluster import RedisClient
from accelerated.codec import Codec
from accelerated.keys import STAGES, Keys
from benchmarks.proxy import ProxyCounters

try:  # psutil gives the peak of *this run*; getrusage only a lifetime high-water mark.
    import psutil  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - psutil is optional
    psutil = None

# The fields of one run, in the order issue 3's JSON lists them.
RUN_FIELDS: tuple[str, ...] = (
    "path",
    "mode",
    "db_latency_ms",
    "workers",
    "docs",
    "failed",
    "elapsed_s",
    "docs_per_s",
    "p50_doc_ms",
    "p95_doc_ms",
    "db_roundtrips_per_doc",
    "redis_commands_per_doc",
    "redis_bytes_per_doc",
    "raw_json_bytes_per_doc",
    "stage_compute_s",
    "peak_rss_mb",
)


@dataclass(frozen=True)
class RunMetrics:
    path: str
    mode: str
    db_latency_ms: float
    workers: int
    docs: int
    failed: int
    elapsed_s: float
    docs_per_s: float
    p50_doc_ms: float
    p95_doc_ms: float
    db_roundtrips_per_doc: float
    redis_commands_per_doc: float
    redis_bytes_per_doc: float
    raw_json_bytes_per_doc: float
    stage_compute_s: float
    peak_rss_mb: float

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def overhead_ratio(self) -> float:
        """(elapsed - stage compute) / stage compute: the pipeline's own cost."""
        if self.stage_compute_s <= 0:
            return 0.0
        return (self.elapsed_s - self.stage_compute_s) / self.stage_compute_s


async def redis_commands(client: RedisClient) -> int:
    """Server-wide command counter (summed over every primary of a cluster): deltas
    include every client, the harness's polling too."""
    if isinstance(client, RedisCluster):
        per_node = await client.info("stats", target_nodes=RedisCluster.PRIMARIES)
        return sum(int(v["total_commands_processed"]) for v in per_node.values())
    info = await client.info("stats")
    return int(info["total_commands_processed"])


async def stage_bytes(
    client: RedisClient, keys: Keys, codec: Codec, doc_ids: Sequence[uuid.UUID]
) -> tuple[int, int]:
    """(compressed bytes in Redis, the same values as plain JSON) over every stage key."""
    compressed = raw = 0
    step = 64
    for i in range(0, len(doc_ids), step):
        pipe = client.pipeline(transaction=False)
        for doc in doc_ids[i : i + step]:
            for stage in STAGES:
                pipe.get(keys.output(doc, stage))
        for value in await pipe.execute():
            if value is None:
                continue
            compressed += len(value)
            raw += len(codec.decompress(value))
    return compressed, raw


def _tree_rss() -> int:
    assert psutil is not None
    me = psutil.Process()
    total = me.memory_info().rss
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return int(total)


class RssPeak:
    """Peak RSS of the harness plus all its descendants (executor, workers) during a run."""

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self.peak_bytes = 0

    def sample(self) -> None:
        if psutil is not None:
            self.peak_bytes = max(self.peak_bytes, _tree_rss())
        else:  # lifetime high-water marks, in KiB on Linux
            own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            self.peak_bytes = max(self.peak_bytes, (own + kids) * 1024)

    @contextlib.asynccontextmanager
    async def watch(self) -> AsyncIterator[RssPeak]:
        async def loop() -> None:
            while True:
                # psutil walks /proc: keep it off the event loop the pipeline runs on.
                await asyncio.to_thread(self.sample)
                await asyncio.sleep(self.interval_s)

        task = asyncio.create_task(loop())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.sample()

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / (1024 * 1024)


@dataclass(frozen=True)
class CpuTimes:
    """CPU seconds of the harness process and of its descendants (executor, workers)."""

    own_s: float
    children_s: dict[int, float]

    @classmethod
    def now(cls, exclude: frozenset[int] = frozenset()) -> CpuTimes:
        if psutil is None:
            return cls(0.0, {})
        me = psutil.Process()
        t = me.cpu_times()
        kids: dict[int, float] = {}
        for child in me.children(recursive=True):
            if child.pid in exclude:
                continue
            with contextlib.suppress(psutil.Error):
                ct = child.cpu_times()
                kids[child.pid] = ct.user + ct.system
        return cls(t.user + t.system, kids)

    def since(self, before: CpuTimes) -> tuple[float, float]:
        """(harness CPU s, descendants' CPU s) between ``before`` and this snapshot."""
        kids = sum(v - before.children_s.get(pid, 0.0) for pid, v in self.children_s.items())
        return self.own_s - before.own_s, kids


def build(
    *,
    path: str,
    mode: str,
    db_latency_ms: float,
    workers: int,
    report: BatchReport,
    db: ProxyCounters,
    redis_cmds: int,
    redis_bytes: int,
    raw_json_bytes: int,
    peak_rss_mb: float,
) -> RunMetrics:
    """One JSON row; per-document figures are over the documents the run queued."""
    docs = report.total
    per = 1.0 / docs if docs else 0.0
    return RunMetrics(
        path=path,
        mode=mode,
        db_latency_ms=db_latency_ms,
        workers=workers,
        docs=docs,
        failed=len(report.failed),
        elapsed_s=round(report.elapsed_s, 4),
        docs_per_s=round(report.docs_per_s, 3),
        p50_doc_ms=round(report.percentile_ms(50), 2),
        p95_doc_ms=round(report.percentile_ms(95), 2),
        db_roundtrips_per_doc=round(db.round_trips * per, 3),
        redis_commands_per_doc=round(redis_cmds * per, 2),
        redis_bytes_per_doc=round(redis_bytes * per, 1),
        raw_json_bytes_per_doc=round(raw_json_bytes * per, 1),
        stage_compute_s=round(report.stage_compute_s, 4),
        peak_rss_mb=round(peak_rss_mb, 1),
    )
