"""``python -m benchmarks.run``: the accelerated and the traditional path, side by side.

Both paths run in one invocation on the same staged documents, the same stage code,
the same executor, the same concurrency and the same Postgres, through the same
delaying proxy (which models a database across a network). The order of the two paths
alternates between combinations so that machine drift hits both.

Each path gets its own Redis key prefix and Postgres schema per latency: ``cold`` runs
on empty caches and an empty schema; ``warm`` is ``--reprocess`` of the project that
the cold run just ingested (traditional: from the text it stored; accelerated: from
its caches); ``rerun`` is ``--reprocess`` after the entity backend's version changed
(what a new release of its code looks like: every chunk's entity result is stale, but
for an LLM backend the questions are the same, so the accelerated path's response
cache answers them and no call is made). Both are removed afterwards.

With ``--entity-backend rules+llm`` (or ``llm``) each path gets its own local
OpenAI-compatible server (:mod:`benchmarks.llm_server`) answering after
``--llm-latency-ms`` and enforcing ``--llm-rpm`` itself (429 past it), and the
pipeline's limiter is set to the same rate; every run reports the calls the server
answered, its busiest 60 s window against the limit, the 429s it sent and the
summary's own LLM figures.

With ``--mode ...,limit`` the stages also run alone (:mod:`benchmarks.limit`: in-process,
in-memory caches and registry, the same process pool and per-stage concurrency, no
Redis or Postgres) beside each latency's cold runs, in alternating order, on the same
documents; the report gives each path's fraction of it, the time to the first document
done and the time the last 5 % took, and, per run, CPU per document per component
from thread and process CPU times (:mod:`benchmarks.cpu_ledger` says how).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import asyncpg
from redis.asyncio.cluster import RedisCluster
from rich.console import Console

from accelerated.aio import wait_for
from accelerated.backends import EntityBackend, entity_mode
from accelerated.batch_run import BatchOptions, BatchReport, run_batch
from accelerated.cluster import RedisClient
from accelerated.connect import redis_client
from accelerated.handoff import AcceleratedHandoff
from accelerated.redact import redact
from accelerated.runtime import Runtime, build_runtime, make_executor, tune_gc
from accelerated.settings import Settings
from benchmarks import cpu_ledger, metrics, report
from benchmarks.inputs import StagedInputs, stage_inputs
from benchmarks.limit import LimitResult, run_limit, tail_times
from benchmarks.llm_server import ChatServer
from benchmarks.proxy import DelayProxy, dsn_address, proxied_dsn
from persistence.pg import create_pool
from persistence.schema import migrate

REPO = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = REPO.parent / "shared" / "corpus"
WARMUP_INPUT = REPO / "examples" / "documents"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/postgres"
PROJECT = "bench"
PATHS = ("accelerated", "traditional")
MODES = ("cold", "warm", "rerun")
LIMIT = "limit"  # not a path's mode: the stages alone, beside the cold runs
DEFAULT_MODES = ("cold", "warm")
LLM_BACKENDS = ("llm", "rules+llm")
LLM_MODEL = "bench-model"
LLM_KEY = "sk-bench-local"  # the local server checks nothing


@dataclass
class BenchConfig:
    input: Path = DEFAULT_INPUT
    exclude: list[str] = field(default_factory=lambda: ["truth/*"])
    docs: int | None = None
    latencies_ms: list[float] = field(default_factory=lambda: [0.0, 20.0])
    modes: list[str] = field(default_factory=lambda: list(DEFAULT_MODES))
    concurrency: int = 16
    workers: int = 1
    worker_processes: bool = False  # run the stages in `accelerated.worker` subprocesses
    cpu_pool: str = "process"
    redis_url: str = DEFAULT_REDIS
    database_url: str = DEFAULT_DATABASE
    warmup: bool = True
    json_path: Path | None = None
    plot_path: Path | None = None
    entity_backend: str = "rules"
    llm_latency_ms: float = 300.0
    llm_rpm: int = 600
    llm_tpm: int = 10_000_000
    llm_concurrency: int = 8
    # Which paths run (both by default); one alone is for iterating on it with the limit.
    paths: tuple[str, ...] = PATHS

    @property
    def subprocess_workers(self) -> bool:
        return self.worker_processes or self.workers > 1

    @property
    def uses_llm(self) -> bool:
        return self.entity_backend in LLM_BACKENDS


@dataclass
class PathEnv:
    """One path's isolated world: its prefix, schema, pool, Redis client and runtime."""

    path: str
    settings: Settings
    pool: asyncpg.Pool
    redis: RedisClient
    rt: Runtime
    cold_done: bool = False
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)
    llm: ChatServer | None = None  # this path's own LLM server (--entity-backend *llm)


@dataclass
class Harness:
    cfg: BenchConfig
    proxy: DelayProxy
    admin_redis: RedisClient
    executor: Executor | None
    staged: StagedInputs
    console: Console
    log_dir: Path
    runs: list[metrics.RunMetrics] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    diagnostics: list[dict[str, Any]] = field(default_factory=list)
    limit_runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def with_limit(self) -> bool:
        return LIMIT in self.cfg.modes


_WARM_TEXT = (
    "IN THE UNITED STATES DISTRICT COURT FOR THE DISTRICT OF DELAWARE. Acme Corp. v. "
    "Widget LLC, No. 1:23-cv-00456. Judge Jane Roe. See Brown v. Board of Education, "
    "347 U.S. 483 (1954); 42 U.S.C. § 1983. Damages of $1,250,000 on March 3, 2021."
)


def _warm_worker(pause_s: float) -> int:
    """Build the entity tables (eyecite tokenizer, courts) in an executor process.

    Each process builds them on first use, which takes seconds: left to the timed runs,
    it would land on whichever path runs first. The pause keeps this process busy so
    the next warm-up task goes to another process.
    """
    from accelerated.entities.rules import RulesBackend

    RulesBackend().extract([_WARM_TEXT])
    time.sleep(pause_s)
    return os.getpid()


def _settings(
    cfg: BenchConfig, path: str, database_url: str, llm_url: str | None = None
) -> Settings:
    tag = uuid.uuid4().hex[:10]
    llm: dict[str, Any] = {}
    if llm_url is not None:
        llm = {
            "openai_base_url": llm_url,
            "openai_api_key": LLM_KEY,
            "llm_model": LLM_MODEL,
            "llm_rpm": cfg.llm_rpm,
            "llm_tpm": cfg.llm_tpm,
            "llm_concurrency": cfg.llm_concurrency,
        }
    # The run's Postgres backends are found by this name (pg_stat_activity) for their CPU.
    sep = "&" if "?" in database_url else "?"
    return Settings.from_dsn(
        cfg.redis_url,
        f"{database_url}{sep}application_name=bench_{tag}",
        redis_prefix=f"bench-{tag}",
        pg_schema=f"bench_{tag}",
        enable_redis_acceleration=path == "accelerated",
        concurrency=cfg.concurrency,
        cpu_pool=cfg.cpu_pool,
        entity_backend=cfg.entity_backend,
        # Scans stay needs_ocr here: OCR (~2 s a page) would swamp the pipeline overhead
        # this measures, and has its own benchmark (benchmarks/ocr.py).
        ocr_backend="none",
        _env_file=None,
        **llm,
    )


class VersionBumped:
    """The same entity backend under a new version: to the chunk cache and the
    fingerprints it is a new release of the backend's code; an LLM backend's questions
    (prompt, model, chunk text) are unchanged, so their exact-cache keys are too."""

    def __init__(self, inner: EntityBackend, tag: str) -> None:
        self.inner = inner
        self.version = f"{inner.version}+{tag}"
        self.mode = entity_mode(inner)

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # unpickling in a pool process: not set yet
            raise AttributeError(name)
        return getattr(self.inner, name)


def bump_entity_version(env: PathEnv, tag: str) -> None:
    """Give the path's runtime the bumped backend (fingerprints are recomputed)."""
    backends = env.rt.backends_
    env.rt.backends = dataclasses.replace(backends, entities=VersionBumped(backends.entities, tag))
    env.rt.__dict__.pop("stage_params", None)  # a cached_property of the old backends


async def _drop(cfg: BenchConfig, admin_redis: RedisClient, settings: Settings) -> None:
    conn = await asyncpg.connect(cfg.database_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{settings.pg_schema}" CASCADE')
    finally:
        await conn.close()
    batch: list[bytes] = []
    async for key in admin_redis.scan_iter(match=f"{settings.redis_prefix}:*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            await admin_redis.delete(*batch)
            batch.clear()
    if batch:
        await admin_redis.delete(*batch)


@contextlib.asynccontextmanager
async def open_env(h: Harness, path: str) -> AsyncIterator[PathEnv]:
    """A fresh prefix and schema behind the proxy (and an LLM server of its own when the
    entity backend calls one); all removed on exit."""
    llm = None
    if h.cfg.uses_llm:
        llm = ChatServer(latency_s=h.cfg.llm_latency_ms / 1000, rpm_limit=h.cfg.llm_rpm).start()
    settings = _settings(
        h.cfg,
        path,
        proxied_dsn(h.cfg.database_url, h.proxy.port),
        llm.base_url if llm is not None else None,
    )
    client = redis_client(h.cfg.redis_url, settings)
    pool = None
    rt = None
    try:
        pool = await create_pool(settings)
        await migrate(pool, settings.pg_schema)
        rt = build_runtime(settings, pool, client, executor=h.executor)
        if rt.handoff.name != path:
            raise RuntimeError(f"asked for the {path} path, the runtime built {rt.handoff.name}")
        env = PathEnv(path, settings, pool, client, rt, llm=llm)
        async with worker_processes(h, env):
            yield env
    finally:
        # The executor is shared by every run, so only the backends are closed here.
        if rt is not None:
            await rt.aclose_backends()
        if pool is not None:
            await pool.close()
        await client.aclose()
        await _drop(h.cfg, h.admin_redis, settings)
        if llm is not None:
            llm.stop()


def _worker_env(cfg: BenchConfig, settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        REDIS_URL=cfg.redis_url,
        DATABASE_URL=str(settings.database_url),
        REDIS_PREFIX=settings.redis_prefix,
        PG_SCHEMA=settings.pg_schema,
        ENABLE_REDIS_ACCELERATION=str(settings.enable_redis_acceleration).lower(),
        CONCURRENCY=str(cfg.concurrency),
        CPU_POOL=cfg.cpu_pool,
        ENTITY_BACKEND=settings.entity_backend,
        OCR_BACKEND=settings.ocr_backend,
    )
    if settings.openai_base_url is not None:
        env.update(
            OPENAI_BASE_URL=settings.openai_base_url,
            OPENAI_API_KEY=LLM_KEY,
            LLM_MODEL=LLM_MODEL,
            LLM_RPM=str(cfg.llm_rpm),
            LLM_TPM=str(cfg.llm_tpm),
            LLM_CONCURRENCY=str(cfg.llm_concurrency),
        )
    return env


@contextlib.asynccontextmanager
async def worker_processes(h: Harness, env: PathEnv) -> AsyncIterator[None]:
    """K ``accelerated.worker`` processes for this path, warmed up, then paused.

    They live as long as the path's schema, so start-up and first imports are in no
    timed run (an untimed batch of examples/documents under project "warmup" warms
    them), and they are SIGSTOPped while the other path runs, so their idle polling
    is not counted against it.
    """
    if not h.cfg.subprocess_workers:
        yield
        return
    log_path = h.log_dir / f"{env.settings.redis_prefix}-workers.log"
    with log_path.open("ab") as log:
        try:
            for _ in range(h.cfg.workers):
                env.procs.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-m",
                        "accelerated.worker",
                        env=_worker_env(h.cfg, env.settings),
                        cwd=REPO,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            await _until_alive(h, env, log_path)
            if h.cfg.warmup and WARMUP_INPUT.is_dir():
                opts = BatchOptions(project="warmup", inputs=[WARMUP_INPUT], consume=False)
                await run_batch(env.rt, opts)
            _signal(env, signal.SIGSTOP)
            yield
        finally:
            _signal(env, signal.SIGCONT)
            _signal(env, signal.SIGTERM)
            for p in env.procs:
                try:
                    await wait_for(p.wait(), 60)
                except TimeoutError:
                    p.kill()
                    await p.wait()


def _signal(env: PathEnv, sig: int) -> None:
    for p in env.procs:
        if p.returncode is None:
            p.send_signal(sig)


@contextlib.asynccontextmanager
async def active(h: Harness, env: PathEnv) -> AsyncIterator[None]:
    """Resume the path's workers for one batch (no-op in in-process mode)."""
    if not env.procs:
        yield
        return
    _signal(env, signal.SIGCONT)
    await _until_alive(h, env, h.log_dir / f"{env.settings.redis_prefix}-workers.log")
    try:
        yield
    finally:
        _signal(env, signal.SIGSTOP)


async def _until_alive(h: Harness, env: PathEnv, log_path: Path) -> None:
    """Wait for every worker's heartbeat key, so start-up is in no timed run."""
    pattern = f"{env.settings.redis_prefix}:consumer:*"
    deadline = time.monotonic() + 120
    while len([k async for k in h.admin_redis.scan_iter(match=pattern)]) < len(env.procs):
        if any(p.returncode is not None for p in env.procs) or time.monotonic() > deadline:
            tail = (await asyncio.to_thread(log_path.read_text, errors="replace"))[-2000:]
            raise RuntimeError(f"a benchmark worker did not start:\n{tail}")
        await asyncio.sleep(0.1)


async def _entity_cache_keys(h: Harness, env: PathEnv) -> int:
    pattern = f"{env.settings.redis_prefix}:cache:entities:*"
    return len([k async for k in h.admin_redis.scan_iter(match=pattern, count=1000)])


def _memo_counters(env: PathEnv) -> dict[str, int]:
    handoff, writer = env.rt.handoff, env.rt.writer
    if not isinstance(handoff, AcceleratedHandoff) or writer is None or writer.memo is None:
        return {}
    return {
        "handoff_memo_hits": handoff.memo_hits,
        "handoff_memo_misses": handoff.memo_misses,
        "intent_memo_hits": writer.memo.hits,
    }


async def measure(h: Harness, env: PathEnv, mode: str, latency: float) -> metrics.RunMetrics:
    """One timed run: cold ingest of the staged folder, warm reprocess of the project, or
    its reprocess after the entity backend's version changed (rerun)."""
    warm = mode in ("warm", "rerun")
    if warm and not env.cold_done:
        raise RuntimeError(f"a {mode} run needs the cold run of the same path first")
    if mode == "rerun":
        bump_entity_version(env, f"bench-rerun-{latency:g}")
    llm0 = len(env.llm.received) if env.llm is not None else 0
    opts = BatchOptions(
        project=PROJECT,
        inputs=[] if warm else [h.staged.root],
        reprocess=warm,
        consume=not env.procs,
    )
    async with active(h, env):
        not_ours = frozenset({h.proxy.pid or -1})
        db0, cmd0 = h.proxy.counters(), await metrics.redis_commands(h.admin_redis)
        cpu0 = metrics.CpuTimes.now(not_ours)
        memo0 = _memo_counters(env)
        wall0 = time.time()
        async with cpu_watch(h, _app_name(env.settings)) as watched:
            async with metrics.RssPeak().watch() as rss:
                rep: BatchReport = await run_batch(env.rt, opts)
            cpu1 = metrics.CpuTimes.now(not_ours)
        memo1 = _memo_counters(env)
        db1, cmd1 = h.proxy.counters(), await metrics.redis_commands(h.admin_redis)
    env.cold_done = True
    llm_seen = _llm_diagnostics(h, env, rep, llm0) if env.llm is not None else None
    harness_cpu, children_cpu = cpu1.since(cpu0)
    extra: dict[str, Any] = {}
    if h.with_limit:
        done_at = [d for _i, d, _c in await env.rt.transport.latencies(await _documents(env))]
        first, last5 = tail_times(done_at, wall0, wall0 + rep.elapsed_s)
        extra = {
            "first_done_s": round(first, 3),
            "last5_s": round(last5, 3),
            "cpu_ms_per_doc": components(watched, rep.stage_compute_s, children_cpu, rep.total),
        }
    h.diagnostics.append(
        {
            "run": f"{env.path}/{mode}/{latency:g}ms",
            "harness_cpu_s": round(harness_cpu, 2),
            "executor_and_worker_cpu_s": round(children_cpu, 2),
            # CPU the pipeline spent outside stage code, relative to stage code's CPU:
            # the overhead target measured in CPU time, which parallelism cannot hide.
            "pipeline_overhead_cpu": round(
                (harness_cpu + children_cpu - rep.stage_compute_s) / rep.stage_compute_s, 3
            )
            if rep.stage_compute_s > 0
            else None,
            "db_bytes_up_per_doc": round((db1 - db0).bytes_up / max(1, rep.total)),
            # In-process reuse: stage inputs taken from memory instead of Redis, and
            # intents the writer took without decoding them.
            **{k: memo1[k] - memo0[k] for k in memo0},
            "db_connections_opened": (db1 - db0).connections,
            "chunks": rep.chunks,
            "mentions": rep.mentions,
            **({"llm": llm_seen} if llm_seen is not None else {}),
            **extra,
        }
    )
    stored = raw = 0
    if env.rt.accelerated:
        ids = [r.document_id for r in await _documents(env)]
        stored, raw = await metrics.stage_bytes(h.admin_redis, env.rt.keys, env.rt.codec, ids)
        if not warm:
            h.diagnostics[-1]["entity_cache_entries"] = await _entity_cache_keys(h, env)
    run = metrics.build(
        path=env.path,
        mode=mode,
        db_latency_ms=latency,
        workers=h.cfg.workers,
        report=rep,
        db=db1 - db0,
        redis_cmds=cmd1 - cmd0 - 2,  # minus the two INFO calls around the run
        redis_bytes=stored,
        raw_json_bytes=raw,
        peak_rss_mb=rss.peak_mb,
    )
    if run.failed:
        codes = sorted({err.split(":")[1].strip() for err in rep.failed.values() if ":" in err})
        h.console.print(f"  [yellow]{run.failed} failed[/yellow] ({', '.join(codes)})")
    h.order.append(f"{env.path}/{mode}/{latency:g}ms")
    h.console.print(
        f"  {env.path:<11} {mode:<4} {latency:>5g} ms: {run.docs} docs, {run.failed} failed, "
        f"{run.elapsed_s:.1f}s, {run.docs_per_s:.2f} docs/s, "
        f"{run.db_roundtrips_per_doc:.2f} DB round trips/doc"
        + (
            f", first done {extra['first_done_s']:.2f}s, last 5% {extra['last5_s']:.2f}s"
            if extra
            else ""
        )
    )
    return run


def _app_name(settings: Settings) -> str | None:
    query = urlsplit(str(settings.database_url)).query
    return dict(parse_qsl(query)).get("application_name")


async def _redis_server_cpu(client: RedisClient) -> float:
    if isinstance(client, RedisCluster):
        per_node = await client.info("cpu", target_nodes=RedisCluster.PRIMARIES)
        infos = list(per_node.values())
    else:
        infos = [await client.info("cpu")]
    return sum(float(i["used_cpu_sys"]) + float(i["used_cpu_user"]) for i in infos)


@contextlib.asynccontextmanager
async def cpu_watch(h: Harness, app_name: str | None) -> AsyncIterator[dict[str, float]]:
    """CPU seconds by component over the block (``benchmarks.cpu_ledger``); empty
    unless the limit is asked for (the ledger is installed only then)."""
    out: dict[str, float] = {}
    if not h.with_limit:
        yield out
        return
    conn = await asyncpg.connect(h.cfg.database_url)
    try:

        async def backends() -> list[int]:
            if app_name is None:
                return []
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1", app_name
            )
            return [int(r["pid"]) for r in rows]

        pg = cpu_ledger.PidCpu()
        pg.start(await backends())
        redis0 = await _redis_server_cpu(h.admin_redis)
        thr0, led0 = cpu_ledger.threads_cpu_s(), cpu_ledger.LEDGER.snapshot()
        loop0 = time.thread_time()  # this is the loop's thread: finer than /proc's ticks
        yield out
        loop_thread = time.thread_time() - loop0
        thr1, led1 = cpu_ledger.threads_cpu_s(), cpu_ledger.LEDGER.snapshot()
        redis1 = await _redis_server_cpu(h.admin_redis)
        pg.sample(await backends())
    finally:
        await conn.close()
    main = os.getpid()
    ledger = cpu_ledger.diff(led1, led0)
    out.update(ledger)
    # What the loop thread spent outside any callback (selector, scheduling): the loop's.
    out[cpu_ledger.LOOP] = out.get(cpu_ledger.LOOP, 0.0) + loop_thread - sum(ledger.values())
    out["other_threads"] = sum(v - thr0.get(t, 0.0) for t, v in thr1.items() if t != main)
    out["redis_server"] = redis1 - redis0
    out["postgres_server"] = pg.total_s()


def components(
    watched: dict[str, float], stage_compute_s: float, children_s: float, docs: int
) -> dict[str, float]:
    """CPU ms per document by component: stage code (on the loop and in the pool), the
    pool's other work (pickling, IPC), clients, servers, codec, loop and engine."""
    in_loop_stage = watched.get("stage", 0.0)
    pool_stage = max(0.0, stage_compute_s - in_loop_stage)
    seconds = {
        "stage_code": stage_compute_s,
        "pool_other": max(0.0, children_s - pool_stage),
        "redis_client": watched.get("redis_client", 0.0),
        "redis_server": watched.get("redis_server", 0.0),
        "postgres_client": watched.get("postgres_client", 0.0),
        "postgres_server": watched.get("postgres_server", 0.0),
        "codec": watched.get("codec", 0.0),
        # The loop's own share of the stage call (awaiting, scheduling) beyond the
        # stage's compute goes with the loop and engine.
        "loop_engine": watched.get(cpu_ledger.LOOP, 0.0)
        + max(0.0, in_loop_stage - stage_compute_s),
        "other_threads": watched.get("other_threads", 0.0),
    }
    seconds["total"] = sum(seconds.values())
    return cpu_ledger.per_doc_ms(seconds, docs)


def _llm_diagnostics(h: Harness, env: PathEnv, rep: BatchReport, since: int) -> dict[str, Any]:
    """What the path's LLM server saw during the run, beside the summary's own figures."""
    assert env.llm is not None
    got = env.llm.received[since:]
    ok = sorted(r.at for r in got if r.status == 200)
    busiest, lo = 0, 0
    for hi, t in enumerate(ok):
        while ok[lo] <= t - 60.0:
            lo += 1
        busiest = max(busiest, hi - lo + 1)
    span = ok[-1] - ok[0] if len(ok) > 1 else 0.0
    u = rep.llm
    out: dict[str, Any] = {
        "server_calls": len(ok),
        "server_429s": sum(1 for r in got if r.status == 429),
        "counted_calls": u.calls if u else None,
        "cache_hits": u.cache_hits if u else None,
        "tokens_in": u.tokens_in if u else None,
        "tokens_out": u.tokens_out if u else None,
        "limiter_wait_s": round(u.wait_s, 2) if u else None,
        "busiest_60s_window": busiest,
        "rpm_limit": h.cfg.llm_rpm,
        "calls_span_s": round(span, 1),
        # Only a run that kept calling for more than a window can show how much of the
        # limit the limiter used; a shorter one was never held back by it.
        "limit_used": round(busiest / h.cfg.llm_rpm, 3) if span > 60.0 else None,
    }
    h.console.print(
        f"    LLM: {out['server_calls']} calls answered ({out['counted_calls']} counted, "
        f"{out['cache_hits']} cache hits), {out['server_429s']} x 429, busiest 60 s "
        f"{busiest}/{h.cfg.llm_rpm}, limiter wait {out['limiter_wait_s']} s"
    )
    return out


async def _documents(env: PathEnv) -> Sequence[Any]:
    from persistence.documents import project_documents

    return await project_documents(env.pool, PROJECT)


async def _warmup(h: Harness) -> None:
    """Untimed: imports, executor processes, first connections, for both paths."""
    if h.executor is not None:
        loop = asyncio.get_running_loop()
        n = os.cpu_count() or 1
        jobs = (loop.run_in_executor(h.executor, _warm_worker, 0.5) for _ in range(2 * n))
        pids = set(await asyncio.gather(*jobs))
        if len(pids) < n:
            h.console.print(f"[yellow]warm-up reached {len(pids)} of {n} executor processes")
    if not h.cfg.warmup or not WARMUP_INPUT.is_dir():
        return
    h.proxy.delay_ms = 0
    for path in h.cfg.paths:
        async with open_env(h, path) as env:
            await run_batch(env.rt, BatchOptions(project=PROJECT, inputs=[WARMUP_INPUT]))


def _order(h: Harness, i: int) -> tuple[str, ...]:
    paths = h.cfg.paths
    return paths if i % 2 == 0 else paths[::-1]


def _cold_order(h: Harness, i: int) -> tuple[str, ...]:
    """The cold runs' order, the limit first in one combination and last in the next."""
    paths = _order(h, i)
    if not h.with_limit:
        return paths
    return (LIMIT, *paths) if i % 2 == 0 else (*paths, LIMIT)


async def measure_limit(h: Harness, latency: float) -> dict[str, Any]:
    """One run of the stages alone (``benchmarks.limit``) on the staged documents."""
    settings = _settings(h.cfg, "accelerated", h.cfg.database_url)
    not_ours = frozenset({h.proxy.pid or -1})
    cpu0 = metrics.CpuTimes.now(not_ours)
    async with cpu_watch(h, None) as watched:
        res: LimitResult = await run_limit(h.staged.root, settings, h.executor, h.cfg.concurrency)
        cpu1 = metrics.CpuTimes.now(not_ours)
    _own, children = cpu1.since(cpu0)
    row = {
        "db_latency_ms": latency,  # beside that latency's cold runs; it uses no database
        "docs": res.docs,
        "failed": res.failed,
        "elapsed_s": round(res.elapsed_s, 4),
        "docs_per_s": round(res.docs_per_s, 3),
        "first_done_s": round(res.first_done_s, 3),
        "last5_s": round(res.last5_s, 3),
        "stage_compute_s": round(res.stage_compute_s, 4),
        "cpu_ms_per_doc": components(watched, res.stage_compute_s, children, res.docs),
    }
    h.order.append(f"{LIMIT}/cold/{latency:g}ms")
    h.console.print(
        f"  {LIMIT:<11} cold {latency:>5g} ms: {res.docs} docs, {res.failed} failed, "
        f"{res.elapsed_s:.1f}s, {res.docs_per_s:.2f} docs/s, first done "
        f"{res.first_done_s:.2f}s, last 5% {res.last5_s:.2f}s"
    )
    return row


def limit_fractions(h: Harness) -> list[dict[str, Any]]:
    """Each path's cold docs/s over the limit's at the same latency (same invocation)."""
    tails = {d["run"]: d for d in h.diagnostics}
    out = []
    for lim in h.limit_runs:
        for r in h.runs:
            if r.mode != "cold" or r.db_latency_ms != lim["db_latency_ms"]:
                continue
            d = tails.get(f"{r.path}/cold/{r.db_latency_ms:g}ms", {})
            out.append(
                {
                    "path": r.path,
                    "db_latency_ms": r.db_latency_ms,
                    "docs_per_s": r.docs_per_s,
                    "limit_docs_per_s": lim["docs_per_s"],
                    "fraction": round(r.docs_per_s / lim["docs_per_s"], 3)
                    if lim["docs_per_s"]
                    else 0.0,
                    "first_done_s": d.get("first_done_s"),
                    "last5_s": d.get("last5_s"),
                }
            )
    return out


async def sweep(h: Harness) -> None:
    for li, latency in enumerate(h.cfg.latencies_ms):
        h.proxy.delay_ms = latency
        async with contextlib.AsyncExitStack() as stack:
            envs = {p: await stack.enter_async_context(open_env(h, p)) for p in h.cfg.paths}
            for mi, mode in enumerate(MODES):
                if mode != "cold" and mode not in h.cfg.modes:
                    continue
                for path in _cold_order(h, li) if mode == "cold" else _order(h, li + mi):
                    if path == LIMIT:
                        h.limit_runs.append(await measure_limit(h, latency))
                        continue
                    env = envs[path]
                    if mode != "cold" and not env.cold_done:  # no cold run: untimed ingest
                        opts = BatchOptions(PROJECT, inputs=[h.staged.root], consume=not env.procs)
                        async with active(h, env):
                            await run_batch(env.rt, opts)
                        env.cold_done = True
                    if mode in h.cfg.modes:
                        h.runs.append(await measure(h, env, mode, latency))


def _git_commit() -> str:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, check=True
        )
        return out.stdout.decode().strip()
    return "unknown"


def config_json(h: Harness) -> dict[str, Any]:
    cfg = h.cfg
    return {
        "command": " ".join(["python -m benchmarks.run", *sys.argv[1:]]),
        "input": str(cfg.input.resolve()),
        "exclude": cfg.exclude,
        "docs_requested": cfg.docs,
        "docs_original": h.staged.originals,
        "docs_copies": h.staged.copies,
        "copies_by_format": h.staged.copies_by_format,
        "copy_method": "TXT/HTML/EML copies get a 'benchmark copy N' marker at the start of "
        "their text; PDF/DOCX/JSON/XML are never copied",
        "db_latency_ms": cfg.latencies_ms,
        "modes": cfg.modes,
        "concurrency": cfg.concurrency,
        "workers": cfg.workers,
        "workers_mode": "subprocess" if cfg.subprocess_workers else "in-process",
        "cpu_pool": cfg.cpu_pool,
        "cpu_workers": os.cpu_count(),
        "entity_backend": cfg.entity_backend,
        **(
            {
                "llm": {
                    "server": "benchmarks.llm_server.ChatServer per path (loopback)",
                    "latency_ms": cfg.llm_latency_ms,
                    "rpm_limit": cfg.llm_rpm,
                    "tpm_limit": cfg.llm_tpm,
                    "concurrency_per_process": cfg.llm_concurrency,
                }
            }
            if cfg.uses_llm
            else {}
        ),
        "redis_url": redact(cfg.redis_url),
        "database_url": redact(cfg.database_url),
        "proxy": "asyncio TCP proxy in a child process; client-to-server bytes delayed by "
        "db_latency_ms; round trips counted as direction changes per connection",
        "run_order": h.order,
        "diagnostics": h.diagnostics,
        "notes": [
            "redis_commands_per_doc is the server's total_commands_processed delta: it "
            "includes the harness's own progress polling (SMEMBERS every 50-200 ms) and "
            "any other client of that server",
            "redis_bytes_per_doc and raw_json_bytes_per_doc are 0 on the traditional path: "
            "it keeps no stage outputs in Redis",
            "diagnostics: per run, CPU seconds of the harness process (event loop: "
            "handoffs, codec, clients, in-loop stage code) and of its descendants "
            "(executor processes running PDF parsing and entity rules); stage_compute_s is "
            "CPU seconds inside stage code summed over documents (the loop thread's CPU in "
            "stage code plus the executor CPU of its offloaded calls; waiting for a free "
            "executor or for I/O is not included), so on several cores it can exceed "
            "elapsed_s; pipeline_overhead_cpu is (all CPU of the harness and its "
            "descendants - stage_compute_s) / stage_compute_s",
            "peak_rss_mb: peak of the summed RSS of the harness process and all its "
            "descendants (executor, workers, proxy), sampled every 200 ms",
            "an untimed warm-up (examples/documents, both paths) precedes the sweep, so "
            "imports and executor start-up are in no timed run",
        ],
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "git_commit": _git_commit(),
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


async def run_benchmark(
    cfg: BenchConfig, console: Console | None = None
) -> tuple[dict[str, Any], list[metrics.RunMetrics]]:
    """The whole sweep; returns (config, runs) and writes the JSON/plot when asked."""
    console = console or Console()
    admin_redis = redis_client(cfg.redis_url, Settings(_env_file=None))  # (a cluster too)
    executor = None
    try:
        await admin_redis.ping()
        with (
            tempfile.TemporaryDirectory(prefix="bench-inputs-") as tmp,
            DelayProxy(*dsn_address(cfg.database_url)) as proxy,
        ):
            staged = stage_inputs(cfg.input, cfg.exclude, cfg.docs, Path(tmp) / "docs")
            log_dir = Path(tmp) / "logs"
            log_dir.mkdir()
            executor = make_executor(_settings(cfg, "accelerated", cfg.database_url))
            h = Harness(cfg, proxy, admin_redis, executor, staged, console, log_dir)
            console.print(
                f"[bold]benchmark[/bold]: {staged.total} documents ({staged.copies} copies), "
                f"latencies {cfg.latencies_ms} ms, modes {cfg.modes}, "
                f"concurrency {cfg.concurrency}, workers {cfg.workers}"
            )
            if h.with_limit:
                cpu_ledger.install(asyncio.get_running_loop())
            await _warmup(h)
            await sweep(h)
            config = config_json(h)
            limit = (
                {"runs": h.limit_runs, "fractions": limit_fractions(h)} if h.with_limit else None
            )
    finally:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        await admin_redis.aclose()
    report.print_table(h.runs, console)
    if limit is not None:
        report.print_limit(limit, h.diagnostics, console)
    if cfg.json_path is not None:
        report.write_json(cfg.json_path, config, h.runs, limit)
    if cfg.plot_path is not None:
        report.plot(
            cfg.plot_path, h.runs, f"{staged.total} documents, concurrency {cfg.concurrency}"
        )
    return config, h.runs


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError("latencies must be >= 0")
    return values


def _paths(text: str) -> tuple[str, ...]:
    paths = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    bad = [p for p in paths if p not in PATHS]
    if bad or not paths:
        raise argparse.ArgumentTypeError(f"paths are {', '.join(PATHS)}; got {text!r}")
    return paths


def _modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    if not modes or any(m not in (*MODES, LIMIT) for m in modes):
        raise argparse.ArgumentTypeError(f"modes are a comma-separated subset of {(*MODES, LIMIT)}")
    return modes


def parse_args(argv: list[str] | None = None) -> BenchConfig:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    p.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="folder of documents")
    p.add_argument(
        "--exclude", action="append", help="input-relative glob to skip (default truth/*)"
    )
    p.add_argument("--docs", type=int, help="documents per run (default: all; copies beyond)")
    p.add_argument("--db-latency-ms", type=_floats, default=[0.0, 20.0], help="e.g. 0,20")
    p.add_argument(
        "--mode",
        type=_modes,
        default=list(DEFAULT_MODES),
        help="cold,warm,rerun,limit (default cold,warm; limit: the stages alone, beside "
        "the cold runs)",
    )
    p.add_argument("--entity-backend", default="rules", help="rules, llm, rules+llm ...")
    p.add_argument(
        "--llm-latency-ms", type=float, default=300.0, help="the local LLM server's reply delay"
    )
    p.add_argument("--llm-rpm", type=int, default=600, help="requests/min: server and limiter")
    p.add_argument("--llm-concurrency", type=int, default=8, help="LLM calls in flight")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--workers", type=int, default=1, help="K > 1: K worker processes")
    p.add_argument(
        "--worker-processes", action="store_true", help="subprocess workers even for K=1"
    )
    p.add_argument("--cpu-pool", choices=("process", "thread"), default="process")
    p.add_argument("--redis-url", default=DEFAULT_REDIS)
    p.add_argument("--database-url", default=DEFAULT_DATABASE)
    p.add_argument(
        "--paths",
        type=_paths,
        default=PATHS,
        help="accelerated,traditional (default both; one alone to iterate on it)",
    )
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up run")
    p.add_argument("--json", type=Path, dest="json_path")
    p.add_argument("--plot", type=Path, dest="plot_path")
    a = p.parse_args(argv)
    if a.workers < 1 or a.concurrency < 1:
        p.error("--workers and --concurrency must be >= 1")
    if a.llm_rpm < 1 or a.llm_latency_ms < 0 or a.llm_concurrency < 1:
        p.error("--llm-rpm and --llm-concurrency must be >= 1, --llm-latency-ms >= 0")
    return BenchConfig(
        input=a.input,
        exclude=a.exclude if a.exclude is not None else ["truth/*"],
        docs=a.docs,
        latencies_ms=a.db_latency_ms,
        modes=a.mode,
        concurrency=a.concurrency,
        workers=a.workers,
        worker_processes=a.worker_processes,
        cpu_pool=a.cpu_pool,
        redis_url=a.redis_url,
        database_url=a.database_url,
        warmup=not a.no_warmup,
        json_path=a.json_path,
        plot_path=a.plot_path,
        entity_backend=a.entity_backend,
        llm_latency_ms=a.llm_latency_ms,
        llm_rpm=a.llm_rpm,
        llm_concurrency=a.llm_concurrency,
        paths=a.paths,
    )


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    tune_gc()  # as the batch command and the worker do, for both paths alike
    asyncio.run(run_benchmark(cfg))


if __name__ == "__main__":
    main()
