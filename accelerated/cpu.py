"""The process pool for CPU-bound stage code, supervised.

``concurrent.futures.ProcessPoolExecutor`` breaks for good when one child dies (the
OOM killer, a native crash in a PDF library): every later call raises
``BrokenProcessPool``. :class:`CpuPool` rebuilds it and resubmits the calls that were
in flight, so one dead child costs a retry, not the rest of a long-running worker's
life. It can also be *recycled* on purpose (children killed and replaced) when a
stage's time limit fires while its call is stuck in a child, since a cancelled
future does not stop the child. Children die with their parent (``PR_SET_PDEATHSIG``
on Linux), so a SIGKILLed worker leaves no orphaned processes holding memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from accelerated.errors import PipelineError

log = logging.getLogger(__name__)
R = TypeVar("R")


class WorkerCrashed(PipelineError):
    """A pool process died under this call more often than it was resubmitted."""

    retryable = True


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent exits (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _child_init(owner: int, initializer: Callable[[], None] | None) -> None:
    die_with_parent()
    # If the owner died before the line above ran, no signal will ever come: leave now.
    try:
        os.kill(owner, 0)
    except ProcessLookupError:
        os._exit(1)
    # Ctrl-C at a terminal reaches the whole process group: the parent decides what an
    # interrupt means (drain, then stop); a child must not die of it mid-call.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer()


class CpuPool(Executor):
    """A ``ProcessPoolExecutor`` that survives its children (see the module docstring)."""

    def __init__(self, workers: int, initializer: Callable[[], None] | None = None) -> None:
        self.workers = workers
        self._initializer = initializer
        self._lock = threading.Lock()
        self._pool = self._new()
        self.rebuilds = 0
        self._closed = False

    def _new(self) -> ProcessPoolExecutor:
        ctx = multiprocessing.get_context("forkserver")
        # The forkserver is the children's parent: it must die with us for them to.
        ctx.set_forkserver_preload(["accelerated._pool_child"])
        return ProcessPoolExecutor(
            self.workers,
            mp_context=ctx,
            initializer=_child_init,
            initargs=(os.getpid(), self._initializer),
        )

    # Executor interface (run_in_executor, the benchmark's warm-up) -------------------
    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._closed = True
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)

    # Supervision -------------------------------------------------------------------------
    def pids(self) -> list[int]:
        procs = getattr(self._pool, "_processes", None) or {}
        return [p.pid for p in procs.values() if p.pid is not None]

    def _replace(self, broken: ProcessPoolExecutor, why: str) -> None:
        with self._lock:
            if self._pool is not broken or self._closed:
                return  # another call rebuilt it already
            self._pool = self._new()
            self.rebuilds += 1
        log.warning("CPU pool rebuilt (%s)", why)
        broken.shutdown(wait=False, cancel_futures=True)

    def recycle(self, why: str) -> None:
        """Kill every child and start new ones: the only way to stop a stuck call."""
        pool = self._pool
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._replace(pool, why)

    async def run(self, fn: Callable[[], R], retries: int) -> R:
        """Run ``fn`` in a child; resubmit up to ``retries`` times if its child dies."""
        loop = asyncio.get_running_loop()
        for attempt in range(retries + 1):
            pool = self._pool
            try:
                return await loop.run_in_executor(pool, fn)
            except BrokenProcessPool:
                self._replace(pool, "a child process died")
                if attempt == retries:
                    break
        raise WorkerCrashed(
            f"a CPU pool process died under this call {retries + 1} times "
            "(out of memory, or a native crash in a parser)"
        )
