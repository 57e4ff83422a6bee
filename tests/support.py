"""Helpers shared by the end-to-end tests (not fixtures: plain functions)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import asyncpg
import redis.asyncio as aioredis
from pydantic import SecretStr

from accelerated.aio import connection_class
from accelerated.cluster import RedisClient, cluster_client, is_cluster_url, parse_cluster_url
from accelerated.codec import MAGIC, Codec
from accelerated.errors import CodecError
from accelerated.ids import relationship_id
from accelerated.models import Relationship, Resolved
from accelerated.runtime import Runtime, build_runtime
from accelerated.settings import Settings
from benchmarks.llm_server import ChatServer
from benchmarks.sample import place_file as place_file
from benchmarks.sample import sample_corpus as sample_corpus

# Bookkeeping columns that legitimately differ between runs (not content).
VOLATILE = {"created_at", "updated_at", "generation", "applied_at"}
CONTENT_TABLES = (
    "documents",
    "chunks",
    "entity_mentions",
    "canonical_entities",
    "stored_relationships",
    "relationships",  # the view: stored edges and the ones derived from chunks and mentions
)


def stage1_derived_edges(project: str, doc: Resolved) -> list[Relationship]:
    """The HAS_CHUNK, MENTIONS and REFERS_TO edges relate (stage version 1) emitted and
    stored, kept as it was: the reference the ``relationships`` view must reproduce."""
    doc_id = doc.document_id
    edges: dict[uuid.UUID, Relationship] = {}

    def add(rtype: str, stype: str, sid: uuid.UUID, ttype: str, tid: uuid.UUID) -> None:
        rid = relationship_id(rtype, sid, tid, None)
        edges[rid] = Relationship(
            id=rid,
            project=project,
            document_id=doc_id,
            type=rtype,
            source_type=stype,
            source_id=sid,
            target_type=ttype,
            target_id=tid,
            weight=1.0,
        )

    for chunk in set(doc.chunk_ids):
        add("HAS_CHUNK", "DOCUMENT", doc_id, "CHUNK", chunk)
    for m in doc.mentions:
        add("MENTIONS", "CHUNK", m.chunk_id, "MENTION", m.id)
        if m.canonical_id is not None:
            add("REFERS_TO", "MENTION", m.id, "CANONICAL", m.canonical_id)
    return sorted(edges.values(), key=lambda r: (r.type, r.source_id.int, r.target_id.int))


def make_runtime(
    settings: Settings, pool: asyncpg.Pool, redis: RedisClient | None, *, accelerated: bool
) -> Runtime:
    s = settings.model_copy(update={"enable_redis_acceleration": accelerated, "cpu_pool": "thread"})
    return build_runtime(s, pool, redis)


async def dump(pool: asyncpg.Pool) -> dict[str, list[tuple[Any, ...]]]:
    """Every content row of every table, bookkeeping columns left out, in id order."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    async with pool.acquire() as conn:
        for table in CONTENT_TABLES:
            cols = [
                r["column_name"]
                for r in await conn.fetch(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND table_name = $1 "
                    "ORDER BY ordinal_position",
                    table,
                )
                if r["column_name"] not in VOLATILE
            ]
            rows = await conn.fetch(f"SELECT {', '.join(cols)} FROM {table} ORDER BY id")
            out[table] = [tuple(r) for r in rows]
    return out


@contextlib.asynccontextmanager
async def side_store(
    settings: Settings, database_url: str, suffix: str
) -> AsyncIterator[tuple[Settings, asyncpg.Pool, RedisClient]]:
    """A second schema and key prefix beside the test's own, removed afterwards."""
    schema, prefix = f"{settings.pg_schema}_{suffix}", f"{settings.redis_prefix}-{suffix}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    pool = await asyncpg.create_pool(
        database_url, min_size=1, max_size=8, server_settings={"search_path": schema}
    )
    redis = redis_from_url(str(settings.redis_url))
    assert pool is not None
    try:
        yield settings.model_copy(update={"pg_schema": schema, "redis_prefix": prefix}), pool, redis
    finally:
        await pool.close()
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()
        stale = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=1000)]
        if stale:
            await redis.delete(*stale)
        await redis.aclose()


def subprocess_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        REDIS_URL=str(settings.redis_url),
        DATABASE_URL=str(settings.database_url),
        REDIS_PREFIX=settings.redis_prefix,
        PG_SCHEMA=settings.pg_schema,
        CLAIM_IDLE_MS=str(settings.claim_idle_ms),
        OCR_BACKEND=settings.ocr_backend,  # the fixture's "none" unless a test opts in
        CPU_POOL="thread",
        PYTHONUNBUFFERED="1",
    )
    return env


PYTHON = sys.executable
ROOT: Final = Path(__file__).resolve().parents[1]


def spawn(args: list[str], settings: Settings, **env: str) -> subprocess.Popen[bytes]:
    """``python -m <args>`` in the checkout, on the test's Redis prefix and schema
    (``subprocess_env``) plus ``env``; stdout and stderr together, piped."""
    return subprocess.Popen(
        [PYTHON, "-m", *args],
        cwd=ROOT,
        env={**subprocess_env(settings), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def stop_output(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 60
) -> str:
    """Send ``sig`` if the process still runs and return all it wrote; killed if it has
    not ended within ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
    return out.decode(errors="replace")


@contextlib.asynccontextmanager
async def reference_rows(
    settings: Settings, database_url: str, inputs: Path, project: str, suffix: str = "ref"
) -> AsyncIterator[dict[str, list[tuple[Any, ...]]]]:
    """Rows of one uninterrupted in-process run of ``inputs``, in a schema and key
    prefix of their own beside the test's (``side_store``)."""
    from accelerated.batch_run import BatchOptions, run_batch
    from persistence.schema import migrate

    async with side_store(settings, database_url, suffix) as (s, pool, redis):
        await migrate(pool, s.pg_schema)
        report = await run_batch(
            make_runtime(s, pool, redis, accelerated=True), BatchOptions(project, [inputs])
        )
        assert report.done > 0
        yield await dump(pool)


def copy_inputs(dest: Path, corpus: Path | None = None, opinions: int = 0) -> Path:
    """The bundled examples copied into ``dest`` (made), plus ``opinions`` corpus opinion
    texts: small, quick documents for runs that a test interrupts."""
    from tests.conftest import EXAMPLES

    dest.mkdir(parents=True)
    for p in sorted(EXAMPLES.iterdir()):
        if p.is_file():
            shutil.copy(p, dest / p.name)
    if opinions:
        assert corpus is not None
        for p in sorted((corpus / "courtlistener" / "opinions_txt").glob("*.txt"))[:opinions]:
            shutil.copy(p, dest / p.name)
    return dest


class GatedClean:
    """A ``clean`` stage that holds every document until ``gate`` is set: a run frozen
    mid-way, so what Redis and Postgres hold can be compared exactly. ``held``: the
    documents that have entered it."""

    def __init__(self, gate: asyncio.Event) -> None:
        self.gate = gate
        self.held = 0

    async def __call__(self, doc: Any, ctx: Any) -> Any:
        from accelerated.stages import clean

        self.held += 1
        await self.gate.wait()
        return await clean.run(doc, ctx)


def gated_clean(gate: asyncio.Event) -> GatedClean:
    return GatedClean(gate)


def slow_clean(delay_s: float = 0.3) -> Any:
    """A ``clean`` stage that waits first, so documents are in flight when a fault hits."""
    from accelerated.stages import clean

    async def slow(doc: Any, ctx: Any) -> Any:
        await asyncio.sleep(delay_s)
        return await clean.run(doc, ctx)

    return slow


def redis_from_url(url: str, **kwargs: Any) -> RedisClient:
    """A test's own client, with the pipeline's cancellation-safe connections
    (``accelerated.aio``): a test that cancels a batch must see it cancelled. A
    ``redis+cluster://`` URL gives the pipeline's cluster client."""
    if is_cluster_url(url):
        timeout = float(kwargs.get("socket_timeout") or 10.0)
        return cluster_client(url, socket_timeout=timeout, pool_size=512)
    return aioredis.Redis.from_url(url, connection_class=connection_class(url), **kwargs)


def sync_redis_from_url(url: str) -> Any:
    """A blocking client (fixture clean-up), a cluster client for a cluster URL."""
    import redis as sync_redis
    from redis.cluster import ClusterNode, RedisCluster

    if is_cluster_url(url):
        nodes = [ClusterNode(h, p) for h, p in parse_cluster_url(url).nodes]  # type: ignore[no-untyped-call]
        return RedisCluster(startup_nodes=nodes)
    return sync_redis.Redis.from_url(url)


async def outstanding_count(redis: RedisClient, keys: Any, project: str) -> int:
    """The project's outstanding documents, over every shard."""
    return sum([int(await redis.scard(k)) for k in keys.outstanding_all(project)])


async def failed_errors(redis: RedisClient, keys: Any, project: str) -> dict[bytes, bytes]:
    """The project's failed hash, merged over every shard."""
    out: dict[bytes, bytes] = {}
    for n in range(keys.shards):
        out.update(await redis.hgetall(keys.failed(project, n)))  # type: ignore[arg-type]
    return out


async def stream_length(redis: RedisClient, keys: Any, stage: str) -> int:
    """Entries in a stage's streams, over every shard."""
    return sum([int(await redis.xlen(s)) for s in keys.streams(stage)])


async def wb_length(redis: RedisClient, keys: Any) -> int:
    return sum([int(await redis.xlen(s)) for s in keys.wb_streams()])


def strings(value: Any) -> list[str]:
    """Every string in a Redis reply, compressed values decompressed (for secret greps)."""
    if isinstance(value, bytes):
        if value[:2] == MAGIC:
            with contextlib.suppress(CodecError):
                value = Codec().decompress(value)
        return [value.decode("utf-8", "replace")]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in strings(k) + strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in strings(v)]
    return [str(value)]


async def redis_text(redis: aioredis.Redis, prefix: str) -> str:
    """Every key and value under ``prefix``, as text."""
    out: list[str] = []
    async for key in redis.scan_iter(f"{prefix}*"):
        raw_kind = await redis.type(key)
        kind = raw_kind.decode() if isinstance(raw_kind, bytes) else str(raw_kind)
        if kind == "string":
            out += strings(await redis.get(key))
        elif kind == "hash":
            out += strings(await redis.hgetall(key))
        elif kind == "stream":
            out += strings(await redis.xrange(key))
        elif kind == "zset":
            out += strings(await redis.zrange(key, 0, -1, withscores=True))
        elif kind == "list":
            out += strings(await redis.lrange(key, 0, -1))
        elif kind == "set":
            out += strings(list(await redis.smembers(key)))
        out.append(key.decode())
    return "\n".join(out)


# The API key the LLM tests use: they check it is written nowhere (logs, output, Redis,
# the database), so it carries a marker ("SECRET") they look for too.
LLM_KEY: Final = "sk-test-SECRET-7f3a9c"
LLM_PRICES: Final = {"test-model": (1.0, 2.0)}  # USD per million tokens, in and out


def llm_settings(settings: Settings, chat_server: ChatServer, **kw: Any) -> Settings:
    """``settings`` pointed at the local chat server (model ``test-model``, key
    ``LLM_KEY``, prices ``LLM_PRICES``), with ``kw`` on top."""
    return settings.model_copy(
        update={
            "openai_base_url": chat_server.base_url,
            "openai_api_key": SecretStr(LLM_KEY),
            "llm_model": "test-model",
            "llm_prices": dict(LLM_PRICES),
            **kw,
        }
    )


def one_example(tmp_path: Path) -> Path:
    """A folder holding one plain-text example document (a run of one document)."""
    from tests.conftest import EXAMPLES

    src = tmp_path / "in"
    src.mkdir()
    order = next(p for p in sorted(EXAMPLES.iterdir()) if p.suffix == ".txt")
    (src / order.name).write_bytes(order.read_bytes())
    return src
