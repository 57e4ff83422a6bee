"""The benchmark's DB proxy: it adds the latency asked for, and counts round trips exactly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from accelerated.settings import Settings
from benchmarks.proxy import DelayProxy, ProxyCounters, dsn_address, proxied_dsn


@pytest.fixture
def pg_proxy(settings: Settings) -> Iterator[DelayProxy]:
    assert settings.database_url is not None
    with DelayProxy(*dsn_address(settings.database_url)) as proxy:
        yield proxy


@pytest.fixture
async def echo_proxy() -> AsyncIterator[DelayProxy]:
    handlers: set[asyncio.Task[None]] = set()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass  # the proxy process was stopped mid-connection
        finally:
            writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxy = DelayProxy("127.0.0.1", port).start()
    try:
        yield proxy
    finally:
        proxy.stop()
        server.close()
        # Let every handler see its connection end before the loop goes away: a handler
        # cancelled at loop shutdown makes asyncio log an error, which fails the test.
        if handlers:
            await asyncio.wait(handlers, timeout=5)
        await server.wait_closed()


async def _select_ms(dsn: str, proxy: DelayProxy, n: int = 20) -> tuple[float, ProxyCounters]:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT 1")  # first query off the clock
        before = proxy.counters()
        t0 = time.perf_counter()
        for _ in range(n):
            await conn.execute("SELECT 1")  # simple protocol: one round trip each
        per_query = (time.perf_counter() - t0) * 1000 / n
        return per_query, proxy.counters() - before
    finally:
        await conn.close()


async def test_proxy_adds_the_latency_asked_for(settings: Settings, pg_proxy: DelayProxy) -> None:
    assert settings.database_url is not None
    dsn = proxied_dsn(settings.database_url, pg_proxy.port)
    pg_proxy.delay_ms = 0
    base_ms, base = await _select_ms(dsn, pg_proxy)
    pg_proxy.delay_ms = 10
    slow_ms, slow = await _select_ms(dsn, pg_proxy)
    added = slow_ms - base_ms
    assert 9.5 <= added < 10 + 8, f"asked for 10 ms per round trip, measured {added:.2f} ms"
    # Round trips are counted, one per query, whatever the delay.
    assert base.round_trips == slow.round_trips == 20
    assert base.bytes_up == slow.bytes_up > 0
    assert base.connections == slow.connections == 0  # no new connection inside the window


async def test_proxy_counts_round_trips_and_keeps_pipelining(echo_proxy: DelayProxy) -> None:
    echo_proxy.delay_ms = 50
    reader, writer = await asyncio.open_connection("127.0.0.1", echo_proxy.port)
    try:
        before = echo_proxy.counters()
        for msg in (b"ping", b"pong", b"again"):  # three request/response exchanges
            writer.write(msg)
            await writer.drain()
            assert await reader.readexactly(len(msg)) == msg
        t0 = time.perf_counter()
        burst = [b"q1", b"q2", b"q3", b"q4", b"q5"]
        for msg in burst:  # pipelined: written one by one, before any reply is read
            writer.write(msg)
            await writer.drain()
        assert await reader.readexactly(10) == b"".join(burst)
        pipelined_ms = (time.perf_counter() - t0) * 1000
        after = echo_proxy.counters()
    finally:
        writer.close()
        await writer.wait_closed()
    delta = after - before
    assert delta.round_trips == 4
    assert delta.bytes_up == delta.bytes_down == 4 + 4 + 5 + 10
    # The five pipelined messages overlap their delays: one 50 ms wait, not five.
    assert 50 <= pipelined_ms < 2 * 50


async def test_proxy_counts_connections_and_extended_protocol(
    settings: Settings, pg_proxy: DelayProxy
) -> None:
    assert settings.database_url is not None
    before = pg_proxy.counters()
    conn = await asyncpg.connect(proxied_dsn(settings.database_url, pg_proxy.port))
    try:
        connected = pg_proxy.counters()
        await conn.fetchval("SELECT $1::int", 1)  # Parse/Describe, then Bind/Execute: 2
        await conn.fetchval("SELECT $1::int", 2)  # prepared statement cached: 1
        await conn.executemany("SELECT $1::int", [(i,) for i in range(30)])  # pipelined: 1
        done = pg_proxy.counters()
    finally:
        await conn.close()
    assert (connected - before).connections == 1
    assert (done - connected).round_trips == 4


def test_proxied_dsn_keeps_credentials_and_database() -> None:
    dsn = "postgresql://user:secret@db.example.com:6543/postgres?sslmode=require"
    assert (
        proxied_dsn(dsn, 4242) == "postgresql://user:secret@127.0.0.1:4242/postgres?sslmode=require"
    )
    assert dsn_address(dsn) == ("db.example.com", 6543)
    assert dsn_address("postgresql://localhost/x") == ("localhost", 5432)


def test_negative_delay_is_refused() -> None:
    proxy = DelayProxy("127.0.0.1", 1)
    with pytest.raises(ValueError, match=">= 0"):
        proxy.delay_ms = -1
