"""``python -m accelerated.worker``: consume stage streams until SIGTERM/SIGINT.

On a signal it stops reading, finishes the documents in flight and exits 0; anything
it could not finish stays pending and another worker reclaims it. A second signal
exits at once (130). Configuration errors exit 2, Redis or Postgres unavailable 3.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from prometheus_client import start_http_server

from accelerated import cli, stream_metrics
from accelerated.cli import (
    EXIT_OK,
    CliContext,
    apply_settings_logging,
    load_settings,
    setup_output,
    validate_startup,
)
from accelerated.connect import open_clients
from accelerated.errors import BackendUnavailable
from accelerated.health import HealthServer
from accelerated.logs import DOCUMENTS
from accelerated.runtime import build_runtime, make_executor, tune_gc

log = logging.getLogger("accelerated.worker")


async def amain(metrics_port: int | None, ctx: CliContext, health_port: int | None = None) -> int:
    settings = load_settings()
    apply_settings_logging(settings)
    backends = validate_startup(settings)
    async with open_clients(settings) as clients:
        for notice in (*backends.notices, *clients.notices):
            log.warning("%s", notice)
        if clients.redis is None:
            # Without Redis there are no streams to consume: only `batch` can fall back.
            raise BackendUnavailable("the worker needs Redis (its stage streams); set REDIS_URL")
        rt = build_runtime(
            clients.settings,
            clients.pool,
            clients.redis,
            executor=make_executor(clients.settings),
            backends=backends,
        )
        gauges = None
        if metrics_port:
            start_http_server(metrics_port, addr="127.0.0.1")
            gauges = asyncio.create_task(stream_metrics.run(clients.redis, rt.keys, ctx.stop))
        health = None
        if health_port:
            health = HealthServer(
                clients.redis, clients.pool, rt.keys.consumer_alive(rt.consumer), health_port
            )
            await health.start()
        log.info("worker %s started (%s path, pid %d)", rt.consumer, rt.handoff.name, os.getpid())
        ctx.graceful = True  # from here a signal stops the engine, which drains
        try:
            await rt.engine().run(ctx.stop)
        finally:
            if health is not None:
                await health.close()
            if gauges is not None:
                gauges.cancel()
                await asyncio.gather(gauges, return_exceptions=True)
            await rt.aclose()
        log.info("worker %s stopped", rt.consumer)
    return EXIT_OK


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m accelerated.worker", description=__doc__)
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on 127.0.0.1:PORT")
    p.add_argument("--health-port", type=int, help="serve /healthz and /readyz on 127.0.0.1:PORT")
    p.add_argument(
        "--show-config",
        action="store_true",
        help="print every setting, its resolved value and its source, then exit",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.show_config:
        from accelerated.batch import _show_config

        sys.exit(_show_config())
    # Start and stop, and one line per finished document, are the lines an operator
    # looks for: INFO, shown without -v.
    setup_output(args.verbose, info_loggers=(log.name, DOCUMENTS))
    tune_gc()
    sys.exit(
        cli.run(lambda ctx: amain(args.metrics_port, ctx, args.health_port), say=_say, error=_error)
    )


def _say(line: str) -> None:
    """CLI lines go through the log, so they carry a time like every other line. A
    signal is the start of an orderly stop: INFO, as start and stop are; what goes
    wrong while stopping (tasks that would not end) is a WARNING."""
    if line.startswith(("SIGTERM:", "interrupted:")):
        log.info("%s", line)
    else:
        log.warning("%s", line)


def _error(lines: str) -> None:
    for line in lines.splitlines():
        log.error("%s", line)


if __name__ == "__main__":
    main()
