"""Pages OCRed and pages served from the OCR cache, per batch run, for the summary.

The Prometheus counter ``ocr_pages_total`` is per process; a run's documents may be
OCRed by workers on other hosts, so the run's own figures are kept in Redis, in one
hash per (project, generation): a batch run gives all its documents one generation
(``intake.new_generation``), and the stage adds to that run's hash with HINCRBY, which
every worker can do at once. The summary reads it when the run is over. Without
Redis (the traditional path with no server) the stages run in the batch's process,
and an in-process tally does the same job.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.utils import str_if_bytes

from accelerated.boundary import map_driver_errors
from accelerated.cluster import RedisClient
from accelerated.keys import Keys

ENGINE, CACHE, SECONDS = "engine_pages", "cached_pages", "engine_seconds"


@dataclass
class OcrTotals:
    engine_pages: int = 0  # pages an OCR engine read
    cached_pages: int = 0  # pages taken from the OCR cache instead
    engine_seconds: float = 0.0  # wall seconds of those engine pages (render + OCR)


class RedisOcrTally:
    def __init__(self, redis: RedisClient, keys: Keys, ttl_s: int) -> None:
        self._redis, self._keys, self._ttl = redis, keys, ttl_s

    async def add(
        self, project: str, generation: int, engine_pages: int, cached_pages: int, seconds: float
    ) -> None:
        key = self._keys.ocr_tally(project, generation)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hincrby(key, ENGINE, engine_pages)
        pipe.hincrby(key, CACHE, cached_pages)
        pipe.hincrbyfloat(key, SECONDS, seconds)
        pipe.expire(key, self._ttl)
        with map_driver_errors():
            await pipe.execute()

    async def totals(self, project: str, generation: int) -> OcrTotals:
        with map_driver_errors():
            raw = await self._redis.hgetall(self._keys.ocr_tally(project, generation))
        got = {str_if_bytes(k): str_if_bytes(v) for k, v in raw.items()}
        return OcrTotals(
            engine_pages=int(got.get(ENGINE, 0)),
            cached_pages=int(got.get(CACHE, 0)),
            engine_seconds=float(got.get(SECONDS, 0.0)),
        )


class LocalOcrTally:
    """The same in this process's memory (no Redis: every stage runs here)."""

    def __init__(self) -> None:
        self._runs: dict[tuple[str, int], OcrTotals] = {}

    async def add(
        self, project: str, generation: int, engine_pages: int, cached_pages: int, seconds: float
    ) -> None:
        t = self._runs.setdefault((project, generation), OcrTotals())
        t.engine_pages += engine_pages
        t.cached_pages += cached_pages
        t.engine_seconds += seconds

    async def totals(self, project: str, generation: int) -> OcrTotals:
        t = self._runs.get((project, generation), OcrTotals())
        return OcrTotals(t.engine_pages, t.cached_pages, t.engine_seconds)
