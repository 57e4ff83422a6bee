"""``python -m accelerated.worker``: consume stage streams until SIGTERM/SIGINT.

On a signal it stops reading, finishes the documents in flight and exits; anything
it could not finish stays pending and another worker reclaims it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal

from prometheus_client import start_http_server

from accelerated.connect import open_clients
from accelerated.errors import BackendUnavailable, PipelineError
from accelerated.runtime import build_runtime, make_executor, tune_gc
from accelerated.settings import Settings

log = logging.getLogger("accelerated.worker")


async def amain(metrics_port: int | None) -> None:
    settings = Settings()
    async with open_clients(settings) as clients:
        for notice in clients.notices:
            log.warning("%s", notice)
        if clients.redis is None:
            # Without Redis there are no streams to consume: only `batch` can fall back.
            raise BackendUnavailable("the worker needs Redis (its stage streams); set REDIS_URL")
        rt = build_runtime(
            clients.settings, clients.pool, clients.redis, executor=make_executor(clients.settings)
        )
        if metrics_port:
            start_http_server(metrics_port, addr="127.0.0.1")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.warning(
            "worker %s started (%s path, pid %d)", rt.consumer, rt.handoff.name, os.getpid()
        )
        try:
            await rt.engine().run(stop)
        finally:
            rt.close()
        log.warning("worker %s stopped", rt.consumer)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m accelerated.worker", description=__doc__)
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on 127.0.0.1:PORT")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    tune_gc()
    try:
        asyncio.run(amain(args.metrics_port))
    except PipelineError as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
