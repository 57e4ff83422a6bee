"""``/healthz`` and ``/readyz`` for a worker (``--health-port``), for orchestrators.

* ``/healthz``: the process is up and its event loop answers (200 always).
* ``/readyz``: 200 only when Redis answers PING, Postgres answers ``SELECT 1`` and the
  worker's heartbeat key is present (its consumers are alive: another worker would
  otherwise take its messages over); 503 with the failing checks otherwise. Each check
  has a short time limit, so a stalled server makes the worker unready in about a
  second instead of hanging the probe.

A minimal HTTP/1.1 server on ``asyncio.start_server`` (no web framework for two
paths); bound to 127.0.0.1 unless told otherwise, as the metrics port is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from accelerated.aio import wait_for
from accelerated.cluster import RedisClient

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 1.0


class HealthServer:
    def __init__(
        self,
        redis: RedisClient,
        pool: asyncpg.Pool,
        heartbeat_key: str,
        port: int,
        host: str = "127.0.0.1",
        timeout_s: float = CHECK_TIMEOUT_S,
    ) -> None:
        self.redis, self.pool, self.heartbeat_key = redis, pool, heartbeat_key
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        if self.port == 0:  # tests: the port the system chose
            self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def checks(self) -> dict[str, str]:
        """Each check's result: "ok" or why not."""

        async def redis_ok() -> None:
            await self.redis.ping()

        async def pg_ok() -> None:
            async with self.pool.acquire(timeout=self.timeout_s) as conn:
                await conn.fetchval("SELECT 1", timeout=self.timeout_s)

        async def heartbeat_ok() -> None:
            if not await self.redis.exists(self.heartbeat_key):
                raise RuntimeError("heartbeat lapsed")

        out: dict[str, str] = {}
        names = ("redis", "postgres", "heartbeat")
        results = await asyncio.gather(
            *(self._timed(f()) for f in (redis_ok, pg_ok, heartbeat_ok)), return_exceptions=True
        )
        for name, res in zip(names, results, strict=True):
            out[name] = "ok" if res is None else f"{type(res).__name__}: {res}"[:200]
        return out

    async def _timed(self, coro: Any) -> None:
        try:
            await wait_for(coro, self.timeout_s)
        except TimeoutError:
            raise TimeoutError(f"no answer within {self.timeout_s:g}s") from None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await wait_for(reader.readline(), 5)
            while (h := await wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                del h
            parts = line.decode("latin-1").split()
            path = parts[1].split("?", 1)[0] if len(parts) >= 2 else ""
            body: dict[str, Any]
            if path == "/healthz":
                code, body = 200, {"status": "up"}
            elif path == "/readyz":
                checks = await self.checks()
                ready = all(v == "ok" for v in checks.values())
                code, body = (200 if ready else 503), {"ready": ready, "checks": checks}
            else:
                code, body = 404, {"error": "not found"}
            payload = json.dumps(body).encode()
            reason = {200: "OK", 503: "Service Unavailable", 404: "Not Found"}[code]
            writer.write(
                f"HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
