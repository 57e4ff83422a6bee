"""Fixtures: real Redis and real Postgres on loopback, isolated per test.

The session uses its own Postgres database (created and dropped here) and a Redis
database number user data does not use (TEST_REDIS_DB, default 15); inside them each
test gets its own Redis key prefix (deleted afterwards) and its own Postgres schema
(dropped afterwards).

A test runs on a Redis Cluster as well with
``@pytest.mark.parametrize("redis_kind", KINDS, indirect=True)``: its ``redis``,
``settings`` and ``keys`` then point at a three-master cluster started once for the
session on loopback (``tests/cluster_server.py``), isolated by key prefix, and the test
fails if any node replied CROSSSLOT meanwhile. An exception that reaches the event loop's handler
during a test fails that test, as in asyncpg's own suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import os
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from accelerated.cluster import DEFAULT_CLUSTER_SHARDS, RedisClient
from accelerated.codec import Codec
from accelerated.keys import Keys
from accelerated.settings import Settings
from benchmarks.llm_server import ChatServer
from tests.cluster_server import RedisClusterServers
from tests.support import redis_from_url, sync_redis_from_url

KINDS = ["single", "cluster"]  # for parametrize("redis_kind", KINDS, indirect=True)

# TEST_REDIS_URL / TEST_DATABASE_URL pick the servers (default: loopback; embedded ones
# when nothing listens there). The tests never use a database that may hold someone's
# data: Redis database TEST_REDIS_DB (default 15) and a Postgres database of their own,
# created for the session and dropped at its end (TEST_DATABASE_URL's database is only
# the maintenance connection that creates it).
TEST_REDIS_DB = int(os.environ.get("TEST_REDIS_DB", "15"))
_REDIS_SERVER = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
_MAINTENANCE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = ""  # set in pytest_configure
DATABASE_URL = ""  # set in pytest_configure
_embedded: Any = None
_test_database: str | None = None


def _listening(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def with_path(url: str, path: str) -> str:
    """``url`` with its path (the Redis db number, the Postgres database) replaced."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{path}", parts.query, parts.fragment))


async def _create_database(maintenance_url: str) -> str:
    name = f"lp_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(maintenance_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def _drop_database(maintenance_url: str, name: str) -> None:
    conn = await asyncpg.connect(maintenance_url)
    try:  # FORCE: a subprocess a failed test left behind must not keep it alive
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


# The last resort against a hang that pytest-timeout cannot break: its SIGALRM raises
# inside whatever the main thread runs (an event-loop callback may swallow it; a C call
# that holds the GIL never sees it). faulthandler's own C thread writes every thread's
# stack, under the test's id, to TEST_WATCHDOG_LOG and ends the run: CI then stops in
# minutes with the culprit named (``make test`` prints the file) instead of running
# out its time in silence.
WATCHDOG_S = float(os.environ.get("TEST_WATCHDOG_S", "480"))
WATCHDOG_LOG = Path(os.environ.get("TEST_WATCHDOG_LOG", ".pytest-watchdog.log"))
_watchdog: Any = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    if _watchdog is not None:
        _watchdog.seek(0)
        _watchdog.truncate()
        _watchdog.write(f"watchdog: {item.nodeid} ran over {WATCHDOG_S:g}s\n")
        _watchdog.flush()
        faulthandler.dump_traceback_later(WATCHDOG_S, exit=True, file=_watchdog)
        tasks = threading.Timer(max(0.5, WATCHDOG_S - 10), _dump_tasks)
        tasks.daemon = True
        tasks.start()
    try:
        yield
    finally:
        if _watchdog is not None:
            faulthandler.cancel_dump_traceback_later()
            tasks.cancel()


def _dump_tasks() -> None:
    """Shortly before the watchdog: the stack of every asyncio task still pending (a
    thread's stack shows only the loop waiting; the task shows what it waits on)."""
    try:
        for task in list(asyncio.tasks._all_tasks):  # type: ignore[attr-defined]
            if not task.done():
                task.print_stack(limit=20, file=_watchdog)
        _watchdog.flush()
    except Exception as exc:  # from another thread, best effort
        _watchdog.write(f"(tasks not dumped: {exc!r})\n")


def pytest_configure(config: pytest.Config) -> None:
    """Servers on loopback (else embedded ones), then the session's own databases."""
    global REDIS_URL, DATABASE_URL, _embedded, _test_database, _REDIS_SERVER, _MAINTENANCE_URL
    global _watchdog
    if WATCHDOG_S > 0:
        WATCHDOG_LOG.unlink(missing_ok=True)
        _watchdog = WATCHDOG_LOG.open("w+")
    need_redis = "TEST_REDIS_URL" not in os.environ and not _listening("127.0.0.1", 6379)
    need_pg = "TEST_DATABASE_URL" not in os.environ and not _listening("127.0.0.1", 5432)
    if need_redis or need_pg:
        from accelerated.embedded import EmbeddedServers

        state = Path(tempfile.gettempdir()) / "legal-pipeline-test-servers"
        _embedded = EmbeddedServers(state, need_redis=need_redis, need_postgres=need_pg)
        asyncio.run(_embedded.__aenter__())
        if need_redis:
            _REDIS_SERVER = _embedded.redis_url
        if need_pg:
            _MAINTENANCE_URL = _embedded.database_url
    REDIS_URL = with_path(_REDIS_SERVER, str(TEST_REDIS_DB))
    _test_database = asyncio.run(_create_database(_MAINTENANCE_URL))
    DATABASE_URL = with_path(_MAINTENANCE_URL, _test_database)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _watchdog is not None:  # nothing hung: no file left behind
        faulthandler.cancel_dump_traceback_later()
        _watchdog.close()
        WATCHDOG_LOG.unlink(missing_ok=True)
    if _test_database is not None:
        asyncio.run(_drop_database(_MAINTENANCE_URL, _test_database))
    if _embedded is not None:
        asyncio.run(_embedded.__aexit__(None, None, None))


def _find_corpus() -> Path:
    """``CORPUS_DIR``; else ``shared/corpus`` beside this checkout; else beside the local
    checkout this one was cloned from (``git clone /work/main /tmp/x`` keeps working)."""
    if os.environ.get("CORPUS_DIR"):
        return Path(os.environ["CORPUS_DIR"])
    repo = Path(__file__).resolve().parents[1]
    candidates = [repo.parent / "shared" / "corpus"]
    try:
        origin = subprocess.run(
            ["git", "-C", str(repo), "remote", "get-url", "origin"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        origin = ""
    origin = origin.removeprefix("file://")
    if origin and Path(origin).is_dir():
        candidates.append(Path(origin).resolve().parent / "shared" / "corpus")
    return next((c for c in candidates if c.is_dir()), candidates[0])


CORPUS = _find_corpus()
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "documents"


@pytest.fixture
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.fail(f"corpus not found at {CORPUS}: set CORPUS_DIR")
    return CORPUS


@pytest.fixture
def chat_server() -> Iterator[ChatServer]:
    """The local OpenAI-compatible server (``benchmarks/llm_server.py``), default replies;
    point settings at it with ``tests.support.llm_settings``."""
    srv = ChatServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def pg_schema() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """Three masters on loopback, for the whole session (only if a test asks)."""
    try:
        servers = RedisClusterServers(tmp_path_factory.mktemp("redis-cluster")).start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def redis_kind(request: pytest.FixtureRequest) -> str:
    """``single`` (the session's Redis) unless a test is parametrised over KINDS."""
    kind = str(getattr(request, "param", "single"))
    assert kind in KINDS, kind
    return kind


@pytest.fixture
def redis_url(redis_kind: str, request: pytest.FixtureRequest) -> Iterator[str]:
    if redis_kind == "single":
        yield REDIS_URL
        return
    servers: RedisClusterServers = request.getfixturevalue("redis_cluster")
    before = servers.crossslot_errors()
    yield servers.url
    crossslot = servers.crossslot_errors() - before
    if crossslot:
        pytest.fail(f"the cluster replied CROSSSLOT {crossslot} time(s) during this test")


@pytest.fixture
async def redis(prefix: str, redis_url: str) -> AsyncIterator[RedisClient]:
    # socket_timeout above the tests' longest blocking call (BLPOP ..., 30): redis-py 8's
    # default of 5 s would cut a blocking read that waits for a slow child process.
    client = redis_from_url(redis_url, socket_timeout=60)
    try:
        await client.ping()
    except Exception as exc:  # pragma: no cover - environment problem, say so plainly
        pytest.fail(f"Redis not reachable at {redis_url}: {exc}")
    yield client
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
    for i in range(0, len(keys), 500):
        await client.delete(*keys[i : i + 500])
    await client.aclose()


@pytest.fixture
async def pg_pool(pg_schema: str) -> AsyncIterator[asyncpg.Pool]:
    admin = await asyncpg.connect(DATABASE_URL)
    await admin.execute(f'CREATE SCHEMA "{pg_schema}"')
    await admin.close()
    pool = await asyncpg.create_pool(
        DATABASE_URL, min_size=1, max_size=8, server_settings={"search_path": pg_schema}
    )
    assert pool is not None
    yield pool
    await pool.close()
    admin = await asyncpg.connect(DATABASE_URL)
    await admin.execute(f'DROP SCHEMA IF EXISTS "{pg_schema}" CASCADE')
    await admin.close()


@pytest.fixture
def settings(prefix: str, pg_schema: str, tmp_path: Path, redis_url: str) -> Iterator[Settings]:
    yield Settings.from_dsn(
        redis_url,
        DATABASE_URL,
        redis_prefix=prefix,
        pg_schema=pg_schema,
        state_dir=tmp_path / "state",
        claim_idle_ms=2_000,
        # OCR costs ~2 s a page: tests that are not about it leave scans as needs_ocr;
        # the OCR tests opt in (tests/test_ocr*.py).
        ocr_backend="none",
        _env_file=None,
    )
    # Subprocesses (CLI, workers) write under the prefix too: remove what they left.
    client = sync_redis_from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i : i + 500])
    client.close()


@pytest.fixture
def keys(prefix: str, redis_kind: str) -> Keys:
    """The runtime's key layout: one shard on a single Redis, the default on a cluster."""
    return Keys(prefix, DEFAULT_CLUSTER_SHARDS if redis_kind == "cluster" else 1)


@pytest.fixture
def codec() -> Codec:
    return Codec()


@pytest.fixture(autouse=True)
def _fail_on_loop_exceptions(request: pytest.FixtureRequest) -> Iterator[None]:
    """Collect exceptions the running loop would only log, and fail the test on any."""
    errors: list[dict[str, Any]] = []
    if not any(
        m.name == "asyncio" for m in request.node.iter_markers()
    ) and not asyncio.iscoroutinefunction(getattr(request.node, "obj", None)):
        yield
        return

    policy = asyncio.get_event_loop_policy()
    original = policy.new_event_loop

    def new_loop() -> asyncio.AbstractEventLoop:
        loop = original()
        loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        return loop

    def _driver_orphan(ctx: dict[str, Any]) -> bool:
        # A test that ends a Postgres session under a running query (pg_terminate_backend)
        # can leave asyncpg's own waiter future for that query unretrieved: the driver's,
        # about a connection the test killed on purpose, and only in such tests.
        exc = ctx.get("exception")
        return killer and isinstance(exc, asyncpg.InterfaceError | asyncpg.PostgresConnectionError)

    killer = request.node.get_closest_marker("terminates_pg_sessions") is not None

    policy.new_event_loop = new_loop  # type: ignore[method-assign]
    try:
        yield
    finally:
        policy.new_event_loop = original  # type: ignore[method-assign]
    errors = [e for e in errors if not _driver_orphan(e)]
    if errors:
        pytest.fail(f"event loop reported exceptions: {[e.get('message') for e in errors]}")


LEFTOVER_GRACE_S = 15.0


@pytest.fixture(autouse=True)
async def _no_task_left_running() -> AsyncIterator[None]:
    """Cancel the tasks a test left running, within a bound, and fail the test on any
    that stays.

    A test that fails half-way can leave a batch, an engine or a writer running;
    pytest-asyncio would then wait for it without bound when it closes the loop (a
    batch waiting for a Redis server the test has already stopped waits by design).
    Autouse, so set up first and torn down last: every other fixture has ended.
    """
    yield
    me = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
    for task in left:
        task.cancel()
    if left:
        _done, stuck = await asyncio.wait(left, timeout=LEFTOVER_GRACE_S)
        if stuck:
            names = sorted({getattr(t.get_coro(), "__qualname__", "?") for t in stuck})
            pytest.fail(
                f"{len(stuck)} task(s) ignored cancellation for {LEFTOVER_GRACE_S:g}s: {names}"
            )
