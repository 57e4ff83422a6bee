"""Intake from S3: list the prefixes, tell changed objects by ETag and size, hash those.

``--input s3://bucket/prefix`` is the S3 twin of a local folder:

* **listing**: ListObjectsV2, page by page (``S3_LIST_PAGE_SIZE`` keys a page). The
  prefix is a folder: ``s3://b/docs`` takes ``docs/...`` but not ``docs2/...``, and
  names the object ``docs`` itself when it is one (a single-object input). Source keys
  are relative to the prefix, as they are to a local folder; ``--exclude`` patterns,
  hidden parts (``.x``) and the document extensions apply the same way. Zero-byte
  "folder" markers (keys ending in ``/``) are not documents.
* **change detection**: documents are identified and cached by the sha256 of their
  bytes, which S3 does not report. The first intake of an object downloads it (a
  stream, at most ``MAX_FILE_BYTES``, never held whole in memory) to hash it and
  records ``(ETag, size) -> (sha256, format)`` in Postgres (``object_versions``); a
  later intake takes the sha256 from there for every object whose ETag and size are
  unchanged and downloads nothing. Unchanged, finished documents are then not queued
  again by the usual rule (same sha256, status done). A changed object (new ETag or
  size) is downloaded and hashed again; an object changed with the same content keeps
  its sha256 and is not re-run.
* **failures**: the first listing of each input is a start-up check (no such bucket,
  access denied, refused or missing credentials, an endpoint that cannot be reached:
  one :class:`ConfigError` line, exit 2). An object that cannot be read while hashing
  (deleted since the listing, access denied, over ``MAX_FILE_BYTES``) still gets a
  document, whose extract stage reads it again and records the clear per-document
  error, as a local file that cannot be read does.

The worker's own read of the object (:class:`accelerated.s3.S3BlobSource`) is a second
download for a new or changed object: the price of content-hash ids, paid once.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

import asyncpg  # type: ignore[import-untyped]

from accelerated.aws import classify, endpoint_url
from accelerated.errors import (
    BackendRejected,
    BackendUnavailable,
    ConfigError,
    DocumentError,
)
from accelerated.ids import document_id, validate_project
from accelerated.intake import DOCUMENT_EXTENSIONS, NOT_A_DOCUMENT, excluded, sniff
from accelerated.models import SourceRef
from accelerated.s3 import S3Store, S3Uri, parse_s3_uri
from persistence.objects import ObjectVersion, known_versions, record_versions

if TYPE_CHECKING:
    from accelerated.settings import Settings

_EMPTY_SHA = hashlib.sha256(b"").hexdigest()
# Failures of the first call that mean "cannot connect at all", not "busy right now".
_UNREACHABLE = frozenset({"EndpointConnectionError", "ConnectTimeoutError"})


@dataclass(frozen=True)
class S3Object:
    source: str  # s3://bucket/key
    source_key: str  # relative to the input prefix: part of the document id
    size: int
    etag: str | None  # None: a known document whose object the listing no longer has


@dataclass
class S3Intake:
    """What an S3 intake found and did (the batch summary shows the counts)."""

    refs: list[SourceRef] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # source key -> why not taken
    listed: int = 0  # objects the listings returned
    downloaded: int = 0  # objects fetched to hash: new or changed
    unchanged: int = 0  # ETag and size as recorded: sha256 from Postgres, no download


def relative_key(prefix: str, key: str) -> str | None:
    """``key`` relative to the input ``prefix``, or None when it is not under it."""
    if not prefix or prefix.endswith("/"):
        return key[len(prefix) :] if key.startswith(prefix) else None
    if key == prefix:
        return PurePosixPath(key).name  # the input names one object
    if key.startswith(prefix + "/"):
        return key[len(prefix) + 1 :]
    return None  # "docs2/x" under the prefix "docs": another folder


async def probe(store: S3Store, uri: S3Uri) -> None:
    """The first call to the input's bucket, with every failure said in one line:
    a listing that cannot even start is a configuration problem, except throttling or
    a server error, which the run's outage policy waits out."""
    client = await store.client()
    try:
        await client.list_objects_v2(Bucket=uri.bucket, Prefix=uri.key, MaxKeys=1)
    except Exception as exc:
        failure = classify(exc)
        if failure is None:
            raise
        where = f"--input {uri}"
        if failure.kind == "unavailable" and failure.code not in _UNREACHABLE:
            raise BackendUnavailable(f"s3 unavailable: {failure.text}", backend="s3") from None
        if failure.kind == "unavailable":
            endpoint = endpoint_url(store.settings, "s3")
            at = f"S3_ENDPOINT_URL={endpoint}" if endpoint else "the AWS S3 endpoint"
            raise ConfigError(f"{where}: cannot reach {at} ({failure.text})") from None
        if failure.kind == "missing":
            raise ConfigError(f"{where}: no such bucket {uri.bucket!r} ({failure.text})") from None
        if failure.kind == "denied":
            raise ConfigError(
                f"{where}: access denied listing the bucket ({failure.text}); the "
                "credentials need s3:ListBucket on it and s3:GetObject on its objects"
            ) from None
        if failure.kind == "credentials":
            raise ConfigError(f"{where}: S3 refused the credentials ({failure.text})") from None
        raise ConfigError(f"{where}: {failure.text}") from None


async def discover(
    store: S3Store, inputs: list[str], exclude: list[str], found: S3Intake
) -> list[S3Object]:
    """List every input, in key order (S3 lists keys in UTF-8 binary order)."""
    objects: list[S3Object] = []
    for text in inputs:
        uri = parse_s3_uri(text)
        await probe(store, uri)
        try:
            async for info in store.list(uri):
                found.listed += 1
                rel = relative_key(uri.key, info.key)
                if not rel or info.key.endswith("/"):
                    continue  # another folder, or a folder marker
                if excluded(rel, exclude):
                    continue
                if PurePosixPath(rel).suffix.lower() not in DOCUMENT_EXTENSIONS:
                    found.skipped[rel] = NOT_A_DOCUMENT
                    continue
                source = str(S3Uri(uri.bucket, info.key))
                objects.append(S3Object(source, rel, info.size, info.etag))
        except (DocumentError, BackendRejected) as exc:  # the bucket vanished mid-listing
            raise ConfigError(f"--input {uri}: {exc}") from None
    return objects


async def relist(store: S3Store, known: list[SourceRef], found: S3Intake) -> list[S3Object]:
    """The current ETag and size of documents intake took before (``--reprocess``).

    Each document's prefix is its key less its source key; every distinct prefix is
    listed once. A document whose object (or bucket) is gone keeps its document, and
    its extract stage reports it missing.
    """
    prefixes: dict[tuple[str, str], dict[str, tuple[int, str]]] = {}
    for ref in known:
        uri = parse_s3_uri(ref.source)
        prefix = uri.key[: len(uri.key) - len(ref.source_key)]
        prefixes.setdefault((uri.bucket, prefix), {})
    for (bucket, prefix), seen in prefixes.items():
        try:
            async for info in store.list(S3Uri(bucket, prefix)):
                found.listed += 1
                seen[info.key] = (info.size, info.etag)
        except (DocumentError, BackendRejected):
            continue  # bucket gone or now forbidden: each document says so when read
    out: list[S3Object] = []
    for ref in known:
        uri = parse_s3_uri(ref.source)
        prefix = uri.key[: len(uri.key) - len(ref.source_key)]
        size, etag = prefixes[(uri.bucket, prefix)].get(uri.key, (ref.size, None))
        out.append(S3Object(ref.source, ref.source_key, size, etag))
    return out


async def fingerprint(
    pool: asyncpg.Pool,
    store: S3Store,
    project: str,
    objects: list[S3Object],
    generation: int,
    found: S3Intake,
) -> list[SourceRef]:
    """A document per object: sha256 from ``object_versions`` when ETag and size are
    as recorded, else from a streamed download (then recorded)."""
    validate_project(project)
    settings = store.settings
    known = await known_versions(pool, project, [o.source for o in objects])
    sem = asyncio.Semaphore(max(1, settings.concurrency))
    fresh: list[ObjectVersion] = []

    def ref(obj: S3Object, sha: str, size: int, fmt: str) -> SourceRef:
        return SourceRef(
            document_id=document_id(project, obj.source_key),
            project=project,
            source=obj.source,
            source_key=obj.source_key,
            sha256=sha,
            size=size,
            format=fmt,
            generation=generation,
        )

    async def one(obj: S3Object) -> SourceRef:
        was = known.get(obj.source)
        if (
            was is not None
            and obj.etag is not None
            and (was.etag, was.size)
            == (
                obj.etag,
                obj.size,
            )
        ):
            found.unchanged += 1
            return ref(obj, was.sha256, was.size, was.format)
        unread = ref(obj, _EMPTY_SHA, obj.size, sniff(obj.source_key, b""))
        if obj.etag is None or obj.size > settings.max_file_bytes:
            return unread  # gone, or too large: extract's own read says which
        async with sem:
            try:
                digest = await store.digest(parse_s3_uri(obj.source), settings.max_file_bytes)
            except DocumentError:
                return unread  # deleted since the listing, forbidden: extract says why
        found.downloaded += 1
        fmt = sniff(obj.source_key, digest.head)
        # The ETag of the bytes hashed (the object may have changed since the listing).
        fresh.append(
            ObjectVersion(obj.source, digest.etag or str(obj.etag), digest.size, digest.sha256, fmt)
        )
        return ref(obj, digest.sha256, digest.size, fmt)

    refs = list(await asyncio.gather(*(one(o) for o in objects)))
    await record_versions(pool, project, fresh)
    return refs


async def intake(
    pool: asyncpg.Pool,
    settings: Settings,
    project: str,
    inputs: list[str],
    exclude: list[str],
    generation: int,
    *,
    known: list[SourceRef] | None = None,
    seen: set[str] | None = None,
    limit: int | None = None,
) -> S3Intake:
    """List ``inputs`` (and re-check the ``known`` S3 documents of a ``--reprocess``),
    take at most ``limit`` objects whose keys are not in ``seen``, and make their refs."""
    found = S3Intake()
    store = S3Store(settings)
    try:
        objects = await relist(store, known, found) if known else []
        taken = set(seen or ()) | {o.source_key for o in objects}
        for obj in await discover(store, inputs, exclude, found) if inputs else []:
            if obj.source_key not in taken:
                taken.add(obj.source_key)
                objects.append(obj)
        if limit is not None:
            objects = objects[:limit]
        found.refs = await fingerprint(pool, store, project, objects, generation, found)
    finally:
        await store.aclose()
    return found
