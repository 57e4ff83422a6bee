"""S3 objects: ``s3://`` URIs, paginated listing, and reads capped while they stream.

Used by intake (listing a prefix, hashing changed objects: :mod:`accelerated.s3_intake`)
and by the ``s3`` :class:`~accelerated.backends.BlobSource` below, through which a
worker on any host reads a document's bytes from the bucket, never from a path on
the host that queued it.

Every read streams the body in blocks and stops at ``max_bytes``: the object's
``Content-Length`` is checked first (nothing is downloaded for an object over the
cap), and the count while reading guards against an object replaced by a larger one
between the two. Errors are translated at the boundary (``map_driver_errors("s3")``):
a missing or forbidden object becomes a :class:`DocumentError` naming its URI, network
trouble and throttling a retried :class:`BackendUnavailable`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from accelerated.aws import AwsClients
from accelerated.blobs import too_large
from accelerated.boundary import map_driver_errors
from accelerated.errors import ConfigError, DocumentError
from accelerated.models import SourceRef

if TYPE_CHECKING:
    from accelerated.settings import Settings

SCHEME: Final = "s3"
BLOCK: Final = 1024 * 1024  # bytes per read of a streaming body
HEAD_BYTES: Final = 4096  # what format sniffing looks at
# Bucket names as S3 allows them today (3-63 of a-z 0-9 . -, starting and ending with a
# letter or digit); older buckets may have upper case and underscores, so those pass.
_BUCKET: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]")


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    key: str  # "" for a whole bucket

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def is_s3(source: str) -> bool:
    return source.startswith("s3://")


def parse_s3_uri(uri: str) -> S3Uri:
    """``s3://bucket/key``; anything else is a one-line :class:`ConfigError`."""
    if not is_s3(uri):
        raise ConfigError(f"{uri!r} is not an s3://bucket/prefix URI")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise ConfigError(f"{uri!r}: {bucket!r} is not a valid S3 bucket name")
    return S3Uri(bucket, key)


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str  # as S3 reports it, quotes included: compared, never interpreted


@dataclass(frozen=True)
class Digest:
    sha256: str
    size: int
    head: bytes
    etag: str


class S3Store:
    """The S3 calls the pipeline makes, on long-lived clients (see :class:`AwsClients`).

    ``gets`` counts the GetObject calls this store made: intake reports how many
    objects a run had to download, which is how change detection is observed.
    """

    def __init__(self, settings: Settings, clients: AwsClients | None = None) -> None:
        self.settings = settings
        self.clients = clients or AwsClients(settings)
        self.gets = 0

    async def client(self) -> Any:
        return await self.clients.get("s3")

    async def aclose(self) -> None:
        await self.clients.aclose()

    async def list(self, uri: S3Uri) -> AsyncIterator[ObjectInfo]:
        """Every object under ``uri.key`` (a plain prefix), page by page (ListObjectsV2,
        ``S3_LIST_PAGE_SIZE`` keys a page): a prefix of millions never sits in memory."""
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "Bucket": uri.bucket,
                "Prefix": uri.key,
                "MaxKeys": self.settings.s3_list_page_size,
            }
            if token:
                kwargs["ContinuationToken"] = token
            with map_driver_errors("s3"):
                page = await (await self.client()).list_objects_v2(**kwargs)
            for obj in page.get("Contents", ()):
                yield ObjectInfo(str(obj["Key"]), int(obj["Size"]), str(obj.get("ETag", "")))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    async def _open(self, uri: S3Uri, max_bytes: int) -> tuple[Any, str]:
        with map_driver_errors("s3"):
            self.gets += 1
            reply = await (await self.client()).get_object(Bucket=uri.bucket, Key=uri.key)
        body = reply["Body"]
        size = int(reply.get("ContentLength") or 0)
        if size > max_bytes:
            body.close()  # the connection is dropped, not drained
            raise too_large(size, max_bytes)
        return body, str(reply.get("ETag", ""))

    async def _blocks(self, uri: S3Uri, body: Any, max_bytes: int) -> AsyncIterator[bytes]:
        total = 0
        try:
            while True:
                with map_driver_errors("s3"):
                    block = await body.read(BLOCK)
                if not block:
                    return
                total += len(block)
                if total > max_bytes:
                    raise too_large(total, max_bytes)
                yield block
        finally:
            body.close()

    async def read(self, uri: S3Uri, max_bytes: int) -> bytes:
        """The object's bytes, at most ``max_bytes``."""
        try:
            body, _etag = await self._open(uri, max_bytes)
            return b"".join([block async for block in self._blocks(uri, body, max_bytes)])
        except DocumentError as exc:
            raise _about(uri, exc) from None

    async def digest(self, uri: S3Uri, max_bytes: int) -> Digest:
        """sha256, size, first bytes and ETag of the object, streamed: intake hashes an
        object without ever holding more than one block of it."""
        h = hashlib.sha256()
        size, head = 0, b""
        try:
            body, etag = await self._open(uri, max_bytes)
            async for block in self._blocks(uri, body, max_bytes):
                if len(head) < HEAD_BYTES:
                    head += block[: HEAD_BYTES - len(head)]
                h.update(block)
                size += len(block)
        except DocumentError as exc:
            raise _about(uri, exc) from None
        return Digest(h.hexdigest(), size, head, etag)

    async def put(self, uri: S3Uri, data: bytes) -> None:
        with map_driver_errors("s3"):
            await (await self.client()).put_object(Bucket=uri.bucket, Key=uri.key, Body=data)


def _about(uri: S3Uri, exc: DocumentError) -> DocumentError:
    """The same error, saying which object (the mapper does not know it)."""
    message = str(exc.args[0])
    if message.startswith("The file is"):  # blobs' size message reads as a sentence
        return DocumentError(f"{uri}: {message}", code=exc.code)
    return DocumentError(f"The object {uri}: {message}", code=exc.code)


class S3BlobSource:
    """``BlobSource`` for ``s3://`` sources: the worker's own read of the object."""

    schemes: tuple[str, ...] = (SCHEME,)

    def __init__(self, settings: Settings, store: S3Store | None = None) -> None:
        self.store = store or S3Store(settings)

    async def read(self, source: SourceRef, max_bytes: int) -> bytes:
        return await self.store.read(parse_s3_uri(source.source), max_bytes)

    async def aclose(self) -> None:
        await self.store.aclose()
