"""A delaying, counting TCP proxy in front of Postgres: models a database across a network.

Client-to-server bytes are held for ``delay_ms`` before they are forwarded, so every
request/response exchange costs that much extra, as a Supabase round trip would. The
delay is a deadline per chunk in a per-connection FIFO, not a sleep per packet, so
pipelined requests overlap their delays exactly as they would on a real link.

Round trips are *counted*: one per client burst that follows server data (a direction
change), summed over connections. Pipelined queries are one round trip; a
request-response ping-pong is one per query.

The proxy runs in its own process so that the pipeline's CPU work (and the GIL) in the
harness cannot add latency of its own; counters and the current delay live in shared
memory, so the harness changes the delay between runs and reads deltas without IPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.sharedctypes
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# Slots of the shared counter array.
ROUND_TRIPS, BYTES_UP, BYTES_DOWN, CONNECTIONS, PORT, READY = range(6)
_SLOTS = 6
_READ = 1 << 16


@dataclass(frozen=True)
class ProxyCounters:
    round_trips: int = 0
    bytes_up: int = 0  # client -> server
    bytes_down: int = 0  # server -> client
    connections: int = 0

    def __sub__(self, other: ProxyCounters) -> ProxyCounters:
        return ProxyCounters(
            self.round_trips - other.round_trips,
            self.bytes_up - other.bytes_up,
            self.bytes_down - other.bytes_down,
            self.connections - other.connections,
        )


class _Conn:
    """One proxied connection: tracks the direction of the last data seen."""

    def __init__(self, counters: Any) -> None:
        self.counters = counters
        self.server_spoke = True  # the first client bytes open the first round trip

    def client_data(self, n: int) -> None:
        if self.server_spoke:
            self.counters[ROUND_TRIPS] += 1
            self.server_spoke = False
        self.counters[BYTES_UP] += n

    def server_data(self, n: int) -> None:
        self.server_spoke = True
        self.counters[BYTES_DOWN] += n


async def _delayed_pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    delay_s: Callable[[], float],
    on_data: Callable[[int], None],
) -> None:
    """Forward client bytes, each chunk no earlier than its arrival time plus the delay."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(deliver())
    try:
        while data := await reader.read(_READ):
            if sender.done():
                sender.result()  # the upstream write failed: surface it
            on_data(len(data))
            queue.put_nowait((loop.time() + delay_s(), data))
        queue.put_nowait((0.0, b""))
        await sender
        with contextlib.suppress(OSError):
            writer.write_eof()
    finally:
        sender.cancel()


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, on_data: Callable[[int], None]
) -> None:
    while data := await reader.read(_READ):
        on_data(len(data))
        writer.write(data)
        await writer.drain()
    with contextlib.suppress(OSError):
        writer.write_eof()


async def serve(
    upstream: tuple[str, int],
    delay_ms: Callable[[], float],
    counters: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
) -> asyncio.Server:
    """Start the proxy on the running loop; ``counters`` is any mutable int sequence."""

    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            s_reader, s_writer = await asyncio.open_connection(*upstream)
        except OSError:
            c_writer.close()
            return
        for w in (c_writer, s_writer):
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        counters[CONNECTIONS] += 1
        conn = _Conn(counters)
        tasks = [
            asyncio.create_task(
                _delayed_pump(c_reader, s_writer, lambda: delay_ms() / 1000.0, conn.client_data)
            ),
            asyncio.create_task(_pump(s_reader, c_writer, conn.server_data)),
        ]
        try:
            # Either side closing ends the connection (Postgres never half-closes).
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for w in (c_writer, s_writer):
                w.close()
                with contextlib.suppress(OSError, ConnectionError):
                    await w.wait_closed()

    return await asyncio.start_server(handle, host, port)


def _child(upstream: tuple[str, int], delay: Any, counters: Any) -> None:
    async def main() -> None:
        server = await serve(upstream, lambda: float(delay.value), counters)
        counters[PORT] = server.sockets[0].getsockname()[1]
        counters[READY] = 1
        # Stop by ourselves if the harness goes away without stopping us: the parent's
        # sentinel becomes readable when it dies.
        parent = multiprocessing.parent_process()
        gone = asyncio.Event()
        if parent is not None:
            asyncio.get_running_loop().add_reader(parent.sentinel, gone.set)
        await gone.wait()
        server.close()

    asyncio.run(main())


class DelayProxy:
    """The proxy in a child process on 127.0.0.1 (ephemeral port); a context manager."""

    def __init__(self, upstream_host: str, upstream_port: int, delay_ms: float = 0.0) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._delay = ctx.Value("d", float(delay_ms), lock=False)
        self._counters = ctx.Array("q", _SLOTS, lock=False)
        self._proc = ctx.Process(
            target=_child,
            args=((upstream_host, upstream_port), self._delay, self._counters),
            name="bench-db-proxy",
            daemon=True,
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    @property
    def port(self) -> int:
        return int(self._counters[PORT])

    @property
    def delay_ms(self) -> float:
        return float(self._delay.value)

    @delay_ms.setter
    def delay_ms(self, value: float) -> None:
        if value < 0:
            raise ValueError("delay must be >= 0 ms")
        self._delay.value = float(value)

    def counters(self) -> ProxyCounters:
        c = self._counters
        return ProxyCounters(c[ROUND_TRIPS], c[BYTES_UP], c[BYTES_DOWN], c[CONNECTIONS])

    def start(self, timeout_s: float = 30.0) -> DelayProxy:
        self._proc.start()
        deadline = time.monotonic() + timeout_s
        while not self._counters[READY]:
            if not self._proc.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the database proxy did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._proc.is_alive():
            self._proc.terminate()
        self._proc.join(5)

    def __enter__(self) -> DelayProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def proxied_dsn(dsn: str, port: int) -> str:
    """The same DSN with its host and port replaced by the proxy's."""
    parts = urlsplit(dsn)
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{userinfo}127.0.0.1:{port}"))


def dsn_address(dsn: str) -> tuple[str, int]:
    parts = urlsplit(dsn)
    return parts.hostname or "127.0.0.1", parts.port or 5432


__all__ = ["DelayProxy", "ProxyCounters", "dsn_address", "proxied_dsn", "serve"]
