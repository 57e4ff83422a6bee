"""asyncio pieces that never lose a task's cancellation (Python 3.11's ``wait_for`` does).

On Python 3.11, ``asyncio.wait_for`` returns the inner result and *drops* the
cancellation when the task is cancelled in the same loop iteration as the inner
awaitable finishes (cpython gh-86296, fixed in 3.12 by rebuilding ``wait_for`` on
``asyncio.timeout``). That is not a corner case here: redis-py (8.x; older versions
with ``socket_timeout`` set) wraps every socket write in ``wait_for``, and a write to
a local server finishes at once, so a Ctrl-C that cancelled the batch while it was
issuing Redis commands was lost about four times in five and the run went on to the
end (measured: 243 of 300 cancellations of a loop of ``SET`` calls lost with redis-py
8.1 on 3.11). asyncpg ships its own backport for the same reason
(``asyncpg/_asyncio_compat.py``).

* :func:`wait_for` is 3.12's ``wait_for`` (an ``asyncio.timeout`` block): the
  project's code uses it, never ``asyncio.wait_for`` (ruff bans that name).
* :class:`Connection`, :class:`SSLConnection` and :class:`UnixConnection` are
  redis-py's connections with the write timeout kept by ``asyncio.timeout`` instead
  of ``wait_for``; :func:`connection_class` picks one by URL scheme and
  ``connect.redis_client`` builds every client the pipeline uses with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from redis.asyncio import connection as rconn
from redis.exceptions import TimeoutError as RedisTimeoutError

T = TypeVar("T")


async def wait_for(aw: Awaitable[T], timeout: float | None) -> T:  # noqa: ASYNC109
    """``await aw`` within ``timeout`` seconds (``TimeoutError`` past it), keeping a
    cancellation of the calling task whatever the timing."""
    async with asyncio.timeout(timeout):
        return await aw


class _TimedWrites:
    """Mixin: redis-py's ``send_packed_command`` with its write timeout taken over.

    redis-py skips its own ``wait_for`` when ``socket_timeout`` is unset, so for the
    duration of the call it is unset and an ``asyncio.timeout`` of the same length
    bounds the whole call (the health-check PING it may send included) instead.
    A connection runs one command at a time, so nothing else reads the attribute
    meanwhile; it is restored in every case.
    """

    socket_timeout: float | None

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        timeout = self.socket_timeout
        send = super().send_packed_command  # type: ignore[misc]
        if not timeout:
            await send(command, check_health)
            return
        self.socket_timeout = None
        try:
            async with asyncio.timeout(timeout):
                await send(command, check_health)
        except TimeoutError:
            await self.disconnect(nowait=True)  # type: ignore[attr-defined]
            raise RedisTimeoutError("Timeout writing to socket") from None
        finally:
            self.socket_timeout = timeout


class Connection(_TimedWrites, rconn.Connection):
    """``redis://``"""


class SSLConnection(_TimedWrites, rconn.SSLConnection):
    """``rediss://``"""


class UnixConnection(_TimedWrites, rconn.UnixDomainSocketConnection):
    """``unix://``"""


def connection_class(url: str) -> type[Any]:
    """The cancellation-safe connection class for a Redis URL's scheme."""
    scheme = urlsplit(url).scheme
    return {"rediss": SSLConnection, "unix": UnixConnection}.get(scheme, Connection)
