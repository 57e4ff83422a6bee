"""Fault injection for tests: a private redis-server, a TCP proxy the test controls,
and ending the writer's Postgres session the way a pooler or a failover does.

Nothing here touches the shared servers' data: the redis-server is our own process on
a free port in a temp dir, the proxy only forwards, and ``terminate_backends`` ends only
sessions carrying an ``application_name`` the test made up.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import struct
import time
from collections.abc import Iterator

import asyncpg

from benchmarks.redis_servers import RedisServer, alive, free_port

__all__ = ["FaultProxy", "Mode", "RedisServer", "alive", "free_port"]


class Mode(enum.Enum):
    PASS = "pass"  # forward both ways
    STALL = "stall"  # accept, forward nothing (a hung server or a black-holed link)
    REFUSE = "refuse"  # not listening: connects fail with ECONNREFUSED
    RESET = "reset"  # accept, then reset at once (a server that is starting or dying)


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), not a FIN: a connection reset by peer."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """A TCP proxy on the test's event loop, in front of one upstream (host, port).

    Switching to REFUSE or RESET resets every open connection too; STALL holds bytes
    (in both directions) until the mode changes back; PASS forwards what was held.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.mode = Mode.PASS
        self.accepted = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> FaultProxy:
        await self._listen()
        return self

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._handle, "127.0.0.1", self.port, reuse_address=True
            )

    async def _unlisten(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def open_connections(self) -> int:
        return len(self._conns)

    async def set_mode(self, mode: Mode) -> None:
        self.mode = mode
        if mode is Mode.STALL:
            self._flowing.clear()
            return
        if mode in (Mode.REFUSE, Mode.RESET):
            for client, server in list(self._conns):
                _rst(client)
                if server is not None:
                    _rst(server)
            self._conns.clear()
        if mode is Mode.REFUSE:
            await self._unlisten()
        else:
            await self._listen()
        self._flowing.set()

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode in (Mode.RESET, Mode.REFUSE):
            _rst(c_writer)
            return
        entry: tuple[asyncio.StreamWriter, asyncio.StreamWriter | None] = (c_writer, None)
        self._conns.add(entry)
        try:
            await self._flowing.wait()
            if self.mode is not Mode.PASS:
                _rst(c_writer)
                return
            try:
                s_reader, s_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                _rst(c_writer)
                return
            self._conns.discard(entry)
            entry = (c_writer, s_writer)
            self._conns.add(entry)
            pumps = [
                asyncio.create_task(self._pump(c_reader, s_writer)),
                asyncio.create_task(self._pump(s_reader, c_writer)),
            ]
            self._tasks.update(pumps)
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in pumps:
                    t.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
                self._tasks.difference_update(pumps)
                for w in (c_writer, s_writer):
                    w.close()
        finally:
            self._conns.discard(entry)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(1 << 16):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()

    async def stop(self) -> None:
        await self._unlisten()
        for client, server in list(self._conns):
            client.transport.abort()
            if server is not None:
                server.transport.abort()
        self._conns.clear()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def via(dsn: str, port: int) -> str:
    """The same DSN through the proxy (host and port replaced, userinfo kept)."""
    from benchmarks.proxy import proxied_dsn

    return proxied_dsn(dsn, port)


async def terminate_backends(dsn: str, application_name: str) -> int:
    """``pg_terminate_backend`` every session with this application_name; returns how many."""
    admin = await asyncpg.connect(dsn)
    try:
        got = await admin.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = $1 AND pid <> pg_backend_pid()",
            application_name,
        )
        return sum(1 for r in got if r[0])
    finally:
        await admin.close()


async def backends(dsn: str, application_name: str) -> int:
    admin = await asyncpg.connect(dsn)
    try:
        return int(
            await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                application_name,
            )
        )
    finally:
        await admin.close()


@contextlib.contextmanager
def timer() -> Iterator[list[float]]:
    """``with timer() as t: ...`` then t[0] is the elapsed seconds."""
    out: list[float] = []
    t0 = time.monotonic()
    try:
        yield out
    finally:
        out.append(time.monotonic() - t0)
