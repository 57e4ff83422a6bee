"""Where values too large for Redis go: a content-addressed store beside it.

A stage output or a write-behind intent over ``MAX_VALUE_BYTES`` is written here and
Redis keeps a small reference frame instead (``codec.FLAG_SPILLED``), as the old
pipeline's notes ask, rather than failing the document. Files are named by the
sha256 of their bytes, so a repeated write is a no-op and any reader that can see the
directory (every process of a ``batch``, workers sharing a volume) reads them. Files
untouched for longer than the stage TTL are pruned.

Workers on other hosts share no directory: with ``SPILL_URL=s3://bucket/prefix`` the
values go to the object store instead (:class:`S3Spill`, same two methods, objects
named ``<prefix>/<sha256>``). The store is synchronous because the codec that calls
it is; spills are rare by design (values over ``MAX_VALUE_BYTES``, 64 MiB by
default), and the local directory blocks the same way for a write of that size.
Old objects are removed by a lifecycle rule on the prefix (longer than
``TTL_STAGE_S``), which S3 applies without a client listing the bucket.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from accelerated.errors import CodecError, ConfigError, DocumentError

if TYPE_CHECKING:
    from accelerated.settings import Settings

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


class S3Spill:
    """Spilled values as objects ``<prefix>/<sha256>`` in an S3 bucket (``SPILL_URL``)."""

    def __init__(self, settings: Settings, url: str) -> None:
        from accelerated.s3 import parse_s3_uri

        self.settings = settings
        self.uri = parse_s3_uri(url)
        self.prefix = f"{self.uri.key.strip('/')}/" if self.uri.key.strip("/") else ""
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        """botocore clients are thread-safe: one per store, made on first use."""
        with self._lock:
            if self._client is None:
                from accelerated.aws import sync_client

                self._client = sync_client(self.settings, "s3")
            return self._client

    def _key(self, ref: str) -> str:
        return f"{self.prefix}{ref}"

    def put(self, data: bytes) -> bytes:
        from accelerated.boundary import map_driver_errors

        ref = hashlib.sha256(data).hexdigest()
        # Written again even when present: it refreshes the object's age for the
        # lifecycle rule, and spills are rare.
        try:
            with map_driver_errors("s3"):
                self.client().put_object(Bucket=self.uri.bucket, Key=self._key(ref), Body=data)
        except DocumentError as exc:  # the bucket is gone or forbids writing
            raise CodecError(f"cannot spill to {self.uri}: {exc.args[0]}") from None
        return ref.encode()

    def get(self, ref: bytes, max_bytes: int) -> bytes:
        from accelerated.boundary import map_driver_errors

        if not _REF.fullmatch(ref):
            raise CodecError("malformed spill reference")
        name = ref.decode()
        try:
            with map_driver_errors("s3"):
                reply = self.client().get_object(Bucket=self.uri.bucket, Key=self._key(name))
                body = reply["Body"]
                try:
                    size = int(reply.get("ContentLength") or 0)
                    if size > max_bytes:
                        raise CodecError(
                            f"spilled value is {size} bytes, over the {max_bytes}-byte cap"
                        )
                    data: bytes = body.read(max_bytes + 1)
                finally:
                    body.close()
        except DocumentError as exc:
            raise CodecError(
                f"spilled value {name[:12]}... cannot be read from {self.uri}: {exc.args[0]}"
            ) from None
        if len(data) > max_bytes:
            raise CodecError(f"spilled value is over the {max_bytes}-byte cap")
        if hashlib.sha256(data).hexdigest() != name:
            raise CodecError("spilled value does not match its reference (corrupt object)")
        return data

    def check(self) -> None:
        """At start-up: the bucket exists and these credentials reach it (HeadBucket),
        or one :class:`ConfigError` naming ``SPILL_URL``."""
        from accelerated.aws import classify

        try:
            self.client().head_bucket(Bucket=self.uri.bucket)
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
            raise ConfigError(f"SPILL_URL={self.uri}: {failure.text}") from None


def make_spill(settings: Settings) -> SpillStore | None:
    """The spill store the settings ask for: ``SPILL_URL``'s bucket, else the local
    ``SPILL_DIR`` (default ``<STATE_DIR>/spill``); None with ``SPILL=false``."""
    if not settings.spill:
        return None
    if settings.spill_url:
        return S3Spill(settings, settings.spill_url)
    return LocalSpill(settings.spill_dir or settings.state_dir / "spill", settings.ttl_stage_s)
