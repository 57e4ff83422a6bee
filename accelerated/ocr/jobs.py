"""Asynchronous OCR jobs (AWS Textract): one job per file content, the documents parked
on it, and one poller per deployment.

A service such as Textract reads a whole document and answers minutes later, so the
``ocr`` stage must neither wait for it in a worker slot nor ask it again and again
from every worker. Instead:

1. **claim** (the ``ocr`` stage, :meth:`RedisOcrJobs.pages`): a miss in the OCR cache
   looks the file's job up in its hash ``Keys.ocr_job(service, sha256)`` (fields
   ``status``, ``job_id``, ``sha``, ``document``, ``location``, ``started``,
   ``attempts``, ``polls``, ``error``; a TTL of ``TEXTRACT_JOB_TTL_S``). A job in
   progress is joined; none yet, or a failed one seen by a new document, is claimed
   as a new attempt (status ``STARTING``), all in one script.
2. **start**: the worker puts the file where the service reads it (a local file is
   uploaded to ``TEXTRACT_STAGING`` under its content hash: a second upload of the
   same bytes is skipped; of a mixed PDF only its scanned pages are sent, since the
   service bills per page) and starts the job with a request token derived from the
   hash, the location and the attempt: a worker that dies between the call and the
   next step, or a second document with the same bytes, gets the same job back, never
   a second one. The job id and ``IN_PROGRESS`` are recorded and the job goes on the
   poll schedule (sorted set ``Keys.ocr_jobs(service)``: sha256 -> next poll, ms).
3. **park**: the stage raises :class:`~accelerated.parking.Parked`; the engine acks the
   message and files the document in the waiting room of the job in the document's
   shard (``Keys.ocr_room``, ``accelerated/parking.py``), to wait for the job's current
   attempt. It holds no worker slot while the job runs.
4. **poll** (:class:`OcrJobPoller`, a background task of every worker and batch
   process, active only in the holder of a redis-py ``Lock``, renewed every third of
   ``TEXTRACT_LOCK_TTL_S``): due jobs are polled, with backoff from ``TEXTRACT_POLL_S``
   doubling to ``TEXTRACT_POLL_MAX_S``. Workers never poll the service. A poller that
   dies stops renewing; once its lock lapses another process's poller takes over and
   polls the very same jobs, since everything it needs is in Redis.
5. **wake**: a finished job's text goes into the OCR cache first; then the attempt is
   woken in every shard's room, one script per shard (each sends the room's parked
   documents back to its shard's ``ocr`` stream, where the stage finds the cache hit),
   and only then one script sets the job's final status. A poller that dies in between
   leaves the job in progress: its successor polls it again and wakes again, which a
   room already woken for that attempt ignores. (A script may touch keys of one slot
   only on Redis Cluster: a job's keys and a shard's streams are in different ones.) A
   failed job (``FAILED``, ``PARTIAL_SUCCESS``, gone from the service, or past
   ``TEXTRACT_TIMEOUT_S``) leaves its parked documents a note in their room
   (``told:<document>:<generation>``) that their next ``ocr`` run raises as a
   per-document error; a later run of the same file (another generation) tries anew.

Every request to the service waits on the limiter built for LLM calls
(``accelerated/llm/limiter.py``), under its own scope: ``TEXTRACT_TPS`` holds for every
worker on every host together, and a throttling reply makes all of them hold off.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Final

import anyio.to_thread
import redis.asyncio as aioredis
from redis.exceptions import LockError
from redis.utils import str_if_bytes

from accelerated.aio import wait_for
from accelerated.backends import AsyncDocumentOcr, OcrJobResult, OcrText
from accelerated.boundary import describe, map_driver_errors
from accelerated.caches import RedisOcrCache
from accelerated.cluster import RedisClient
from accelerated.codec import Codec
from accelerated.errors import BackendUnavailable, CodecError, DocumentError, PipelineError
from accelerated.keys import Keys
from accelerated.llm.limiter import Limiter
from accelerated.models import Extracted, SourceRef
from accelerated.parking import STATUS_FIELD, WAKE_LUA, Parked, told_field
from accelerated.settings import Settings
from accelerated.stages.ocr import OCR_PAGES, pages_to_read

log = logging.getLogger(__name__)

STARTING: Final = "STARTING"
IN_PROGRESS: Final = "IN_PROGRESS"
SUCCEEDED: Final = "SUCCEEDED"
FAILED: Final = "FAILED"
OCR_STAGE: Final = "ocr"  # where woken documents go back to

# KEYS[1] job hash
# ARGV[1] unused, ARGV[2] now (s), ARGV[3] ttl (s), ARGV[4] force
# ('1': a SUCCEEDED job whose text is gone from the cache is started again),
# ARGV[5] sha256, ARGV[6] document id, ARGV[7] the pages sent ('' = the whole file)
# -> {'wait', job id, attempt} | {'succeeded', '', ''} | {'start', attempt, attempt}
CLAIM_LUA: Final = f"""
local st = redis.call('HGET', KEYS[1], '{STATUS_FIELD}')
local at = redis.call('HGET', KEYS[1], 'attempts')
if st == '{IN_PROGRESS}' then return {{'wait', redis.call('HGET', KEYS[1], 'job_id'), at}} end
if st == '{STARTING}' then return {{'start', at, at}} end
if st == '{SUCCEEDED}' and ARGV[4] ~= '1' then return {{'succeeded', '', ''}} end
local n = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HDEL', KEYS[1], 'job_id', 'error', 'finished', 'location', 'tallied')
redis.call('HSET', KEYS[1], '{STATUS_FIELD}', '{STARTING}', 'sha', ARGV[5],
  'document', ARGV[6], 'started', ARGV[2], 'polls', 0, 'pages', ARGV[7])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {{'start', tostring(n), tostring(n)}}
"""

# KEYS[1] job hash
# -> {1 | 0, started, finished}: 1 for the first document to take the pages of a job
# (the run's tally counts them as read by the service once), 0 for every later one and
# for a job record that is gone (its pages come from the cache). Not keyed on the job's
# status: the poller wakes the job's documents before it records SUCCEEDED.
TALLY_LUA: Final = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, '', ''} end
local first = redis.call('HSETNX', KEYS[1], 'tallied', '1')
return {first, redis.call('HGET', KEYS[1], 'started') or '',
  redis.call('HGET', KEYS[1], 'finished') or ''}
"""

# KEYS[1] job hash, KEYS[2] poll schedule
# ARGV[1] attempt, ARGV[2] job id, ARGV[3] location, ARGV[4] first poll (ms),
# ARGV[5] ttl (s), ARGV[6] sha256
# -> 1 recorded (or recorded already) | 0 a newer attempt was claimed meanwhile
RECORD_LUA: Final = f"""
if redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], '{STATUS_FIELD}') == '{STARTING}' then
  redis.call('HSET', KEYS[1], '{STATUS_FIELD}', '{IN_PROGRESS}', 'job_id', ARGV[2],
    'location', ARGV[3])
  redis.call('ZADD', KEYS[2], 'NX', ARGV[4], ARGV[6])
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""

# KEYS[1] job hash, KEYS[2] poll schedule (its documents are woken before: WAKE_LUA)
# ARGV[1] attempt, ARGV[2] new status, ARGV[3] error ('' on success), ARGV[4] now (s),
# ARGV[5] ttl (s), ARGV[6] sha256
# -> 1 | -1 not this attempt, or finished already
FINISH_LUA: Final = f"""
if redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[1] then return -1 end
local st = redis.call('HGET', KEYS[1], '{STATUS_FIELD}')
if st ~= '{STARTING}' and st ~= '{IN_PROGRESS}' then return -1 end
redis.call('HSET', KEYS[1], '{STATUS_FIELD}', ARGV[2], 'error', ARGV[3], 'finished', ARGV[4])
redis.call('ZREM', KEYS[2], ARGV[6])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


def pages_to_send(extracted: Extracted) -> list[int]:
    """The pages of a PDF to send when only some are scanned; ``[]``: the whole file."""
    wanted = pages_to_read(extracted)
    if extracted.format != "pdf" or extracted.needs_ocr or len(wanted) >= len(extracted.pages):
        return []
    return wanted


def pdf_pages(data: bytes, numbers: list[int]) -> bytes:
    """A PDF of just these pages of ``data`` (PDFium; in a worker thread)."""
    import pypdfium2

    from accelerated.extractors.pdf import _LOCK, _open

    with _LOCK:
        src = _open(data)
        out = pypdfium2.PdfDocument.new()
        try:
            out.import_pages(src, [n - 1 for n in numbers])
            buf = io.BytesIO()
            out.save(buf)
        finally:
            out.close()
            src.close()
    return buf.getvalue()


def request_token(sha256: str, location: str, attempt: int) -> str:
    """The idempotency token of one start: the same file, place and attempt give the
    same token (64 hex digits: Textract's ``ClientRequestToken`` takes up to 64 of
    ``[a-zA-Z0-9-_]``), so a retried start returns the job already running."""
    return hashlib.sha256(f"{sha256}|{location}|{attempt}".encode()).hexdigest()


class LimiterGate:
    """``RateGate`` over the shared Redis limiter: one token per request."""

    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter

    async def wait(self) -> None:
        await self.limiter.acquire(1)

    async def cool_down(self, ms: float) -> None:
        await self.limiter.cool_down(ms)


class RedisOcrJobs:
    """The ``OcrJobs`` of the stage context, and the poller that completes them."""

    def __init__(
        self,
        redis: RedisClient,
        keys: Keys,
        codec: Codec,
        service: AsyncDocumentOcr,
        settings: Settings,
        *,
        consumer: str = "",
    ) -> None:
        self.redis, self.keys, self.service, self.settings = redis, keys, service, settings
        # Its own handle on the cache: the traditional path has no stage-context cache,
        # and the poller writes here in any case.
        self.cache = RedisOcrCache(redis, keys, codec, settings.ttl_cache_s)
        self.limiter = Limiter(
            redis,
            keys,
            service.name,
            requests=settings.textract_tps,
            tokens=settings.textract_tps,  # one per request: never the binding limit
            window_s=1.0,
            margin_s=0.25,  # admission to arrival at AWS: see the limiter
            scope="ocr",
        )
        self.gate = LimiterGate(self.limiter)
        self.schedule = keys.ocr_jobs(service.name)
        self._claim = redis.register_script(CLAIM_LUA)
        self._record = redis.register_script(RECORD_LUA)
        self._finish_job = redis.register_script(FINISH_LUA)
        self._wake = redis.register_script(WAKE_LUA)
        self._tally = redis.register_script(TALLY_LUA)
        self.poller = OcrJobPoller(self, consumer)

    def job_key(self, sha256: str) -> str:
        return self.keys.ocr_job(self.service.name, sha256)

    def room_key(self, sha256: str, shard: int) -> str:
        return self.keys.ocr_room(self.service.name, sha256, shard)

    # Workers: the ocr stage ------------------------------------------------------------
    async def pages(
        self, source: SourceRef, extracted: Extracted, read: Callable[[], Awaitable[bytes]]
    ) -> dict[int, OcrText]:
        """The pages the service read; else start (or join) the job and park."""
        sha = extracted.sha256
        got = await self.cache.get(self.service.version, sha)
        if got is not None:
            return got
        room = self.room_key(sha, self.keys.shard(source.document_id))
        with map_driver_errors():
            told = await self.redis.hget(room, told_field(source))
        if told is not None:  # woken by a failed job: this document fails
            raise DocumentError(str_if_bytes(told), code="ocr_failed")
        sent = pages_to_send(extracted)
        key = self.job_key(sha)
        outcome, value, attempt = await self._claim_job(key, source, sha, sent, force=False)
        if outcome == "succeeded":  # finished between the cache look and the claim
            got = await self.cache.get(self.service.version, sha)
            if got is not None:
                return got
            outcome, value, attempt = await self._claim_job(key, source, sha, sent, force=True)
        job_id = value
        if outcome == "start":
            job_id = await self._start(key, source, extracted, sent, int(value), read)
        reason = f"{self.service.name} job {job_id}"
        raise Parked(room, int(attempt), reason, self.settings.textract_job_ttl_s)

    async def first_take(self, sha256: str) -> tuple[bool, float]:
        """Whether this document is the first to take the pages of this content's job,
        and the job's seconds (start to finish, or to now) if so: the run's tally counts
        a job's pages as read once, and every other taker's as from the cache."""
        with map_driver_errors():
            first, started, finished = await self._tally(keys=[self.job_key(sha256)])
        if int(first) != 1:
            return False, 0.0
        try:  # not finished yet when the documents are woken first: until now
            end = float(finished) if finished else time.time()
            return True, max(0.0, end - float(started))
        except ValueError:
            return True, 0.0

    async def _claim_job(
        self, key: str, source: SourceRef, sha: str, sent: list[int], *, force: bool
    ) -> tuple[str, str, str]:
        args: list[str | int] = [
            "",
            f"{time.time():.3f}",
            self.settings.textract_job_ttl_s,
            "1" if force else "0",
            sha,
            str(source.document_id),
            ",".join(map(str, sent)),
        ]
        with map_driver_errors():
            outcome, value, attempt = await self._claim(keys=[key], args=args)
        return str_if_bytes(outcome), str_if_bytes(value), str_if_bytes(attempt)

    async def _start(
        self,
        key: str,
        source: SourceRef,
        extracted: Extracted,
        sent: list[int],
        attempt: int,
        read: Callable[[], Awaitable[bytes]],
    ) -> str:
        sha = extracted.sha256
        try:
            if sent:  # only the scanned pages of a mixed PDF: the service bills per page
                name, where = f"{sha}-p{hashlib.sha256(str(sent).encode()).hexdigest()[:16]}", ""

                async def only_sent() -> bytes:
                    return await anyio.to_thread.run_sync(pdf_pages, await read(), sent)

                location = await self.service.locate(name, where, extracted.format, only_sent)
            else:
                location = await self.service.locate(sha, source.source, extracted.format, read)
            job_id = await self.service.start(
                location, request_token(sha, location, attempt), self.gate
            )
        except DocumentError as exc:
            # The service refuses these bytes: so will it for every document parked on
            # this attempt; they are told, and this one fails now.
            await self._finish(sha, attempt, FAILED, f"{self.service.name}: {exc}")
            raise
        due_ms = int((time.time() + self.settings.textract_poll_s) * 1000)
        with map_driver_errors():
            await self._record(
                keys=[key, self.schedule],
                args=[attempt, job_id, location, due_ms, self.settings.textract_job_ttl_s, sha],
            )
        log.info("%s job %s started for %s", self.service.name, job_id, source.source_key)
        return job_id

    async def _finish(self, sha: str, attempt: int, status: str, error: str) -> int:
        """Wake the attempt's parked documents in every shard's room (``WAKE_LUA``),
        then set the job's final status; returns the documents woken."""
        ttl = self.settings.textract_job_ttl_s
        woken = 0
        with map_driver_errors():
            for shard in range(self.keys.shards):
                keys = [self.keys.stream(OCR_STAGE, shard), self.room_key(sha, shard)]
                woken += int(await self._wake(keys=keys, args=[attempt, error, ttl]))
            args: list[str | int] = [attempt, status, error, f"{time.time():.3f}", ttl, sha]
            await self._finish_job(keys=[self.job_key(sha), self.schedule], args=args)
        return woken

    # The poller ----------------------------------------------------------------------
    async def poll_one(self, sha: str) -> None:
        """Ask the service about one due job; reschedule it, or finish it and wake its
        documents. Idempotent: a poller that dies anywhere in here leaves the job to
        its successor, which asks again (the service keeps results for days)."""
        key = self.job_key(sha)
        with map_driver_errors():
            raw = await self.redis.hgetall(key)
        job = {str_if_bytes(k): str_if_bytes(v) for k, v in raw.items()}
        if job.get(STATUS_FIELD) != IN_PROGRESS or not job.get("job_id"):
            with map_driver_errors():
                await self.redis.zrem(self.schedule, sha)  # finished, restarted or expired
            return
        job_id, attempt = job["job_id"], int(job["attempts"])
        polls = int(job.get("polls", "0"))
        age = time.time() - float(job.get("started", "0") or 0)
        name = self.service.name
        if age > self.settings.textract_timeout_s:
            result = OcrJobResult(
                "failed",
                error=f"still IN_PROGRESS after {age:.0f}s (TEXTRACT_TIMEOUT_S="
                f"{self.settings.textract_timeout_s:g})",
            )
        else:
            try:
                result = await self.service.poll(job_id, self.gate)
            except PipelineError as exc:
                # Throttled, unreachable, or refusing this process's credentials: none of
                # it is the job's fault (the documents' own problems come back as a
                # failed result), so ask again later, maybe from another host;
                # TEXTRACT_TIMEOUT_S bounds the wait.
                log.warning("%s job %s: %s; polling again later", name, job_id, exc)
                await self._reschedule(key, sha, polls)
                return
        if result.status == "running":
            await self._reschedule(key, sha, polls)
            return
        if result.status == "succeeded" and result.pages is not None:
            pages = result.pages
            if job.get("pages"):  # page n of what was sent is the file's n-th sent page
                sent = [int(n) for n in job["pages"].split(",")]
                pages = {sent[n - 1]: text for n, text in pages.items() if 0 < n <= len(sent)}
            try:
                await self.cache.put(self.service.version, sha, pages)
            except CodecError as exc:  # a value over a cap: the same next time
                result = OcrJobResult("failed", error=f"its text cannot be stored ({exc})")
            else:
                OCR_PAGES.labels("engine").inc(len(pages))
                woken = await self._finish(sha, attempt, SUCCEEDED, "")
                log.info("%s job %s succeeded: %d document(s) go on", name, job_id, woken)
                return
        error = f"{name} job {job_id} failed: {result.error or 'no reason given'}"
        woken = await self._finish(sha, attempt, FAILED, error)
        log.warning("%s; %d document(s) fail", error, woken)

    async def reschedule(self, sha: str) -> None:
        """Poll it again after the longest pause (after an unexpected failure)."""
        await self._reschedule(self.job_key(sha), sha, 30)

    async def _reschedule(self, key: str, sha: str, polls: int) -> None:
        s = self.settings
        delay = min(s.textract_poll_s * 2 ** min(polls + 1, 30), s.textract_poll_max_s)
        due_ms = int((time.time() + delay * random.uniform(0.8, 1.0)) * 1000)
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(self.schedule, {sha: due_ms}, xx=True)
        pipe.hincrby(key, "polls", 1)
        pipe.expire(key, s.textract_job_ttl_s)
        with map_driver_errors():
            await pipe.execute()

    async def due(self, limit: int) -> tuple[list[str], float | None]:
        """Jobs due for a poll now, and when the next one is due (epoch s; None: none)."""
        now_ms = time.time() * 1000
        with map_driver_errors():
            due = await self.redis.zrangebyscore(self.schedule, "-inf", now_ms, start=0, num=limit)
            head = await self.redis.zrange(self.schedule, 0, 0, withscores=True)
        nxt = float(head[0][1]) / 1000 if head else None
        return [d.decode() if isinstance(d, bytes) else str(d) for d in due], nxt


class OcrJobPoller:
    """The deployment's one poller: every process runs :meth:`run` (an engine background
    task); only the holder of the lock polls.

    The lock's value is this process's consumer name, so ``redis-cli GET`` shows who
    polls. It is renewed every third of its TTL while the holder lives; a holder that
    loses it (Redis unreachable, or too slow to renew) stops polling at once, and a
    holder that stops releases it so a successor starts without waiting the TTL out.
    """

    def __init__(self, jobs: RedisOcrJobs, consumer: str = "") -> None:
        self.jobs = jobs
        self.consumer = consumer or f"poller-{random.getrandbits(48):012x}"
        self.ttl = jobs.settings.textract_lock_ttl_s
        self.leading = False
        self.terms = 0  # times this process became the leader
        self.polls = 0  # jobs polled by this process
        self.concurrency = 4  # jobs polled at once (results can take many requests)

    async def run(self, stop: asyncio.Event) -> None:
        lock = self.jobs.redis.lock(
            self.jobs.keys.ocr_poller_lock(self.jobs.service.name),
            timeout=self.ttl,
            blocking=False,
            thread_local=False,  # one token for every task of this poller
        )
        retry = min(max(self.ttl / 3, 0.1), 5.0)
        try:
            await self._run(lock, stop, retry)
        finally:
            # The engine stops its background tasks last: nothing of this process uses
            # the service's connections after this.
            await self.jobs.service.aclose()

    async def _run(self, lock: aioredis.lock.Lock, stop: asyncio.Event, retry: float) -> None:
        while not stop.is_set():
            try:
                with map_driver_errors():
                    won = await lock.acquire(blocking=False, token=self.consumer)
            except BackendUnavailable as exc:
                log.warning("ocr poller: %s", exc)
                won = False
            if won:
                self.terms += 1
                self.leading = True
                log.info("ocr poller: %s polls %s jobs", self.consumer, self.jobs.service.name)
                try:
                    await self._lead(lock, stop)
                finally:
                    self.leading = False
                    with contextlib.suppress(LockError, PipelineError), map_driver_errors():
                        await lock.release()
            with contextlib.suppress(TimeoutError):
                await wait_for(stop.wait(), retry)

    async def _lead(self, lock: aioredis.lock.Lock, stop: asyncio.Event) -> None:
        """Poll until stopped or the lock is lost, whichever comes first."""
        renew = asyncio.create_task(self._renew(lock))
        work = asyncio.create_task(self._poll_loop())
        stopped = asyncio.create_task(stop.wait())
        tasks = {renew, work, stopped}
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if work.done() and not work.cancelled() and work.exception() is not None:
            raise work.exception()  # type: ignore[misc]  # the engine logs and restarts

    async def _renew(self, lock: aioredis.lock.Lock) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                with map_driver_errors():
                    await lock.reacquire()
            except (LockError, PipelineError) as exc:
                log.warning(
                    "ocr poller: leadership lost %.1fs after the last renewal "
                    "(TEXTRACT_LOCK_TTL_S=%g; an event loop blocked that long?): %s",
                    time.monotonic() - last,
                    self.ttl,
                    describe(exc),
                )
                return
            last = time.monotonic()

    async def _poll_loop(self) -> None:
        s = self.jobs.settings
        sem = asyncio.Semaphore(self.concurrency)

        async def one(sha: str) -> None:
            async with sem:
                self.polls += 1
                try:
                    await self.jobs.poll_one(sha)
                except BackendUnavailable:
                    raise  # Redis: the loop below waits for it
                except Exception:  # a bug must not stop the other jobs' polls
                    log.exception("ocr poller: polling job of %s failed", sha)
                    with contextlib.suppress(PipelineError):
                        await self.jobs.reschedule(sha)

        while True:
            try:
                due, nxt = await self.jobs.due(limit=64)
                if due:
                    await asyncio.gather(*(one(sha) for sha in due))
                    continue
            except BackendUnavailable as exc:
                log.warning("ocr poller: %s", exc)
                nxt = None
            # New jobs are due TEXTRACT_POLL_S after their start: look that often.
            wait = min(s.textract_poll_s, 1.0)
            if nxt is not None:
                wait = min(wait, max(nxt - time.time(), 0.02))
            await asyncio.sleep(wait)
