"""Postgres connections. Driver errors become pipeline errors in
:mod:`accelerated.boundary`; the writer uses :func:`is_transient` to tell "retry
later" from "this data can never be written".
"""

from __future__ import annotations

import asyncpg  # type: ignore[import-untyped]

from accelerated.boundary import describe, pg_is_transient
from accelerated.errors import BackendUnavailable, ConfigError
from accelerated.redact import redact
from accelerated.settings import Settings

__all__ = ["create_pool", "describe", "is_transient", "redact"]


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
    except (
        asyncpg.InvalidAuthorizationSpecificationError,
        asyncpg.InvalidPasswordError,
        asyncpg.InvalidCatalogNameError,
    ) as exc:
        # A wrong password or database is a setting to fix, not an outage to wait out.
        raise ConfigError(
            f"DATABASE_URL is refused by {redact(settings.database_url)}: {describe(exc)}"
        ) from None
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise BackendUnavailable(
            f"cannot connect to Postgres at {redact(settings.database_url)}: {describe(exc)}",
            backend="postgres",
        ) from None
    assert pool is not None  # create_pool returns None only when awaited lazily
    return pool


def is_transient(exc: BaseException) -> bool:
    """True unless the data itself is bad (see ``boundary.pg_is_transient``)."""
    return pg_is_transient(exc)
