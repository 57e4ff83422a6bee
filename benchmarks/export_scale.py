"""``python -m benchmarks.export_scale``: export rows/s and peak memory at a million edges.

Ingests a corpus sample into a schema of its own (``bench_export_<hex>``), multiplies
the rows by ``--factor`` (copies with derived ids: every node table and the
stored relationships, edges re-pointed at the copied nodes, so the graph stays whole;
the ``relationships`` view derives the other edges from the copies), then
runs ``python -m accelerated.export`` in each format as a child process and reports its
rows/s and peak RSS (VmHWM). The schema and the run's Redis keys are dropped at the end.
Needs REDIS_URL and DATABASE_URL; CORPUS_DIR as for the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import redis.asyncio as aioredis

from accelerated.batch_run import BatchOptions, run_batch
from accelerated.runtime import build_runtime
from accelerated.settings import Settings
from benchmarks.sample import sample_corpus
from persistence.schema import migrate

_PEAK = (
    "import runpy, sys; sys.argv = sys.argv[1:]\n"
    "try:\n    runpy.run_module('accelerated.export', run_name='__main__')\n"
    "finally:\n"
    "    hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')]\n"
    "    print('peak_rss_kb', hwm[0].split()[1])\n"
)
_ID = "md5(id::text || ':' || n)::uuid"


def _remap(col: str) -> str:
    return f"md5({col}::text || ':' || n)::uuid"


async def _multiply(conn: asyncpg.Connection, factor: int) -> None:
    """Copies 1..factor-1 of every row, ids (and the ids they point at) derived per copy."""
    s = "generate_series(1, $1 - 1) AS n"
    await conn.execute(
        f"INSERT INTO documents (id, project, source, source_key, sha256, format, size_bytes,"
        f" status, error, category, page_count, generation) SELECT {_ID}, project, source,"
        f" source_key || '#' || n, sha256, format, size_bytes, status, error, category,"
        f" page_count, generation FROM documents, {s}",
        factor,
    )
    await conn.execute(
        f"INSERT INTO chunks (id, document_id, project, idx, text, start_char, end_char,"
        f" page_start, page_end) SELECT {_ID}, {_remap('document_id')}, project, idx, '',"
        f" start_char, end_char, page_start, page_end FROM chunks, {s}",
        factor,
    )
    await conn.execute(
        f"INSERT INTO entity_mentions (id, document_id, chunk_id, project, type, text,"
        f" normalized, start_char, end_char, canonical_id, role) SELECT {_ID},"
        f" {_remap('document_id')}, {_remap('chunk_id')}, project, type, text, normalized,"
        f" start_char, end_char, canonical_id, role FROM entity_mentions, {s}",
        factor,
    )
    # Canonical entities are shared by a project: the copies point at the same ones. Only
    # the stored edges (CO_OCCURS_WITH) are copied: the relationships view derives the
    # others from the copied chunks and mentions.
    await conn.execute(
        f"INSERT INTO stored_relationships (id, project, document_id, type, source_type, source_id,"
        f" target_type, target_id, weight) SELECT {_ID}, project, {_remap('document_id')},"
        f" type, source_type,"
        f" CASE WHEN source_type = 'CANONICAL' THEN source_id ELSE {_remap('source_id')} END,"
        f" target_type,"
        f" CASE WHEN target_type = 'CANONICAL' THEN target_id ELSE {_remap('target_id')} END,"
        f" weight FROM stored_relationships, {s}",
        factor,
    )
    await conn.execute("ANALYZE")


async def main(args: argparse.Namespace) -> None:
    tag = uuid.uuid4().hex[:10]
    settings = Settings(
        redis_prefix=f"bench-export-{tag}",
        pg_schema=f"bench_export_{tag}",
        cpu_pool="thread",
        ocr_backend="none",  # the sample's scans are not what this measures
        _env_file=None,  # type: ignore[call-arg]
    )
    assert settings.redis_url and settings.database_url
    admin = await asyncpg.connect(settings.database_url)
    await admin.execute(f'CREATE SCHEMA "{settings.pg_schema}"')
    pool = await asyncpg.create_pool(
        settings.database_url, server_settings={"search_path": settings.pg_schema}
    )
    redis = aioredis.Redis.from_url(settings.redis_url)
    tmp = Path(tempfile.mkdtemp(prefix="export-scale-"))
    results: dict[str, object] = {}
    try:
        await migrate(pool, settings.pg_schema)
        corpus = Path(os.environ.get("CORPUS_DIR", "/work/shared/corpus"))
        sample_corpus(corpus, tmp / "in", n=args.documents)
        await run_batch(build_runtime(settings, pool, redis), BatchOptions("x", [tmp / "in"]))
        base = await pool.fetchval("SELECT count(*) FROM relationships")
        factor = max(1, -(-args.relationships // base))
        async with pool.acquire() as conn:
            await _multiply(conn, factor)
        counts = {
            t: await pool.fetchval(f"SELECT count(*) FROM {t}")
            for t in (
                "documents",
                "chunks",
                "entity_mentions",
                "canonical_entities",
                "stored_relationships",
                "relationships",
            )
        }
        results["rows"] = counts
        results["factor"] = factor
        env = dict(os.environ, REDIS_PREFIX=settings.redis_prefix, PG_SCHEMA=settings.pg_schema)
        for fmt in ("neo4j", "graphml", "jsonl"):
            t0 = time.perf_counter()
            cmd = [sys.executable, "-c", _PEAK, "export", "--project", "x", "--format", fmt]
            cmd += ["--out", str(tmp / fmt)]
            out = await asyncio.to_thread(
                subprocess.run, cmd, env=env, capture_output=True, text=True, check=True
            )
            wall = time.perf_counter() - t0
            rows = sum(n for t, n in counts.items() if t != "stored_relationships")
            peak = int(out.stdout.rsplit("peak_rss_kb", 1)[1].split()[0])
            size = sum(f.stat().st_size for f in (tmp / fmt).iterdir())
            results[fmt] = {
                "wall_s": round(wall, 2),
                "rows_per_s": round(rows / wall),
                "peak_rss_mb": round(peak / 1024, 1),
                "output_mb": round(size / 1e6, 1),
            }
            shutil.rmtree(tmp / fmt)
        print(json.dumps(results, indent=1))
    finally:
        await pool.close()
        await admin.execute(f'DROP SCHEMA "{settings.pg_schema}" CASCADE')
        await admin.close()
        keys = [k async for k in redis.scan_iter(match=f"{settings.redis_prefix}:*", count=1000)]
        for i in range(0, len(keys), 500):
            await redis.delete(*keys[i : i + 500])
        await redis.aclose()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--documents", type=int, default=40)
    p.add_argument("--relationships", type=int, default=1_000_000)
    asyncio.run(main(p.parse_args()))
