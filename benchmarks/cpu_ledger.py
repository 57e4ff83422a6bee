"""CPU per component, from thread and process CPU times (no sampling profiler).

Where the seconds come from:

* **the event loop's thread**, split by component: every callback the loop runs
  (``asyncio.events.Handle._run``: task steps, transport reads, timers) is timed with
  ``time.thread_time`` and charged to the component the running task is in. A task is
  in a component while it is inside one of the wrapped entry points below (a context
  variable, so each task has its own and a task suspended inside a Redis call is
  still in ``redis_client`` when it resumes); within a step a switch charges the part
  so far to the old component. Entry points: redis-py's ``Redis.execute_command``,
  ``Pipeline.execute`` and the command queueing of a pipeline (``redis_client``);
  asyncpg's connection, prepared-statement, transaction and pool methods
  (``postgres_client``); the codec's encode/decode/compress/decompress (``codec``);
  the engine's stage call (``stage``: the stage's own code on the loop; the Redis
  calls of its caches are still ``redis_client``). Socket reads scheduled outside a
  task are charged by their protocol (asyncpg's -> ``postgres_client``, asyncio
  streams' -> ``redis_client``). Everything else on the loop (the engine, handoffs,
  the writer's own logic, the harness's polling, the loop itself) is ``loop_engine``.
* **other threads of the harness process** (``asyncio.to_thread``: fingerprinting
  files, the RSS sampler; the pool's feeder threads): ``/proc/self/task/*/stat``.
* **the executor's processes**: ``/proc/<pid>/stat`` of every descendant (less the DB
  proxy); the part of it that is not stage code (the stage's offloaded calls are
  timed where they run) is pickling and IPC: ``pool_other``.
* **the Redis server**: ``INFO cpu`` (``used_cpu_sys + used_cpu_user``): the whole
  server, every client of it included, so point ``--redis-url`` at a server of its own
  for clean figures.
* **the Postgres server**: ``/proc/<pid>/stat`` of the backends whose
  ``application_name`` is the run's (``pg_stat_activity``, read before and after the
  run; a backend first seen after it started during it and counts whole). A backend
  that opened and closed within the run is missed (the pool keeps its connections,
  so in practice none).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

COMPONENTS = (
    "stage",
    "redis_client",
    "postgres_client",
    "codec",
    "loop_engine",
)
LOOP = "loop_engine"
_TICKS = os.sysconf("SC_CLK_TCK")

_component: contextvars.ContextVar[str] = contextvars.ContextVar("cpu_component", default=LOOP)


class Ledger:
    """CPU seconds of the loop's thread by component (one loop, one thread)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.current = LOOP
        self.mark = 0.0
        self.running = False
        self.loop: asyncio.AbstractEventLoop | None = None  # the one loop it times

    def switch(self, comp: str) -> None:
        if self.running:
            now = time.thread_time()
            self.seconds[self.current] += now - self.mark
            self.mark = now
        self.current = comp

    def snapshot(self) -> dict[str, float]:
        return dict(self.seconds)


LEDGER = Ledger()
_installed = False


def _classify(handle: asyncio.Handle) -> str:
    ctx = getattr(handle, "_context", None)
    comp = ctx.get(_component, None) if ctx is not None else None
    if comp is not None and comp != LOOP:
        return str(comp)
    cb = getattr(handle, "_callback", None)
    proto = getattr(getattr(cb, "__self__", None), "_protocol", None)
    if proto is not None:
        mod = type(proto).__module__
        if mod.startswith("asyncpg"):
            return "postgres_client"
        if isinstance(proto, asyncio.StreamReaderProtocol):
            return "redis_client"
    return comp or LOOP


def _wrap_async(owner: Any, name: str, comp: str) -> None:
    orig = getattr(owner, name, None)
    if orig is None:
        return

    @functools.wraps(orig)
    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        token = _component.set(comp)
        LEDGER.switch(comp)
        try:
            return await orig(*args, **kwargs)
        finally:
            _component.reset(token)
            LEDGER.switch(_component.get())

    setattr(owner, name, wrapped)


def _wrap_sync(owner: Any, name: str, comp: str) -> None:
    orig = getattr(owner, name, None)
    if orig is None:
        return

    @functools.wraps(orig)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        prev = LEDGER.current
        if prev == comp:
            return orig(*args, **kwargs)
        LEDGER.switch(comp)
        try:
            return orig(*args, **kwargs)
        finally:
            LEDGER.switch(prev)

    setattr(owner, name, wrapped)


def install(loop: asyncio.AbstractEventLoop) -> None:
    """Patch the loop's callback runner and the entry points (once per process); only
    ``loop``'s callbacks are timed."""
    global _installed
    LEDGER.loop = loop
    if _installed:
        return
    _installed = True
    import asyncpg
    import asyncpg.pool
    import asyncpg.prepared_stmt
    import asyncpg.transaction
    from redis.asyncio.client import Pipeline, Redis

    from accelerated.codec import Codec
    from accelerated.engine import Engine

    run = asyncio.events.Handle._run

    def timed_run(self: asyncio.Handle) -> None:
        if self._loop is not LEDGER.loop or LEDGER.running:  # type: ignore[attr-defined]
            run(self)
            return
        LEDGER.current = _classify(self)
        LEDGER.mark = time.thread_time()
        LEDGER.running = True
        try:
            run(self)
        finally:
            LEDGER.seconds[LEDGER.current] += time.thread_time() - LEDGER.mark
            LEDGER.running = False
            LEDGER.current = LOOP

    asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]

    _wrap_async(Redis, "execute_command", "redis_client")
    _wrap_async(Pipeline, "execute", "redis_client")
    _wrap_sync(Pipeline, "execute_command", "redis_client")
    conn = asyncpg.connection.Connection
    for name in (
        "execute",
        "executemany",
        "fetch",
        "fetchrow",
        "fetchval",
        "fetchmany",
        "copy_records_to_table",
        "copy_to_table",
        "prepare",
    ):
        _wrap_async(conn, name, "postgres_client")
    for name in ("execute", "executemany", "fetch", "fetchrow", "fetchval", "release"):
        _wrap_async(asyncpg.pool.Pool, name, "postgres_client")
    for name in ("__aenter__", "__aexit__"):
        _wrap_async(asyncpg.pool.PoolAcquireContext, name, "postgres_client")
    for name in ("start", "commit", "rollback", "__aenter__", "__aexit__"):
        _wrap_async(asyncpg.transaction.Transaction, name, "postgres_client")
    for name in ("fetch", "fetchrow", "fetchval", "executemany"):
        _wrap_async(asyncpg.prepared_stmt.PreparedStatement, name, "postgres_client")
    for name in ("encode", "decode", "compress", "decompress"):
        _wrap_sync(Codec, name, "codec")
    _wrap_async(Engine, "_run_stage", "stage")


def stage_scope() -> contextvars.Token[str]:
    """Mark the calling task as in stage code (the limit runner's stage calls)."""
    LEDGER.switch("stage")
    return _component.set("stage")


def end_stage_scope(token: contextvars.Token[str]) -> None:
    _component.reset(token)
    LEDGER.switch(_component.get())


# /proc ---------------------------------------------------------------------------------


def proc_cpu_s(pid: int, tid: int | None = None) -> float | None:
    """utime + stime of a process (or one of its threads) in seconds; None if gone."""
    path = Path(f"/proc/{pid}/stat") if tid is None else Path(f"/proc/{pid}/task/{tid}/stat")
    try:
        text = path.read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def threads_cpu_s() -> dict[int, float]:
    """CPU seconds of each thread of this process, by thread id."""
    out: dict[int, float] = {}
    pid = os.getpid()
    for entry in Path(f"/proc/{pid}/task").iterdir():
        tid = int(entry.name)
        cpu = proc_cpu_s(pid, tid)
        if cpu is not None:
            out[tid] = cpu
    return out


class PidCpu:
    """The largest CPU seen per pid over a run (a pid that exits keeps its last value)."""

    def __init__(self) -> None:
        self.before: dict[int, float] = {}
        self.last: dict[int, float] = {}

    def sample(self, pids: Iterable[int]) -> None:
        for pid in pids:
            cpu = proc_cpu_s(pid)
            if cpu is not None:
                self.last[pid] = max(cpu, self.last.get(pid, 0.0))

    def start(self, pids: Iterable[int]) -> None:
        for pid in pids:
            cpu = proc_cpu_s(pid)
            if cpu is not None:
                self.before[pid] = self.last[pid] = cpu

    def total_s(self) -> float:
        # A pid first seen during the run started during it: its whole CPU counts.
        return sum(v - self.before.get(p, 0.0) for p, v in self.last.items())


def per_doc_ms(seconds: dict[str, float], docs: int) -> dict[str, float]:
    return {k: round(1000 * v / max(1, docs), 3) for k, v in seconds.items()}


def diff(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in set(after) | set(before)}
