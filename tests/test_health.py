"""Health endpoints: ``/readyz`` turns unready within seconds of Redis going away and
ready again when it is back; the worker serves both with ``--health-port``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from accelerated.aio import wait_for
from accelerated.connect import redis_client
from accelerated.health import HealthServer
from accelerated.keys import Keys
from accelerated.settings import Settings
from accelerated.transport import RedisTransport
from benchmarks.proxy import dsn_address
from tests import faults
from tests.conftest import DATABASE_URL
from tests.faults import RedisServer, free_port
from tests.support import PYTHON, subprocess_env


async def get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    reader, writer = await wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await wait_for(reader.read(), 10)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


async def _wait_for(port: int, want: int, limit_s: float) -> float:
    t0 = time.monotonic()
    while True:
        code, _ = await get(port, "/readyz")
        if code == want:
            return time.monotonic() - t0
        assert time.monotonic() - t0 < limit_s, f"/readyz still {code} after {limit_s}s"
        await asyncio.sleep(0.2)


async def test_readyz_follows_redis_going_away_and_coming_back(
    tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool
) -> None:
    with RedisServer(tmp_path / "redis") as server:
        s = settings.model_copy(update={"redis_url": server.url})
        client = redis_client(server.url, s)
        keys = Keys(settings.redis_prefix)
        transport = RedisTransport(client, keys, "hc-1")

        async def beat() -> None:  # what the engine's heartbeat loop does
            while True:
                with contextlib.suppress(Exception):
                    await transport.heartbeat()
                await asyncio.sleep(0.5)

        beating = asyncio.create_task(beat())
        health = HealthServer(client, pg_pool, keys.consumer_alive("hc-1"), 0)
        await health.start()
        try:
            await _wait_for(health.port, 200, 5)
            code, body = await get(health.port, "/readyz")
            assert code == 200 and body["checks"] == {
                "redis": "ok",
                "postgres": "ok",
                "heartbeat": "ok",
            }
            server.kill()
            took = await _wait_for(health.port, 503, 5)
            code, body = await get(health.port, "/readyz")
            assert code == 503 and body["checks"]["redis"] != "ok"
            assert body["checks"]["postgres"] == "ok"
            assert (await get(health.port, "/healthz"))[0] == 200  # the process is up
            assert (await get(health.port, "/nope"))[0] == 404
            server.start()  # back, empty: the heartbeat is written again
            back = await _wait_for(health.port, 200, 10)
            print(f"unready after {took:.2f}s, ready again {back:.2f}s after restart")
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
            await health.close()
            await client.aclose()
    assert server.left_behind() == []


async def test_readyz_is_unready_without_a_heartbeat(
    settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    health = HealthServer(redis, pg_pool, keys.consumer_alive("nobody"), 0)
    await health.start()
    try:
        code, body = await get(health.port, "/readyz")
        assert code == 503 and body["checks"]["heartbeat"] != "ok"
        assert body["checks"]["redis"] == "ok" == body["checks"]["postgres"]
    finally:
        await health.close()


async def test_worker_serves_health_on_its_port(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    proc = await asyncio.to_thread(
        lambda: subprocess.Popen(
            [PYTHON, "-m", "accelerated.worker", "--health-port", str(port)],
            env=subprocess_env(settings) | {"STATE_DIR": str(tmp_path / "state")},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError, TimeoutError):
                code, _ = await get(port, "/healthz")
                if code == 200:
                    break
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else b""
            assert time.monotonic() < deadline
            await asyncio.sleep(0.3)
        await _wait_for(port, 200, 15)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.to_thread(proc.communicate, timeout=60)
    assert proc.returncode == 0, out


async def test_readyz_follows_postgres_stalling_refusing_and_coming_back(
    settings: Settings, redis: aioredis.Redis, keys: Keys
) -> None:
    async with faults.FaultProxy(dsn_address(DATABASE_URL)) as proxy:
        pool = await asyncpg.create_pool(
            faults.via(DATABASE_URL, proxy.port), min_size=1, max_size=2, command_timeout=10
        )
        assert pool is not None
        await redis.set(keys.consumer_alive("hc-pg"), b"1", ex=60)
        health = HealthServer(redis, pool, keys.consumer_alive("hc-pg"), 0)
        await health.start()
        try:
            await _wait_for(health.port, 200, 5)
            for mode in (faults.Mode.STALL, faults.Mode.REFUSE):
                await proxy.set_mode(mode)
                took = await _wait_for(health.port, 503, 5)
                code, body = await get(health.port, "/readyz")
                assert code == 503 and body["checks"]["postgres"] != "ok", body
                assert body["checks"]["redis"] == "ok"
                await proxy.set_mode(faults.Mode.PASS)
                back = await _wait_for(health.port, 200, 15)
                print(f"postgres {mode.value}: unready after {took:.2f}s, ready {back:.2f}s after")
        finally:
            await health.close()
            await wait_for(pool.close(), 10)
