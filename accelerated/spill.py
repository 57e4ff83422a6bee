"""Where values too large for Redis go: a content-addressed store beside it.

A stage output or a write-behind intent over ``MAX_VALUE_BYTES`` is written here and
Redis keeps a small reference frame instead (``codec.FLAG_SPILLED``), as the old
pipeline's notes ask, rather than failing the document. Files are named by the
sha256 of their bytes, so a repeated write is a no-op and any reader that can see the
directory (every process of a ``batch``, workers sharing a volume) reads them; an
object-store implementation for workers on other hosts plugs in behind the same two
methods. Files untouched for longer than the stage TTL are pruned.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path
from typing import Final, Protocol

from accelerated.errors import CodecError

_REF: Final = re.compile(rb"[0-9a-f]{64}")


class SpillStore(Protocol):
    def put(self, data: bytes) -> bytes:
        """Store ``data``; returns its reference (ASCII, at most 64 bytes)."""
        ...

    def get(self, ref: bytes, max_bytes: int) -> bytes: ...


class LocalSpill:
    """A directory of files named by content hash (written atomically)."""

    def __init__(self, directory: Path, max_age_s: float | None = None) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        if max_age_s:
            self.prune(max_age_s)

    def put(self, data: bytes) -> bytes:
        ref = hashlib.sha256(data).hexdigest()
        path = self.dir / ref
        if not path.exists():
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        else:
            os.utime(path)  # still in use: not pruned
        return ref.encode()

    def get(self, ref: bytes, max_bytes: int) -> bytes:
        if not _REF.fullmatch(ref):
            raise CodecError("malformed spill reference")
        path = self.dir / ref.decode()
        try:
            size = path.stat().st_size
            if size > max_bytes:
                raise CodecError(f"spilled value is {size} bytes, over the {max_bytes}-byte cap")
            data = path.read_bytes()
        except FileNotFoundError:
            raise CodecError(
                f"spilled value {ref.decode()[:12]}... is gone from {self.dir}"
            ) from None
        if hashlib.sha256(data).hexdigest().encode() != ref:
            raise CodecError("spilled value does not match its reference (corrupt file)")
        return data

    def prune(self, max_age_s: float) -> int:
        cutoff = time.time() - max_age_s
        removed = 0
        for path in self.dir.iterdir():
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed
