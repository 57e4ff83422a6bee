"""The one place driver errors become pipeline errors (see the tree in ``errors.py``).

Every call into redis-py or asyncpg (and later aioboto3, openai) runs inside
``with map_driver_errors("redis"):``, like httpx's ``map_httpcore_exceptions``, so
components catch :class:`~accelerated.errors.BackendUnavailable` & co. and never
import a driver's exception types. The translated error is raised ``from None``: a
driver's message can carry a URL, and a chained traceback would print it again.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, Final, ParamSpec, TypeVar

import asyncpg  # type: ignore[import-untyped]
from redis import exceptions as rx

from accelerated.errors import (
    BackendError,
    BackendFull,
    BackendRejected,
    BackendUnavailable,
    PipelineError,
    StreamsMissing,
)
from accelerated.redact import redact

# SQLSTATE classes that mean the rows themselves are bad: retrying cannot help.
# 22 data exception, 23 integrity violation, 54 program limit exceeded (a value too
# big for an index row, too many columns...): the same rows fail the same way again.
PG_DATA_CLASSES: Final = ("22", "23", "54")
# Classes a retry can outlive: connection exceptions (08), insufficient resources (53),
# operator intervention / shutdown (57), system errors (58), lock timeouts and
# deadlocks (40, 55), and a schema being migrated (42P01 undefined table).
_PG_TRANSIENT_CLASSES: Final = ("08", "40", "53", "55", "57", "58")


def describe(exc: BaseException) -> str:
    """Short one-line form for logs and dead-letter entries, secrets masked."""
    state = getattr(exc, "sqlstate", None)
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    line = f"{type(exc).__name__}[{state}]: {text}" if state else f"{type(exc).__name__}: {text}"
    return redact(line)


def _redis(exc: rx.RedisError) -> BackendError:
    text = describe(exc)
    if isinstance(exc, rx.ConnectionError | rx.TimeoutError | rx.BusyLoadingError):
        return BackendUnavailable(f"redis unavailable: {text}", backend="redis")
    if isinstance(exc, rx.OutOfMemoryError) or (
        isinstance(exc, rx.ResponseError) and str(exc).startswith("OOM")
    ):
        return BackendFull(
            "Redis is full (maxmemory reached, policy noeviction): free memory or raise "
            f"maxmemory; retrying with backoff ({text})",
            backend="redis",
        )
    if isinstance(exc, rx.ResponseError) and str(exc).startswith("NOGROUP"):
        return StreamsMissing(f"redis lost a stream or group: {text}", backend="redis")
    if isinstance(exc, rx.ClusterError | rx.ClusterDownError | rx.TryAgainError):
        return BackendUnavailable(f"redis cluster: {text}", backend="redis")
    return BackendRejected(f"redis refused the call: {text}", backend="redis")


def _redis_cluster(exc: rx.RedisClusterException) -> BackendError:
    """The cluster client's own errors (not RedisErrors): no reachable node or a slot
    no node serves is an outage; anything else (keys of several slots in one call) a
    refusal, and a bug of the caller's key layout."""
    text = describe(exc)
    if isinstance(exc, rx.SlotNotCoveredError) or "cannot be connected" in str(exc):
        return BackendUnavailable(f"redis cluster unavailable: {text}", backend="redis")
    return BackendRejected(f"redis cluster refused the call: {text}", backend="redis")


def pg_is_transient(exc: BaseException) -> bool:
    """True unless the data itself is bad (SQLSTATE class 22 or 23, or unencodable)."""
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return not state.startswith(PG_DATA_CLASSES)
    if isinstance(exc, asyncpg.DataError):  # client side: a value asyncpg cannot encode
        return False
    return isinstance(
        exc, OSError | TimeoutError | asyncpg.InterfaceError | asyncpg.InternalClientError
    )


def _postgres(exc: BaseException) -> BackendError:
    text = describe(exc)
    state = getattr(exc, "sqlstate", None) or ""
    reachability = not isinstance(exc, asyncpg.PostgresError) or state.startswith(
        _PG_TRANSIENT_CLASSES
    )
    if reachability and pg_is_transient(exc):
        return BackendUnavailable(f"postgres unavailable: {text}", backend="postgres")
    if state == "42P01":  # a table missing while another process migrates
        return BackendUnavailable(f"postgres: {text}", backend="postgres")
    return BackendRejected(f"postgres refused the call: {text}", backend="postgres")


_PG_ERRORS: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)
_MAPPERS: Final[dict[str, Callable[[BaseException], PipelineError | None]]] = {}


def register_mapper(name: str, mapper: Callable[[BaseException], PipelineError | None]) -> None:
    """Backends with their own driver (aioboto3, openai) add its translation here.

    Usually a :class:`BackendError`; a driver that reports a fault of the input itself
    (S3's ``NoSuchKey`` for one object) may map it to a ``DocumentError`` instead."""
    _MAPPERS[name] = mapper


@contextlib.contextmanager
def map_driver_errors(backend: str = "redis") -> Iterator[None]:
    """Translate whatever a driver raises inside the block (sync or awaited code)."""
    try:
        yield
    except PipelineError:
        raise
    except rx.RedisError as exc:
        raise _redis(exc) from None
    except rx.RedisClusterException as exc:
        raise _redis_cluster(exc) from None
    except _PG_ERRORS as exc:
        raise _postgres(exc) from None
    except (OSError, TimeoutError) as exc:  # sockets below either driver
        raise BackendUnavailable(
            f"{backend} unavailable: {describe(exc)}", backend=backend
        ) from None
    except Exception as exc:
        mapper = _MAPPERS.get(backend)
        mapped = mapper(exc) if mapper is not None else None
        if mapped is None:
            raise
        raise mapped from None


P = ParamSpec("P")
R = TypeVar("R")


def translated(
    backend: str,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """Decorator form of :func:`map_driver_errors` for coroutine methods."""

    def wrap(fn: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        @functools.wraps(fn)
        async def inner(*args: P.args, **kwargs: P.kwargs) -> R:
            with map_driver_errors(backend):
                return await fn(*args, **kwargs)

        return inner

    return wrap
