"""Content-hash caches in Redis (extraction by file sha256, entities by chunk hash).

These implement the stage-context protocols for the accelerated path; the
traditional path passes ``None`` and pays for every extraction again, as the old
pipeline did.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Final, Generic, TypeVar

import msgspec
from redis.asyncio.lock import Lock

from accelerated import pipeline
from accelerated.backends import OcrText, Segment
from accelerated.boundary import map_driver_errors
from accelerated.cluster import RedisClient, mget
from accelerated.codec import Codec
from accelerated.errors import BackendError, CodecError
from accelerated.keys import Keys
from accelerated.models import Extracted

# The lease of a content being read by an engine (``_EngineCache.exclusive``): renewed
# every third of it while held, polled this often by a document waiting for it.
LEASE_S: Final = 30.0
LEASE_POLL_S: Final = 0.2


class RedisExtractCache:
    """``cache:extract:v<version>:<sha256>``: same bytes under a new id = no extraction."""

    def __init__(self, redis: RedisClient, keys: Keys, codec: Codec, ttl_s: int) -> None:
        self._redis, self._keys, self._codec, self._ttl = redis, keys, codec, ttl_s
        self._version = pipeline.stage("extract").version

    async def get(self, sha256: str) -> Extracted | None:
        with map_driver_errors():
            raw = await self._redis.get(self._keys.extract_cache(sha256, self._version))
        if raw is None:
            return None
        try:
            return self._codec.decode(bytes(raw), Extracted)  # type: ignore[arg-type]
        except CodecError:
            return None  # a corrupt cache entry is a miss, never a failure

    async def put(self, sha256: str, value: Extracted) -> None:
        with map_driver_errors():
            await self._redis.set(
                self._keys.extract_cache(sha256, self._version),
                self._codec.encode(value),
                ex=self._ttl,
            )


class RedisChunkCache:
    """``cache:entities:<version>:<sha256>``: per-chunk results, MGET/pipelined SET."""

    def __init__(self, redis: RedisClient, keys: Keys, ttl_s: int) -> None:
        self._redis, self._keys, self._ttl = redis, keys, ttl_s

    async def get_many(self, version: str, hashes: Sequence[str]) -> list[bytes | None]:
        if not hashes:
            return []
        # The chunks' keys are in many cluster slots: cluster.mget splits the MGET.
        with map_driver_errors():
            return await mget(self._redis, [self._keys.entity_cache(version, h) for h in hashes])

    async def put_many(self, version: str, items: dict[str, bytes]) -> None:
        if not items:
            return
        pipe = self._redis.pipeline(transaction=False)
        for h, value in items.items():
            pipe.set(self._keys.entity_cache(version, h), value, ex=self._ttl)
        with map_driver_errors():
            await pipe.execute()


_OCR_PAGES = msgspec.json.Decoder(dict[int, OcrText])
_SEGMENTS = msgspec.json.Decoder(list[Segment])
T = TypeVar("T")


class _EngineCache(Generic[T]):
    """One value per (engine version, content sha256): encoded by the codec, kept
    ``ttl_s``; a corrupt entry is a miss, never a failure. Subclasses name the key and
    the decoder."""

    _decoder: msgspec.json.Decoder[T]

    def __init__(self, redis: RedisClient, keys: Keys, codec: Codec, ttl_s: int) -> None:
        self._redis, self._keys, self._codec, self._ttl = redis, keys, codec, ttl_s

    def _key(self, version: str, sha256: str) -> str:
        raise NotImplementedError

    async def get(self, version: str, sha256: str) -> T | None:
        with map_driver_errors():
            raw = await self._redis.get(self._key(version, sha256))
        if raw is None:
            return None
        try:
            return self._decoder.decode(self._codec.decompress(bytes(raw)))  # type: ignore[arg-type]
        except (CodecError, msgspec.DecodeError, msgspec.ValidationError):
            return None

    async def put(self, version: str, sha256: str, value: T) -> None:
        with map_driver_errors():
            await self._redis.set(
                self._key(version, sha256), self._codec.encode(value), ex=self._ttl
            )

    @contextlib.asynccontextmanager
    async def exclusive(self, version: str, sha256: str) -> AsyncIterator[None]:
        """Only one document at a time reads this content with the engine.

        The same scan or recording under several names (an attachment in every e-mail
        of a thread, a production's duplicates) arrives in one batch side by side: each
        would miss the cache and pay the engine (tesseract minutes, or a paid service)
        again. Inside this block the caller looks in the cache and reads what is
        missing; a second document with the same content waits here, then finds the
        first one's result. The lease lives ``LEASE_S`` and is renewed while held, so a
        holder that died frees it within that time; the waiter's own stage time limit
        bounds its wait."""
        lock = self._redis.lock(
            self._keys.reading(self._key(version, sha256)),
            timeout=LEASE_S,
            sleep=LEASE_POLL_S,
            blocking=True,
        )
        with map_driver_errors():
            await lock.acquire()
        renew = asyncio.create_task(self._renew(lock))
        try:
            yield
        finally:
            renew.cancel()
            await asyncio.gather(renew, return_exceptions=True)
            # Released for the next one; if Redis is away, the lease expires by itself.
            with contextlib.suppress(BackendError), map_driver_errors():
                await lock.release()

    @staticmethod
    async def _renew(lock: Lock) -> None:
        while True:
            await asyncio.sleep(LEASE_S / 3)
            with contextlib.suppress(BackendError), map_driver_errors():
                await lock.extend(LEASE_S, replace_ttl=True)


class RedisTranscriptCache(_EngineCache[list[Segment]]):
    """``cache:transcript:<transcriber version>:<sha256>``: a recording is transcribed
    once, whatever its name, project or host (as OCR is, by the scan's sha256)."""

    _decoder = _SEGMENTS

    def _key(self, version: str, sha256: str) -> str:
        return self._keys.transcript_cache(version, sha256)


class RedisOcrCache(_EngineCache[dict[int, OcrText]]):
    """``cache:ocr:<engine version>:<sha256>``: the same scan under another name, in
    another project or on another host is never OCRed twice (pages are stored as read,
    so a mixed PDF's later run needs only the pages not read before)."""

    _decoder = _OCR_PAGES

    def _key(self, version: str, sha256: str) -> str:
        return self._keys.ocr_cache(version, sha256)
