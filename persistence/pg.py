"""Postgres connections, and the one place asyncpg/OS errors become pipeline errors.

Callers catch :class:`accelerated.errors.BackendUnavailable` and never import asyncpg's
exception types; the writer uses :func:`is_transient` to tell "retry later" from
"this data can never be written".
"""

from __future__ import annotations

import re
from collections.abc import Callable

import asyncpg  # type: ignore[import-untyped]

from accelerated.errors import BackendUnavailable, ConfigError
from accelerated.settings import Settings

# SQLSTATE classes that mean the rows themselves are bad: retrying cannot help.
# 22 data exception, 23 integrity violation, 54 program limit exceeded (a value too
# big for an index row, too many columns...): the same rows fail the same way again.
_DATA_CLASSES = ("22", "23", "54")


async def create_pool(settings: Settings) -> asyncpg.Pool:
    """Open the pool; ``statement_cache_size=0`` keeps it usable through pgbouncer/Supavisor."""
    if not settings.database_url:
        raise ConfigError("DATABASE_URL is not set")
    try:
        pool = await asyncpg.create_pool(
            settings.database_url,
            min_size=1,
            max_size=settings.pg_pool_size,
            statement_cache_size=settings.pg_statement_cache_size,
            server_settings={"search_path": settings.pg_schema},
        )
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise BackendUnavailable(
            f"cannot connect to Postgres at {_redact(settings.database_url)}: {describe(exc)}"
        ) from None
    assert pool is not None  # create_pool returns None only when awaited lazily
    return pool


def is_transient(exc: BaseException) -> bool:
    """True unless the data itself is bad (SQLSTATE class 22 or 23, or unencodable).

    Connection loss, shutdowns, lock timeouts, deadlocks and even a missing table (the
    schema is being migrated) are worth retrying; a bad value is not.
    """
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return not state.startswith(_DATA_CLASSES)
    if isinstance(exc, asyncpg.DataError):  # client side: a value asyncpg cannot encode
        return False
    return isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError)


def translate(exc: BaseException) -> BaseException:
    """Map a driver error to :class:`BackendUnavailable` when it is about reachability."""
    if is_transient(exc) and not isinstance(exc, asyncpg.PostgresError):
        return BackendUnavailable(f"Postgres unavailable: {describe(exc)}")
    if isinstance(exc, asyncpg.PostgresConnectionError | asyncpg.CannotConnectNowError):
        return BackendUnavailable(f"Postgres unavailable: {describe(exc)}")
    if isinstance(exc, asyncpg.exceptions.OperatorInterventionError):
        return BackendUnavailable(f"Postgres unavailable: {describe(exc)}")
    return exc


def describe(exc: BaseException) -> str:
    """Short one-line form for logs and dead-letter entries, with any password removed.

    Driver messages name hosts and users, not passwords ("password authentication
    failed for user"), but an OSError or a configuration error may quote a DSN, so the
    text goes through the redaction every log line uses.
    """
    state = getattr(exc, "sqlstate", None)
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = redact(text)
    return f"{type(exc).__name__}[{state}]: {text}" if state else f"{type(exc).__name__}: {text}"


# userinfo password (scheme://user:PASSWORD@host; up to the last @ of the word, as a
# password may hold an unescaped @) and password=... in a query string or a keyword DSN.
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*):\S*@")
_QUERY_PW = re.compile(r"(?i)(?P<head>\b(?:password|passwd|pwd|sslpassword)=)[^&\s]*")


def _local_redact(text: str) -> str:
    """Stand-in until ``accelerated.redact`` exists: drops URL and query passwords."""
    text = _USERINFO.sub(lambda m: f"{m.group('head')}:***@", text)
    return _QUERY_PW.sub(lambda m: f"{m.group('head')}***", text)


def _shared_redact() -> Callable[[str], str]:
    try:
        from accelerated.redact import redact as shared  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return _local_redact
    return lambda text: _local_redact(shared(text))


redact: Callable[[str], str] = _shared_redact()


def _redact(dsn: str) -> str:
    """Never log a password that may be in the DSN (userinfo or query string)."""
    return redact(dsn)
