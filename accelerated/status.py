"""``python -m accelerated.status --project P [--watch] [--json]``: what a pipeline is doing.

Everything shown is read from Redis and Postgres, never from a worker's memory, so it
works from any host that can reach them and tells the same story whichever worker
(or none) is running:

* documents by status: Postgres ``documents`` (the durable truth), and the project's
  outstanding set in Redis (documents not yet terminal);
* per stage: stream length (XLEN), messages delivered and not yet acked (XPENDING),
  messages not yet delivered to the group (``lag`` of XINFO GROUPS), dead letters
  (XLEN of the stage's DLQ), each summed over the stage's stream shards. Stage streams
  are shared by every project on this prefix, so these are not per project;
* the write-behind backlog (XLEN of the writer's streams) and the live consumers (their
  heartbeat keys, found with SCAN: of every primary, on a cluster);
* throughput: documents of the project that reached a terminal status in the last
  minute (``documents.updated_at``), and the ETA of the rest at that rate.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from redis.utils import str_if_bytes

from accelerated import cli, state
from accelerated.aio import wait_for
from accelerated.boundary import map_driver_errors
from accelerated.cli import EXIT_OK, CliContext, setup_output
from accelerated.cluster import RedisClient
from accelerated.ids import validate_project
from accelerated.keys import Keys
from accelerated.stream_metrics import stage_sizes, wb_backlog
from accelerated.tooling import tool_clients, tool_settings

WINDOW_S = 60  # the throughput window


@dataclass
class StageStatus:
    stream: int  # entries in the stage's stream (acked entries are deleted)
    pending: int  # delivered to a consumer, not yet acked
    lag: int | None  # not yet delivered to the group (None: Redis could not tell)
    dead: int  # dead letters


@dataclass
class Status:
    project: str
    documents: dict[str, int]
    total: int
    outstanding: int
    stages: dict[str, StageStatus]
    dlq_total: int
    writer_backlog: int
    workers: list[str]
    done_last_minute: int
    per_second: float
    eta_s: float | None
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


async def collect(redis: RedisClient, pool: asyncpg.Pool, keys: Keys, project: str) -> Status:
    validate_project(project)
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT status, count(*) AS n FROM documents WHERE project = $1 GROUP BY status",
            project,
        )
        recent = await conn.fetchval(
            "SELECT count(*) FROM documents WHERE project = $1 AND status = ANY($2::text[]) "
            "AND updated_at > now() - make_interval(secs => $3)",
            project,
            sorted(state.TERMINAL),
            WINDOW_S,
        )
    docs = {str(r["status"]): int(r["n"]) for r in rows}
    with map_driver_errors():
        stages = {
            stage: StageStatus(sz.stream, sz.pending, sz.lag, sz.dead)
            for stage, sz in (await stage_sizes(redis, keys)).items()
        }
        pipe = redis.pipeline(transaction=False)
        for key in keys.outstanding_all(project):
            pipe.scard(key)
        outstanding = sum(int(n) for n in await pipe.execute())
        backlog = await wb_backlog(redis, keys)
        alive = keys.consumer_alive("*")
        workers = sorted(
            {
                str_if_bytes(k)[len(alive) - 1 :]
                async for k in redis.scan_iter(match=alive, count=1000)
            }
        )
    total = sum(docs.values())
    not_terminal = sum(n for s, n in docs.items() if s not in state.TERMINAL)
    rate = int(recent) / WINDOW_S
    eta = (not_terminal / rate if rate > 0 else None) if not_terminal else 0.0
    return Status(
        project=project,
        documents=docs,
        total=total,
        outstanding=outstanding,
        stages=stages,
        dlq_total=sum(s.dead for s in stages.values()),
        writer_backlog=backlog,
        workers=workers,
        done_last_minute=int(recent),
        per_second=round(rate, 3),
        eta_s=None if eta is None else round(eta, 1),
    )


def render(st: Status) -> Any:
    """A rich renderable of ``st`` (for the terminal and ``--watch``)."""
    from rich.console import Group
    from rich.table import Table

    docs = Table(title=f"project {st.project}: {st.total} documents")
    docs.add_column("status")
    docs.add_column("documents", justify="right")
    for s in state.STATUSES:
        if st.documents.get(s):
            docs.add_row(s, str(st.documents[s]))
    for s, n in sorted(st.documents.items()):
        if s not in state.STATUSES:
            docs.add_row(s, str(n))
    stages = Table(title="stages (all projects on this prefix)")
    for col in ("stage", "stream", "pending", "lag", "dead letters"):
        stages.add_column(col, justify="left" if col == "stage" else "right")
    for name, sg in st.stages.items():
        stages.add_row(
            name,
            str(sg.stream),
            str(sg.pending),
            "?" if sg.lag is None else str(sg.lag),
            str(sg.dead),
        )
    eta = "-" if st.eta_s is None else f"{st.eta_s:.0f}s"
    summary = Table.grid(padding=(0, 2))
    summary.add_row("outstanding (Redis)", str(st.outstanding))
    summary.add_row("write-behind backlog", str(st.writer_backlog))
    summary.add_row("dead letters", str(st.dlq_total))
    summary.add_row("workers alive", f"{len(st.workers)} {' '.join(st.workers)[:120]}")
    summary.add_row(
        "throughput", f"{st.per_second:.2f} docs/s over the last {WINDOW_S}s, ETA {eta}"
    )
    return Group(docs, stages, summary)


async def amain(args: argparse.Namespace, ctx: CliContext) -> int:
    settings = tool_settings()
    async with tool_clients(settings) as c:
        assert c.redis is not None and c.pool is not None
        if args.json:
            print(json.dumps((await collect(c.redis, c.pool, c.keys, args.project)).as_json()))
            return EXIT_OK
        from rich.console import Console
        from rich.live import Live

        console = Console()
        if not args.watch:
            console.print(render(await collect(c.redis, c.pool, c.keys, args.project)))
            return EXIT_OK
        ctx.graceful = True  # Ctrl-C ends the watch: exit 0
        with Live(console=console, auto_refresh=False) as live:
            while not ctx.stop.is_set():
                live.update(
                    render(await collect(c.redis, c.pool, c.keys, args.project)), refresh=True
                )
                with contextlib.suppress(TimeoutError):
                    await wait_for(ctx.stop.wait(), args.interval)
    return EXIT_OK


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m accelerated.status", description=__doc__)
    p.add_argument("--project", required=True)
    p.add_argument("--watch", action="store_true", help="redraw every --interval seconds")
    p.add_argument("--interval", type=float, default=2.0)
    p.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    setup_output(args.verbose)
    sys.exit(cli.run(lambda ctx: amain(args, ctx), first_signal="stopping"))


if __name__ == "__main__":
    main()
