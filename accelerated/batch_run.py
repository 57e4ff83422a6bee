"""Drain mode: ingest (or reprocess) a project and run the engine until it is finished.

Shared by the batch CLI, the tests and the benchmark harness, as arq's burst mode is.
It returns a report; the CLI turns failures into a non-zero exit.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeVar

from accelerated import fingerprint, pipeline, s3_intake, state
from accelerated.backends import Resolution, llm_models
from accelerated.boundary import map_driver_errors, translated
from accelerated.errors import BackendUnavailable, BatchFailed, ConfigError
from accelerated.intake import discover, fingerprint_all, new_generation
from accelerated.llm.usage import LlmUsage, read_usage, start_run
from accelerated.models import SourceRef
from accelerated.pipeline import PIPELINE
from accelerated.resolution import resolve_project
from accelerated.runtime import Runtime, build_runtime
from accelerated.s3 import is_s3
from accelerated.settings import Settings
from accelerated.transport import RedisTransport
from persistence.documents import project_documents, register_documents

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class BatchProgress:
    """What the progress bar shows, from what Redis already holds (one poll a refresh).

    ``stages``: per stage of these settings, the messages waiting at it or in work
    there (XLEN of its streams: acked entries are deleted). Stage streams are shared
    by the projects of a prefix, so these count theirs too. ``persisting``: intents
    the write-behind writer has not committed yet (accelerated path). ``finished``:
    this run's documents in a terminal status, ``failed`` those of them that failed.
    ``per_second`` and ``eta_s``: finished documents over the last ``ETA_WINDOW_S``
    seconds, and the rest at that rate (None until there is a rate).
    """

    total: int
    finished: int
    stages: dict[str, int] = field(default_factory=dict)
    persisting: int = 0
    failed: int = 0
    per_second: float | None = None
    eta_s: float | None = None


ProgressFn = Callable[[BatchProgress], None]
ETA_WINDOW_S = 30.0  # the throughput the ETA is computed from
STAGE_POLL_S = 0.5  # stage counts are read at most this often (the bar redraws 10x a second)


def progress_line(p: BatchProgress) -> str:
    """The bar's detail: stage counts (branch stages when busy), writer, failed, rate, ETA."""
    parts = [f"{name} {n}" for name, n in p.stages.items()]
    if p.persisting:
        parts.append(f"writing {p.persisting}")
    if p.failed:
        parts.append(f"failed {p.failed}")
    rate = "-" if p.per_second is None else f"{p.per_second:.1f}/s"
    return f"{' '.join(parts)} | {rate} ETA {format_eta(p.eta_s)}"


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


async def stage_counts(rt: Runtime, stages: list[str]) -> tuple[dict[str, int], int]:
    """(messages per stage, write-behind backlog): one pipeline each, never per document."""
    counts = await rt.transport.stage_backlog(stages)
    backlog = await _backlog(rt) if rt.writer is not None else 0
    return counts, backlog


class ProgressTracker:
    """Turns the drain loop's polls into :class:`BatchProgress` snapshots.

    The drain loop already knows how many of the run's documents are left (it polls
    for that); the stage counts and the failed count are read at most every
    ``STAGE_POLL_S`` (a few XLEN/HLEN in one pipeline), and the failed ids only when
    the failed count changed. Main stages are always shown; a branch (OCR,
    transcription) only while it has messages.
    """

    def __init__(self, rt: Runtime, project: str, ids: set[str]) -> None:
        self.rt, self.project, self.ids = rt, project, ids
        on = [s for s in PIPELINE if s.enabled(rt.settings)]
        self.stages = [s.name for s in on]  # registry order: as a document meets them
        self.main = {s.name for s in on if s.main}
        self._samples: collections.deque[tuple[float, int]] = collections.deque()
        self._polled_at = -STAGE_POLL_S
        self._stages: dict[str, int] = {s: 0 for s in self.stages if s in self.main}
        self._persisting = 0
        self._failed_seen = -1
        self._failed = 0
        self.extra = 0  # documents outside ``ids`` in this run (the traditional fallback)

    async def snapshot(self, left: int, *, now: float | None = None) -> BatchProgress:
        now = time.monotonic() if now is None else now
        total = len(self.ids) + self.extra
        finished = total - left
        if now - self._polled_at >= STAGE_POLL_S or left == 0:
            self._polled_at = now
            counts, self._persisting = await stage_counts(self.rt, self.stages)
            self._stages = {s: counts[s] for s in self.stages if s in self.main or counts[s]}
            await self._poll_failed()
        self._samples.append((now, finished))
        while len(self._samples) > 2 and now - self._samples[1][0] >= ETA_WINDOW_S:
            self._samples.popleft()
        rate: float | None = None
        t0, f0 = self._samples[0]
        if now - t0 >= 1.0 and finished > f0:
            rate = (finished - f0) / (now - t0)
        eta = 0.0 if left == 0 else (left / rate if rate else None)
        return BatchProgress(
            total=total,
            finished=finished,
            stages=dict(self._stages),
            persisting=self._persisting,
            failed=self._failed,
            per_second=rate,
            eta_s=eta,
        )

    async def _poll_failed(self) -> None:
        t = self.rt.transport
        if isinstance(t, RedisTransport):
            seen = await t.failed_count(self.project)
            if seen == self._failed_seen:
                return
            self._failed_seen = seen
            if seen == 0:
                self._failed = 0
                return
        self._failed = len(await t.failed_ids(self.project) & self.ids)


@dataclass
class BatchOptions:
    project: str
    inputs: list[Path] = field(default_factory=list)
    reprocess: bool = False
    from_stage: str | None = None
    exclude: list[str] = field(default_factory=list)
    consume: bool = True  # False: only intake and wait (workers elsewhere do the work)
    limit: int | None = None
    follow_symlinks: bool = False  # links out of the input folder (see intake.discover)
    s3_inputs: list[str] = field(default_factory=list)  # s3://bucket/prefix (s3_intake)


@dataclass
class BatchReport:
    project: str
    path: str
    total: int = 0
    done: int = 0
    needs_ocr: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # source_key -> error
    unchanged: int = 0  # already done with the same content: not queued again
    skipped_files: int = 0  # not a document type intake takes
    # S3 inputs: objects listed, downloaded to hash (new or changed), known by ETag.
    s3_listed: int = 0
    s3_downloaded: int = 0
    s3_unchanged: int = 0
    s3_skipped: dict[str, str] = field(default_factory=dict)  # key -> why not taken
    s3_keys: list[str] = field(default_factory=list)  # source keys of the S3 documents
    chunks: int = 0
    mentions: int = 0
    canonicals: int = 0
    relationships: int = 0
    elapsed_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    stage_compute_s: float = 0.0
    # LLM_BUDGET_TOKENS spent before their calls were made: neither done nor failed;
    # a re-run with a larger budget finishes them (source_key -> the reason).
    budget_exhausted: dict[str, str] = field(default_factory=dict)
    structured: int = 0  # documents with document fields (STRUCTURED_EXTRACTION)
    structured_errors: int = 0  # documents whose fields the model failed to give
    # The run's LLM figures, counted in Redis by every worker (None: no LLM backend).
    llm: LlmUsage | None = None
    resolution: Resolution | None = None  # RESOLUTION's end-of-batch step
    aliases: int = 0  # the project's canonical aliases after it
    fallback: int = 0  # documents run on the traditional path for a Redis outage
    generation: int = 0  # this run's generation: its documents' OCR figures are kept by it
    ocr_pages: int = 0  # pages an OCR engine read for this run, on any worker
    ocr_cached_pages: int = 0  # pages taken from the OCR cache instead
    ocr_seconds: float = 0.0  # seconds of those engine pages (render + OCR, in the pool)

    @property
    def docs_per_s(self) -> float:
        return self.total / self.elapsed_s if self.elapsed_s else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_ms:
            return 0.0
        if len(self.latencies_ms) == 1:
            return self.latencies_ms[0]
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[int(q) - 1]


async def _states(rt: Runtime, refs: list[SourceRef]) -> list[tuple[str | None, int | None]]:
    if not isinstance(rt.transport, RedisTransport) or rt.redis is None:
        return [(None, None)] * len(refs)
    pipe = rt.redis.pipeline(transaction=False)
    for ref in refs:
        pipe.hmget(rt.keys.state(ref.document_id), state.STATUS, state.GENERATION)
    out: list[tuple[str | None, int | None]] = []
    with map_driver_errors():
        replies = await pipe.execute()
    for status, gen in replies:
        out.append((status.decode() if status else None, int(gen) if gen else None))
    return out


# Files fingerprinted and registered before the engine gets its first documents: the
# rest follow while it works on those (hashing 500 files took 0.3 s that no stage ran).
HEAD_FILES: Final = 32


@dataclass
class _Plan:
    """What intake decided for one part of the input."""

    refs: list[SourceRef]  # every document of the part
    waiting: list[SourceRef]  # those the run waits for (queued now, or in flight)
    to_queue: dict[str, list[SourceRef]]  # start stage -> documents to queue there


async def _plan(
    rt: Runtime, opts: BatchOptions, head: int | None = None
) -> tuple[_Plan, BatchReport, list[tuple[Path, str]]]:
    """Decide, per document, whether to queue it and at which stage: for the first
    ``head`` files (and every S3 object) now; the files left are returned, for
    :func:`_plan_files` to plan while the engine works."""
    gen = new_generation()
    report = BatchReport(opts.project, rt.handoff.name, generation=gen)
    known_s3: list[SourceRef] = []
    if opts.reprocess:
        known = await project_documents(rt.pool, opts.project)
        known_s3 = [r for r in known if is_s3(r.source)]
        files = [(Path(r.source), r.source_key) for r in known if not is_s3(r.source)]
        if opts.inputs:
            disc = discover(opts.inputs, opts.exclude, follow_symlinks=opts.follow_symlinks)
            report.skipped_files = len(disc.skipped)
            seen = {k for _, k in files} | {r.source_key for r in known_s3}
            files += [f for f in disc.files if f[1] not in seen]
    else:
        if not opts.inputs and not opts.s3_inputs:
            raise ConfigError("nothing to ingest: give --input, or --reprocess")
        files = []
        if opts.inputs:
            disc = discover(opts.inputs, opts.exclude, follow_symlinks=opts.follow_symlinks)
            report.skipped_files = len(disc.skipped)
            files = disc.files
    if opts.limit is not None:
        files = files[: opts.limit]
    if opts.from_stage is not None and opts.from_stage not in pipeline.STAGE_NAMES:
        raise ConfigError(f"--from must be one of {', '.join(pipeline.STAGE_NAMES)}")
    if opts.from_stage is not None and not pipeline.stage(opts.from_stage).enabled(rt.settings):
        raise ConfigError(f"--from {opts.from_stage}: that stage is off in these settings")
    now, rest = (files, []) if head is None else (files[:head], files[head:])
    refs = await fingerprint_all(opts.project, now, gen)
    if opts.s3_inputs or known_s3:
        found = await s3_intake.intake(
            rt.pool,
            rt.settings,
            opts.project,
            opts.s3_inputs,
            opts.exclude,
            gen,
            known=known_s3,
            seen={k for _, k in files},
            limit=None if opts.limit is None else max(0, opts.limit - len(files)),
        )
        refs += found.refs
        report.skipped_files += len(found.skipped)
        report.s3_skipped = found.skipped
        report.s3_listed, report.s3_downloaded = found.listed, found.downloaded
        report.s3_unchanged = found.unchanged
        report.s3_keys = [r.source_key for r in found.refs]
    return await _plan_refs(rt, opts, refs, report), report, rest


async def _plan_files(
    rt: Runtime, opts: BatchOptions, files: list[tuple[Path, str]], report: BatchReport
) -> _Plan:
    """The plan of files :func:`_plan` left, under the run's generation."""
    refs = await fingerprint_all(opts.project, files, report.generation)
    return await _plan_refs(rt, opts, refs, report)


async def _plan_refs(
    rt: Runtime, opts: BatchOptions, refs: list[SourceRef], report: BatchReport
) -> _Plan:
    states = await _states(rt, refs)
    in_flight = [
        r
        for r, (st, _g) in zip(refs, states, strict=True)
        if st is not None and st not in state.TERMINAL and not opts.reprocess
    ]
    candidates = [
        r
        for r, (st, _g) in zip(refs, states, strict=True)
        if opts.reprocess or st is None or st in state.TERMINAL
    ]
    # Rows of finished documents with unchanged content are left alone here.
    previous = await register_documents(rt.pool, candidates)
    finished_states = _FINISHED if not pipeline.stage("ocr").enabled(rt.settings) else _DONE
    finished = [r for r in candidates if previous.get(r.document_id) in finished_states]
    finished_ids = {r.document_id for r in finished}
    to_queue: dict[str, list[SourceRef]] = {}
    fresh = [r for r in candidates if r.document_id not in finished_ids]
    if fresh:
        to_queue["extract"] = fresh
    unchanged = len(finished)
    if opts.reprocess and finished:
        starts = await _reprocess_starts(rt, finished, previous, opts.from_stage)
        unchanged = len(starts.pop(None, []))
        rerun = [r for rs in starts.values() for r in rs]
        await register_documents(rt.pool, rerun, reprocess=True)
        for stage, refs_at in starts.items():
            assert stage is not None
            to_queue.setdefault(stage, []).extend(refs_at)
    waiting = in_flight + [r for rs in to_queue.values() for r in rs]
    # Counted last: a part whose planning failed half-way is planned again whole.
    report.total += len(refs)
    report.unchanged += unchanged
    return _Plan(refs, waiting, to_queue)


_FINISHED = (state.DONE, state.NEEDS_OCR)
_DONE = (state.DONE,)  # with an OCR engine, documents left as needs_ocr are run again


async def _reprocess_starts(
    rt: Runtime,
    refs: list[SourceRef],
    previous: dict[uuid.UUID, str],
    from_stage: str | None,
) -> dict[str | None, list[SourceRef]]:
    """Where each finished, unchanged document starts again (None: nothing to redo).

    Traditional path: from the extracted text it stored (``clean``), or ``--from``.
    Accelerated path: ``--from`` drops the cached outputs from that stage on; without
    it, each document starts at the first stage whose fingerprint (input content, code
    version, settings) differs from its stored output's, and a document whose outputs
    and committed rows are all current is not re-run at all.
    """
    out: dict[str | None, list[SourceRef]] = {}
    if not rt.accelerated or rt.redis is None:
        for ref in refs:
            done = previous.get(ref.document_id) == state.DONE
            out.setdefault(from_stage or ("clean" if done else "extract"), []).append(ref)
        return out
    if from_stage is not None:
        spec = pipeline.stage(from_stage)
        dropped = pipeline.outputs_from(from_stage)
        pipe = rt.redis.pipeline(transaction=False)
        for ref in refs:
            if spec.input_key is not None:
                pipe.exists(rt.keys.output(ref.document_id, spec.input_key))
            pipe.delete(*(rt.keys.output(ref.document_id, k) for k in dropped))
        with map_driver_errors():
            res = await pipe.execute()
        step = 2 if spec.input_key is not None else 1
        for n, ref in enumerate(refs):
            has_input = spec.input_key is None or bool(res[step * n])
            out.setdefault(from_stage if has_input else pipeline.FIRST, []).append(ref)
        return out
    pipe = rt.redis.pipeline(transaction=False)
    fp_fields = [fingerprint.field(s.name) for s in PIPELINE]
    for ref in refs:
        pipe.hmget(rt.keys.state(ref.document_id), state.STATUS, *fp_fields)
        for s in PIPELINE:
            pipe.exists(rt.keys.output(ref.document_id, s.output_key))
    with map_driver_errors():
        res = await pipe.execute()
    step = 1 + len(PIPELINE)
    ocr_on = pipeline.stage("ocr").enabled(rt.settings)
    for n, ref in enumerate(refs):
        stored, exists = res[n * step], res[n * step + 1 : (n + 1) * step]
        status = stored[0].decode() if stored[0] else None
        want = rt.fingerprints(ref)
        have = [v.decode() if v else None for v in stored[1:]]
        # The stages this document went through: the main line, and a branch (OCR)
        # only where it ran.
        path = [
            (st, have[i] == want[st.name] and bool(exists[i]))
            for i, st in enumerate(PIPELINE)
            if pipeline.on_path(st, rt.settings, have[i] is not None)
        ]
        current = [ok for _st, ok in path]
        start: str | None
        if status == state.NEEDS_OCR and current[0]:
            start = "ocr" if ocr_on else None  # an OCR engine now exists: read the scan
        elif all(current):
            start = None if status == state.DONE else path[-1][0].name
        else:
            start = path[current.index(False)][0].name
        out.setdefault(start, []).append(ref)
    return out


async def run_batch(
    rt: Runtime,
    opts: BatchOptions,
    progress: ProgressFn | None = None,
    notice: NoticeFn | None = None,
) -> BatchReport:
    """Ingest or reprocess ``opts.project`` and wait until every document is terminal.

    While Redis cannot be reached (or is full), the run waits and says so through
    ``notice`` (``REDIS_OUTAGE=wait``, the default: documents already handed to Redis
    can move only through it, and Redis holds no only copy, so waiting loses nothing),
    or gives up with :class:`BackendUnavailable` after ``REDIS_OUTAGE_LIMIT_S``
    (``REDIS_OUTAGE=fail``: the CLI exits 3). With ``REDIS_OUTAGE=traditional`` an
    outage during intake that outlasts the limit sends the documents not yet handed to
    Redis down the traditional path (the same stage code, rows straight to Postgres, in
    this process) while those already handed wait for Redis: they can move only
    through it. When Redis comes back empty (restarted without persistence), the run
    notices that its marker key is gone and queues the documents that Postgres does not
    hold as finished again.
    """
    t0 = time.perf_counter()
    say = notice or (lambda text: log.warning("%s", text))
    watch = _Outage(rt.settings, say)
    await watch.retrying(rt.transport.setup)
    plan, report, rest = await watch.retrying(lambda: _plan(rt, opts, HEAD_FILES))
    refs, waiting = plan.refs, plan.waiting
    by_id = {str(r.document_id): r for r in waiting}
    models = llm_models(rt.backends_)
    if models and rt.redis is not None:
        # The run's LLM counters and token budget start from zero (accelerated.llm.usage).
        redis = rt.redis
        await watch.retrying(lambda: start_run(redis, rt.keys, opts.project, models))

    stop = asyncio.Event()
    # The engine (and its writer) start before intake, so backpressure can drain.
    engine = rt.engine()
    engine_task = asyncio.create_task(engine.run(stop)) if opts.consume else None
    ids = set(by_id)
    side: _Traditional | None = None  # REDIS_OUTAGE=traditional, once tripped
    side_task: asyncio.Task[None] | None = None
    tracker = ProgressTracker(rt, opts.project, ids) if progress is not None else None
    marker = rt.keys.run_marker(opts.project, uuid.uuid4().hex) if rt.redis is not None else None
    try:
        if marker is not None and rt.redis is not None:
            redis = rt.redis

            async def mark() -> None:
                with map_driver_errors():
                    await redis.set(marker, b"1")

            await watch.retrying(mark)
        not_handed: dict[str, list[SourceRef]] = {}

        async def enqueue(to_queue: dict[str, list[SourceRef]]) -> None:
            for start, queued in to_queue.items():
                if not_handed:  # the circuit is open: the rest go the traditional way too
                    not_handed.setdefault(start, []).extend(queued)
                    continue
                left_over = await _enqueue_with_backpressure(rt, queued, start, watch)
                if left_over:
                    not_handed[start] = left_over

        await enqueue(plan.to_queue)
        if rest:
            # The files after the head, planned while the engine works on the head's.
            more = await watch.retrying(functools.partial(_plan_files, rt, opts, rest, report))
            refs += more.refs
            waiting += more.waiting
            for r in more.waiting:
                by_id[str(r.document_id)] = r
                ids.add(str(r.document_id))
            await enqueue(more.to_queue)
        if not_handed:
            moved = {str(r.document_id) for refs in not_handed.values() for r in refs}
            ids -= moved
            for i in moved:
                by_id.pop(i, None)
            report.fallback = len(moved)
            say(
                f"Redis unreachable for more than {watch.limit:g}s (REDIS_OUTAGE=traditional): "
                f"{len(moved)} document(s) not yet handed to it run on the traditional path; "
                f"{len(ids)} already handed wait for Redis"
            )
            side = _Traditional(rt, opts.project, not_handed)
            side_task = asyncio.create_task(side.run())
            if tracker is not None:
                tracker.extra = side.total
        total = len(ids) + (side.total if side is not None else 0)
        while True:
            if engine_task is not None and engine_task.done():
                engine_task.result()  # surfaces the engine's crash
                raise RuntimeError("engine stopped before the batch finished")
            if side_task is not None and side_task.done():
                side_task.result()  # surfaces the traditional side's crash
            try:
                left = 0
                if ids:
                    if marker is not None and await _lost(rt, marker):
                        await _requeue(rt, marker, by_id, say)
                    left = await _left(rt, opts.project, ids)
                watch.ok()
            except BackendUnavailable as exc:
                watch.failed(exc)
                await asyncio.sleep(0.5)
                continue
            if side is not None:
                left += side.left
            if tracker is not None and progress is not None:
                with contextlib.suppress(BackendUnavailable):  # the bar waits for the next poll
                    progress(await tracker.snapshot(left))
            if left == 0 and (side_task is None or side_task.done()):
                break
            # Often while the last documents finish (the run's end is seen sooner), seldom
            # while many are left (each poll reads the outstanding sets).
            await asyncio.sleep(0.05 if total < 200 or left <= 32 else 0.2)
    finally:
        if side_task is not None:
            side_task.cancel()
            await asyncio.gather(side_task, return_exceptions=True)
        stop.set()
        if engine_task is not None:
            try:
                await engine_task
            except asyncio.CancelledError:
                # Our own cancellation (Ctrl-C) must go on up; the engine's is its end.
                if (me := asyncio.current_task()) is not None and me.cancelling():
                    raise
        if marker is not None and rt.redis is not None:
            with contextlib.suppress(BackendUnavailable), map_driver_errors():
                await rt.redis.delete(marker)
    if rt.backends_.resolver is not None:
        resolved = await watch.retrying(lambda: resolve_project(rt, opts.project))
        if resolved is not None:
            report.resolution, report.aliases = resolved
    report.elapsed_s = time.perf_counter() - t0
    await watch.retrying(lambda: _summarise(rt, opts.project, refs, waiting, report))
    if models and rt.redis is not None:
        redis = rt.redis
        report.llm = await watch.retrying(lambda: read_usage(redis, rt.keys, opts.project))
    return report


NoticeFn = Callable[[str], None]


class _Outage:
    """Tells the user once that Redis is unreachable, and gives up past the limit."""

    def __init__(self, settings: Settings, say: NoticeFn) -> None:
        self.policy, self.limit = settings.redis_outage, settings.redis_outage_limit_s
        self.say = say
        self.since: float | None = None

    def failed(self, exc: BackendUnavailable) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since = now
            what = {
                "fail": "gives up past the limit",
                "traditional": "waits; past the limit, documents not yet handed to Redis "
                "take the traditional path",
            }.get(self.policy, "waits")
            self.say(f"{exc}; the run {what} (REDIS_OUTAGE={self.policy}, limit {self.limit:g}s)")
        elif self.policy == "fail" and now - self.since > self.limit:
            raise BackendUnavailable(
                f"Redis unavailable for more than {self.limit:g}s (REDIS_OUTAGE_LIMIT_S): {exc}"
            )

    async def retrying(self, fn: Callable[[], Awaitable[T]]) -> T:
        """``fn()`` until it gets through (or the policy gives up)."""
        while True:
            try:
                out = await fn()
            except BackendUnavailable as exc:
                self.failed(exc)
                await asyncio.sleep(0.5)
                continue
            self.ok()
            return out

    def tripped(self) -> bool:
        """``REDIS_OUTAGE=traditional`` and the outage has outlasted its limit."""
        return (
            self.policy == "traditional"
            and self.since is not None
            and time.monotonic() - self.since > self.limit
        )

    def ok(self) -> None:
        if self.since is not None:
            self.say(f"Redis answers again after {time.monotonic() - self.since:.1f}s; resuming")
            self.since = None


async def _lost(rt: Runtime, marker: str) -> bool:
    """True when Redis no longer holds this run's marker: it restarted empty."""
    assert rt.redis is not None
    with map_driver_errors():
        return not await rt.redis.exists(marker)


async def _requeue(rt: Runtime, marker: str, by_id: dict[str, SourceRef], say: NoticeFn) -> None:
    """Queue again, from Postgres, the run's documents that are not finished there."""
    assert rt.redis is not None
    with map_driver_errors("postgres"):
        rows = await rt.pool.fetch(
            "SELECT id, status FROM documents WHERE id = ANY($1::uuid[])",
            [uuid.UUID(i) for i in by_id],
        )
    finished = {str(r["id"]) for r in rows if r["status"] in state.TERMINAL}
    again = [ref for i, ref in by_id.items() if i not in finished]
    say(
        f"Redis lost its data (restarted without persistence?): queueing {len(again)} "
        "unfinished document(s) again from Postgres"
    )
    await rt.transport.setup()
    await rt.transport.enqueue(again, pipeline.FIRST)
    with map_driver_errors():
        await rt.redis.set(marker, b"1")


async def _left(rt: Runtime, project: str, ids: set[str]) -> int:
    """How many of this run's documents are not terminal yet."""
    if not ids:
        return 0
    if isinstance(rt.transport, RedisTransport):
        return len(await rt.transport.outstanding_ids(project) & ids)
    return await rt.transport.outstanding(project)


async def _backlog(rt: Runtime) -> int:
    assert rt.writer is not None
    with map_driver_errors():
        return await rt.writer.backlog()


async def _enqueue_with_backpressure(
    rt: Runtime, refs: list[SourceRef], stage: str, watch: _Outage | None = None
) -> list[SourceRef]:
    """Pause intake while the write-behind backlog is over its bound, and while Redis
    is unreachable or full (each part is one shard's MULTI: retried whole, never twice).

    Returns the documents not handed to Redis: none, unless ``watch`` trips
    (``REDIS_OUTAGE=traditional``), when the part that failed and those after it are
    given back for the traditional path. A part whose MULTI reached Redis but whose reply
    was lost would then run on both paths; both write the same rows under the same ids,
    so the second write restates the first.
    """
    step = min(500, max(1, rt.settings.wb_backlog_max // 4))
    parts = _parts(rt, refs, step)
    for n, part in enumerate(parts):
        while True:
            try:
                if rt.writer is not None:
                    # The backlog lives in Redis, shared with other hosts: poll it.
                    while await _backlog(rt) > rt.settings.wb_backlog_max:  # noqa: ASYNC110
                        await asyncio.sleep(0.1)
                await rt.transport.enqueue(part, stage)
            except BackendUnavailable as exc:
                if watch is None:
                    raise
                watch.failed(exc)
                if watch.tripped():
                    return [ref for rest in parts[n:] for ref in rest]
                await asyncio.sleep(0.5)
                continue
            if watch is not None:
                watch.ok()
            break
    return []


class _Traditional:
    """The documents a Redis outage kept from being handed over, run the traditional way.

    A second runtime in this process over the same Postgres pool, CPU pool and backends,
    with in-process queues and no Redis: the same stage code writes the same rows.
    """

    def __init__(self, rt: Runtime, project: str, queued: dict[str, list[SourceRef]]) -> None:
        self.project, self.queued = project, queued
        self.total = self.left = sum(len(refs) for refs in queued.values())
        settings = rt.settings.model_copy(update={"enable_redis_acceleration": False})
        self.rt = build_runtime(
            settings,
            rt.pool,
            None,
            executor=rt.executor,
            consumer=f"{rt.consumer}-traditional",
            backends=rt.backends_,
        )
        self.rt.stage_overrides.update(rt.stage_overrides)

    async def run(self) -> None:
        stop = asyncio.Event()
        engine = asyncio.create_task(self.rt.engine().run(stop))
        try:
            for start, refs in self.queued.items():
                await self.rt.transport.enqueue(refs, start)
            while (left := await self.rt.transport.outstanding(self.project)) > 0:
                self.left = left
                if engine.done():
                    engine.result()
                    raise RuntimeError("traditional engine stopped before its documents finished")
                await asyncio.sleep(0.05)
            self.left = 0
        finally:
            stop.set()
            await asyncio.gather(engine, return_exceptions=True)


def _parts(rt: Runtime, refs: list[SourceRef], step: int) -> list[list[SourceRef]]:
    """``refs`` in chunks of at most ``step`` documents of one shard each (one MULTI)."""
    by_shard: dict[int, list[SourceRef]] = {}
    for ref in refs:
        by_shard.setdefault(rt.keys.shard(ref.document_id), []).append(ref)
    return [g[i : i + step] for _s, g in sorted(by_shard.items()) for i in range(0, len(g), step)]


@translated("postgres")
async def _summarise(
    rt: Runtime, project: str, refs: list[SourceRef], waited: list[SourceRef], report: BatchReport
) -> None:
    ids = [r.document_id for r in refs]
    async with rt.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT source_key, status, error, metadata ? 'structured' AS fields, "
            "metadata ? 'structured_error' AS fields_error "
            "FROM documents WHERE id = ANY($1::uuid[])",
            ids,
        )
        counts = await conn.fetchrow(
            """SELECT
                 (SELECT count(*) FROM chunks WHERE document_id = ANY($1::uuid[])) AS chunks,
                 (SELECT count(*) FROM entity_mentions WHERE document_id = ANY($1::uuid[]))
                     AS mentions,
                 (SELECT count(*) FROM canonical_entities WHERE project = $2) AS canonicals,
                 (SELECT count(*) FROM relationships WHERE document_id = ANY($1::uuid[])) AS rels
            """,
            ids,
            project,
        )
    for row in rows:
        if row["status"] == state.DONE:
            report.done += 1
        elif row["status"] == state.NEEDS_OCR:
            report.needs_ocr += 1
        elif row["status"] == state.FAILED:
            report.failed[row["source_key"]] = row["error"] or "failed"
        elif row["status"] == state.BUDGET_EXHAUSTED:
            report.budget_exhausted[row["source_key"]] = row["error"] or "LLM budget spent"
        report.structured += bool(row["fields"])
        report.structured_errors += bool(row["fields_error"])
    report.chunks, report.mentions = counts["chunks"], counts["mentions"]
    report.canonicals, report.relationships = counts["canonicals"], counts["rels"]
    ocr = await rt.ocr_tally.totals(project, report.generation)
    report.ocr_pages, report.ocr_cached_pages = ocr.engine_pages, ocr.cached_pages
    report.ocr_seconds = ocr.engine_seconds
    lat = await rt.transport.latencies(waited)
    report.latencies_ms = sorted((done - intake) * 1000 for intake, done, _c in lat)
    report.stage_compute_s = sum(c for _i, _d, c in lat)


def raise_for_failures(report: BatchReport) -> None:
    if report.failed:
        raise BatchFailed(report.failed)
