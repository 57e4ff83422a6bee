"""``python -m benchmarks.cluster``: documents per second on a Redis Cluster against one Redis.

One invocation, one machine, the same staged documents, executor, concurrency and
Postgres; only the Redis differs:

* ``single``: one Redis with its default layout (one stream shard), what a user of
  one Redis gets;
* ``single-sharded``: the same Redis with the cluster's shard count, which isolates
  the cost of the sharded layout (more readers, more round trips) from the cluster's;
* ``cluster``: a three-master Redis Cluster, ``STREAM_SHARDS`` at its default.

Each run is a cold ingest (empty caches, empty schema) under a fresh key prefix and
schema, removed afterwards; the kinds take turns in a rotating order over ``--rounds``
so that machine drift hits all of them. Without ``--cluster-url`` / ``--redis-url``
private servers are started on loopback for the run (``benchmarks/redis_servers.py``;
no persistence on either) and stopped after, so that the Redis
commands per document counted (INFO of every primary) are the run's own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import time
import uuid
from concurrent.futures import Executor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg

from accelerated.batch_run import BatchOptions, run_batch
from accelerated.cluster import DEFAULT_CLUSTER_SHARDS, is_cluster
from accelerated.connect import redis_client
from accelerated.runtime import build_runtime, make_executor, tune_gc
from accelerated.settings import Settings
from benchmarks.inputs import stage_inputs
from benchmarks.metrics import redis_commands
from benchmarks.redis_servers import private_redis
from persistence.pg import create_pool
from persistence.schema import migrate

REPO = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = REPO.parent / "shared" / "corpus"
WARMUP_INPUT = REPO / "examples" / "documents"
KINDS = ("single", "single-sharded", "cluster")


@dataclass
class Run:
    kind: str
    round: int
    shards: int
    docs: int
    failed: int
    elapsed_s: float
    redis_cmds_per_doc: float
    loop_cpu_ms_per_doc: float  # this process's CPU (the event loop: not stage code)

    @property
    def docs_per_s(self) -> float:
        return self.docs / self.elapsed_s if self.elapsed_s else 0.0


async def _drop(settings: Settings, database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{settings.pg_schema}" CASCADE')
    finally:
        await conn.close()
    assert settings.redis_url is not None
    client = redis_client(settings.redis_url, settings)
    try:
        keys = [k async for k in client.scan_iter(match=f"{settings.redis_prefix}:*", count=1000)]
        for i in range(0, len(keys), 500):
            await client.delete(*keys[i : i + 500])
    finally:
        await client.aclose()


async def one_run(
    args: argparse.Namespace,
    kind: str,
    url: str,
    inputs: Path,
    executor: Executor | None,
    rnd: int,
) -> Run:
    tag = uuid.uuid4().hex[:10]
    settings = Settings.from_dsn(
        url,
        args.database_url,
        redis_prefix=f"benchc-{tag}",
        pg_schema=f"benchc_{tag}",
        concurrency=args.concurrency,
        cpu_pool=args.cpu_pool,
        stream_shards=DEFAULT_CLUSTER_SHARDS if kind == "single-sharded" else None,
        _env_file=None,
    )
    client = redis_client(url, settings)
    pool = await create_pool(settings)
    try:
        await migrate(pool, settings.pg_schema)
        rt = build_runtime(settings, pool, client, executor=executor)
        assert is_cluster(client) == (kind == "cluster")
        c0, cpu0, t0 = await redis_commands(client), time.process_time(), time.perf_counter()
        report = await run_batch(rt, BatchOptions(project="bench", inputs=[inputs]))
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        n = max(1, report.total)
        cmds = (await redis_commands(client) - c0) / n
        return Run(
            kind,
            rnd,
            rt.keys.shards,
            report.total,
            len(report.failed),
            elapsed,
            round(cmds, 1),
            round(1000 * cpu / n, 1),
        )
    finally:
        await pool.close()
        await client.aclose()
        await _drop(settings, args.database_url)


async def amain(args: argparse.Namespace) -> list[Run]:
    with contextlib.ExitStack() as stack:
        single_url = args.redis_url or stack.enter_context(private_redis("single"))
        cluster_url = args.cluster_url or stack.enter_context(private_redis("cluster"))
        urls = {"single": single_url, "single-sharded": single_url, "cluster": cluster_url}
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-in-")))
        staged = stage_inputs(args.input, ["truth/*"], args.docs, tmp)
        executor = make_executor(
            Settings(cpu_pool=args.cpu_pool, _env_file=None)  # type: ignore[call-arg]
        )
        try:
            for kind in args.kinds:  # untimed: imports, pool processes, first connections
                await one_run(args, kind, urls[kind], WARMUP_INPUT, executor, -1)
            runs: list[Run] = []
            for rnd in range(args.rounds):
                shift = rnd % len(args.kinds)
                for kind in args.kinds[shift:] + args.kinds[:shift]:
                    run = await one_run(args, kind, urls[kind], staged.root, executor, rnd)
                    print(
                        f"round {rnd} {kind:<15} shards={run.shards:<2} {run.docs} docs "
                        f"({run.failed} failed) {run.elapsed_s:6.1f}s {run.docs_per_s:6.2f} docs/s "
                        f"{run.redis_cmds_per_doc:6.1f} Redis commands/doc "
                        f"{run.loop_cpu_ms_per_doc:5.1f} ms loop CPU/doc",
                        flush=True,
                    )
                    runs.append(run)
        finally:
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)
    return runs


def summary(runs: list[Run]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in KINDS:
        rates = [round(r.docs_per_s, 3) for r in runs if r.kind == kind]
        cmds = [r.redis_cmds_per_doc for r in runs if r.kind == kind]
        cpu = [r.loop_cpu_ms_per_doc for r in runs if r.kind == kind]
        if rates:
            out[kind] = {
                "median_docs_per_s": round(statistics.median(rates), 2),
                "runs": rates,
                "redis_cmds_per_doc": statistics.median(cmds),
                "loop_cpu_ms_per_doc": statistics.median(cpu),
            }
    base = out.get("single", {}).get("median_docs_per_s")
    for v in out.values():
        if base:
            v["vs_single"] = round(v["median_docs_per_s"] / base, 3)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cluster", description=__doc__)
    p.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    p.add_argument("--docs", type=int, default=100)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--kinds", default=",".join(KINDS), help="a comma-separated subset")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--cpu-pool", choices=("process", "thread"), default="process")
    p.add_argument("--redis-url", help="redis://...; default: start a private one")
    p.add_argument("--cluster-url", help="redis+cluster://...; default: start a private one")
    p.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--json", type=Path, dest="json_path")
    args = p.parse_args(argv)
    args.kinds = [k for k in args.kinds.split(",") if k]
    if not set(args.kinds) <= set(KINDS):
        p.error(f"--kinds is a subset of {','.join(KINDS)}")
    tune_gc()
    runs = asyncio.run(amain(args))
    result = {"summary": summary(runs), "runs": [asdict(r) for r in runs]}
    print(json.dumps(result["summary"], indent=1))
    if args.json_path is not None:
        args.json_path.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
