"""Document bytes from the local filesystem (the ``BlobSource`` of plain paths).

Reads run in a worker thread so a slow disk or network mount never stalls the event
loop, and the size cap is enforced while reading, not only from ``stat``, so a file
that grows after intake still cannot exhaust memory.
"""

from __future__ import annotations

import os

import anyio.to_thread

from accelerated.errors import ConfigError, DocumentError
from accelerated.models import SourceRef


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):,.1f} MB"


def too_large(size: int, max_bytes: int) -> DocumentError:
    """The error every reader gives for a document over ``MAX_FILE_BYTES``."""
    return DocumentError(
        f"The file is {_mb(size)}, over the {_mb(max_bytes)} limit; split it or raise "
        "MAX_FILE_BYTES.",
        code="too_large",
    )


def read_local(path: str, max_bytes: int) -> bytes:
    """Blocking read with the cap; the errors are the ones the stage records."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > max_bytes:
                raise too_large(size, max_bytes)
            data = fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise DocumentError(f"The file {path} no longer exists.", code="missing") from None
    except IsADirectoryError:
        raise DocumentError(f"{path} is a folder, not a file.", code="unreadable") from None
    except PermissionError:
        raise DocumentError(f"No permission to read {path}.", code="unreadable") from None
    except OSError as exc:
        raise DocumentError(f"{path} cannot be read ({exc.strerror}).", code="unreadable") from None
    if len(data) > max_bytes:
        raise too_large(len(data), max_bytes)
    return data


class LocalBlobReader:
    """``BlobSource`` for absolute paths (and ``file://`` URIs)."""

    schemes: tuple[str, ...] = ("", "file")

    async def read(self, source: SourceRef, max_bytes: int) -> bytes:
        path = source.source.removeprefix("file://")
        if "://" in path:
            raise ConfigError(
                f"LocalBlobReader cannot read {source.source!r}: use the object-store reader"
            )
        return await anyio.to_thread.run_sync(read_local, path, max_bytes)
