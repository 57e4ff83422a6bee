"""Write-behind micro-benchmark: rows/s from intents on the Redis stream to committed rows.

    python -m benchmarks.writebehind --rows 1000000 --json wb.json

Next to it, in the same run and on the same table shapes: raw ``copy_records_to_table``
(the ceiling: what the server ingests with no upsert, no de-duplication, no Redis) and
``executemany`` (the row-at-a-time baseline the traditional pipeline resembled). The
benchmark uses its own Redis key prefix and Postgres schema and removes both at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import redis.asyncio as aioredis
from rich.console import Console
from rich.table import Table

from accelerated import ids, state
from accelerated.cluster import RedisClient
from accelerated.codec import Codec
from accelerated.keys import Keys
from accelerated.settings import Settings
from persistence import rows
from persistence.intents import Intent, queue_intent
from persistence.schema import migrate
from persistence.writebehind import WriteBehindWriter

PROJECT = "bench"
ENTITY_TYPES = ("PARTY", "COURT", "CASE_CITATION", "DATE", "MONEY", "ORGANIZATION")
WORDS = ("Acme", "Holdings", "Smith", "Jones", "Court", "Appeals", "Ninth", "Circuit", "Motion")


@dataclass
class Result:
    name: str
    rows: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def _doc_intent(rng: random.Random, n: int, canon_pool: list[tuple[str, str, str]]) -> Intent:
    """One document's rows: ~1 doc, n/100 chunks, 45% mentions, 50% edges, a few canonicals."""
    doc = ids.document_id(PROJECT, f"doc-{uuid.uuid4().hex}")
    d = str(doc)
    n_chunks = max(1, n // 100)
    n_mentions = n * 45 // 100
    chunks = [
        (
            str(ids.chunk_id(doc, i)),
            d,
            PROJECT,
            i,
            "lorem ipsum " * 80,
            i * 900,
            i * 900 + 960,
            1,
            1,
        )
        for i in range(n_chunks)
    ]
    mentions = []
    canon: dict[str, tuple[Any, ...]] = {}
    cast = rng.sample(canon_pool, 30)  # a filing names a few dozen entities, many times
    for i in range(n_mentions):
        etype, key, name = cast[i % len(cast)]
        cid = str(ids.canonical_id(PROJECT, etype, key))
        canon[cid] = (cid, PROJECT, etype, key, name)
        start = i * 37
        mentions.append(
            (
                str(ids.mention_id(doc, etype, start, start + 12)),
                d,
                chunks[i % n_chunks][0],
                PROJECT,
                etype,
                name,
                key,
                start,
                start + 12,
                cid,
            )
        )
    edges = [
        (str(uuid.uuid4()), PROJECT, d, "MENTIONS", "CHUNK", m[2], "MENTION", m[0], 1.0)
        for m in mentions
    ]
    edges += [
        (str(uuid.uuid4()), PROJECT, d, "REFERS_TO", "MENTION", m[0], "CANONICAL", m[9], 1.0)
        for m in mentions[: max(0, n - 1 - n_chunks - len(mentions) - len(canon) - len(edges))]
    ]
    document = (
        d, PROJECT, f"/in/{d}.pdf", f"{d}.pdf", "0" * 64, "pdf", 123_456, state.DONE, None,
        "opinion", "text_layer", 3, "[]", "[]", "{}", "raw " * 500, "text " * 500, 1,
    )  # fmt: skip
    return Intent(
        intent_id=uuid.uuid4(),
        document_id=doc,
        project=PROJECT,
        generation=1,
        status=state.DONE,
        tables={
            "documents": [document],
            "chunks": list(chunks),
            "entity_mentions": list(mentions),
            "canonical_entities": list(canon.values()),
            "stored_relationships": list(edges),
        },
    )


def make_intents(total_rows: int, rows_per_doc: int, seed: int = 7) -> list[Intent]:
    rng = random.Random(seed)
    canon_pool = [
        (t, f"{w.lower()} {i}", f"{w} {i}") for t in ENTITY_TYPES for w in WORDS for i in range(40)
    ]
    out: list[Intent] = []
    made = 0
    while made < total_rows:
        it = _doc_intent(rng, min(rows_per_doc, max(10, total_rows - made)), canon_pool)
        out.append(it)
        made += it.row_count()
    return out


async def bench_writer(
    redis: RedisClient,
    pool: asyncpg.Pool,
    keys: Keys,
    codec: Codec,
    settings: Settings,
    intents: list[Intent],
    writers: int,
) -> Result:
    for i in range(0, len(intents), 200):
        async with redis.pipeline(transaction=False) as pipe:
            for it in intents[i : i + 200]:
                queue_intent(pipe, keys, codec, it)
            await pipe.execute()
    ws = [
        WriteBehindWriter(redis, pool, keys, codec, settings, consumer=f"bench-{n}")
        for n in range(writers)
    ]
    t0 = time.perf_counter()
    await asyncio.gather(*(w.drain() for w in ws))
    seconds = time.perf_counter() - t0
    applied = sum(it.row_count() for it in intents)
    return Result(f"write-behind writer ({writers} task{'s' * (writers > 1)})", applied, seconds)


async def _fresh_table(pool: asyncpg.Pool, schema: str, table: str, like: str) -> None:
    await pool.execute(f'DROP TABLE IF EXISTS "{schema}".{table}')
    await pool.execute(f'CREATE TABLE "{schema}".{table} (LIKE "{schema}".{like} INCLUDING ALL)')


async def bench_copy(pool: asyncpg.Pool, schema: str, intents: list[Intent]) -> Result:
    """The same mention and edge rows, straight COPY into fresh tables of the same shape."""
    total = 0
    seconds = 0.0
    for table in ("entity_mentions", "stored_relationships"):
        data = [r for it in intents for r in it.tables[table]]
        await _fresh_table(pool, schema, f"copy_{table}", table)
        t0 = time.perf_counter()
        for i in range(0, len(data), 50_000):
            await pool.copy_records_to_table(
                f"copy_{table}", records=data[i : i + 50_000], columns=rows.COLUMNS[table],
                schema_name=schema,
            )  # fmt: skip
        seconds += time.perf_counter() - t0
        total += len(data)
    return Result("raw copy_records_to_table", total, seconds)


async def bench_executemany(
    pool: asyncpg.Pool, schema: str, intents: list[Intent], limit: int
) -> Result:
    """Parameterised INSERT per row (pipelined by asyncpg), on fewer rows: it is slow."""
    data = [r for it in intents for r in it.tables["entity_mentions"]][:limit]
    await _fresh_table(pool, schema, "em_entity_mentions", "entity_mentions")
    cols = rows.COLUMNS["entity_mentions"]
    sql = (
        f'INSERT INTO "{schema}".em_entity_mentions ({", ".join(cols)}) '
        f"VALUES ({', '.join(f'${i + 1}' for i in range(len(cols)))})"
    )
    t0 = time.perf_counter()
    async with pool.acquire() as conn, conn.transaction():
        await conn.executemany(sql, data)
    return Result("executemany (INSERT per row)", len(data), time.perf_counter() - t0)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:10]
    schema = f"bench_wb_{tag}"
    settings = Settings.from_dsn(
        args.redis_url,
        args.database_url,
        redis_prefix=f"bench-wb-{tag}",
        pg_schema=schema,
        wb_batch_rows=args.batch_rows,
        _env_file=None,
    )
    keys, codec = Keys(settings.redis_prefix), Codec()
    redis = aioredis.Redis.from_url(args.redis_url)
    pool = await asyncpg.create_pool(
        args.database_url, min_size=1, max_size=4, server_settings={"search_path": schema}
    )
    console = Console()
    try:
        await migrate(pool, schema)
        console.print(f"building {args.rows:,} rows of intents ...")
        intents = make_intents(args.rows, args.rows_per_doc)
        # The writer's process never holds the producer's million rows: keep them out of
        # the cyclic GC's way, or every full collection walks them and skews the result.
        gc.collect()
        gc.freeze()
        wb = await bench_writer(redis, pool, keys, codec, settings, intents, args.writers)
        committed = sum(
            [await pool.fetchval(f"SELECT count(*) FROM {t}") for t in rows.TABLE_ORDER]
        )
        copy = await bench_copy(pool, schema, intents)
        em = await bench_executemany(pool, schema, intents, args.executemany_rows)
    finally:
        await pool.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await pool.close()
        stale = [k async for k in redis.scan_iter(match=keys.pattern(), count=1000)]
        if stale:
            await redis.delete(*stale)
        await redis.aclose()

    table = Table(title=f"write-behind: {wb.rows:,} rows in {len(intents):,} intents")
    for col in ("path", "rows", "seconds", "rows/s"):
        table.add_column(col, justify="right" if col != "path" else "left")
    for r in (wb, copy, em):
        table.add_row(r.name, f"{r.rows:,}", f"{r.seconds:.2f}", f"{r.rate:,.0f}")
    console.print(table)
    console.print(
        f"committed rows after de-duplication: {committed:,} "
        f"(canonical entities are shared across documents)"
    )
    return {
        "writebehind_rows_per_s": round(wb.rate),
        "copy_rows_per_s": round(copy.rate),
        "executemany_rows_per_s": round(em.rate),
        "executemany_rows": em.rows,
        "executemany_note": "measured on executemany_rows rows; the rate extrapolates",
        "rows": wb.rows,
        "intents": len(intents),
        "committed_rows": committed,
        "writebehind_seconds": round(wb.seconds, 3),
        "writers": args.writers,
        "wb_batch_rows": args.batch_rows,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.writebehind", description=__doc__)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--rows-per-doc", type=int, default=1_000)
    p.add_argument("--batch-rows", type=int, default=Settings.model_fields["wb_batch_rows"].default)
    p.add_argument("--writers", type=int, default=1, help="writer tasks (consumers) in parallel")
    p.add_argument("--executemany-rows", type=int, default=20_000)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = p.parse_args(argv)
    if args.rows < 1:
        p.error("--rows must be positive")
    result = asyncio.run(main_async(args))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
