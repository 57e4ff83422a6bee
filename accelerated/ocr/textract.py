"""AWS Textract's asynchronous text detection (``OCR_BACKEND=textract``).

An :class:`~accelerated.backends.AsyncDocumentOcr`: the ``ocr`` stage starts a
``StartDocumentTextDetection`` job on the file's S3 object and parks the document;
the deployment's poller calls ``GetDocumentTextDetection`` until the job is over and
follows every ``NextToken`` page of its blocks (``accelerated/ocr/jobs.py``). The
``LINE`` blocks of each page, in Textract's reading order, become that page's text.

Textract reads only from S3: a document intake found on local disk is first uploaded
to ``TEXTRACT_STAGING`` (``s3://bucket/prefix``) under its content hash, so the same
bytes are uploaded once however often, and wherever, they are queued. An ``s3://``
source is read where it is.

The clients are ``accelerated.aws``'s (the usual credential chain, ``AWS_REGION``,
``TEXTRACT_ENDPOINT_URL`` / ``S3_ENDPOINT_URL``): long-lived, one per service and event
loop. botocore's own retries are off for Textract (``aws.RATE_LIMITED``): every request
goes through the shared rate limit, and the callers (the engine, the poller) retry with
their own backoff.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from accelerated.aws import NO_CREDENTIALS, AwsClients, classify, region_for, to_pipeline_error
from accelerated.backends import OcrJobResult, OcrText, RateGate
from accelerated.errors import (
    BackendRejected,
    BackendUnavailable,
    ConfigError,
    DocumentError,
    PipelineError,
)
from accelerated.settings import S3_URI_RE, Settings

# The API (and so the output format) is the version: Textract reports a model version
# per job, but does not let a caller choose it.
VERSION: Final = "textract-text-2018-06-27"
# Formats Textract's asynchronous API reads, by our format name -> staging suffix.
FORMATS: Final = {
    "pdf": "pdf",
    "tiff": "tiff",
    "tif": "tiff",
    "png": "png",
    "jpeg": "jpg",
    "jpg": "jpg",
}
MAX_RESULTS: Final = 1000  # blocks per GetDocumentTextDetection page (the API's maximum)
THROTTLED: Final = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "LimitExceededException"}
)
# The document itself: another attempt gets the same answer.
REFUSED: Final = frozenset(
    {
        "InvalidS3ObjectException",
        "UnsupportedDocumentException",
        "DocumentTooLargeException",
        "BadDocumentException",
        "InvalidParameterException",
    }
)
COOL_DOWN_MS: Final = 1000.0  # every worker holds off this long after a throttling reply


# --- start-up and errors (the shared parts are in accelerated/aws.py) ----------------
def warm_up(session: Any) -> None:
    """Load the service models now, at start-up: the first client of a process would
    otherwise read and parse them on the event loop (about 0.7 s of CPU here), stalling
    every task of the process, the poller's lock renewal included."""
    loader = session._session.get_component("data_loader")
    for service in ("s3", "textract"):
        for kind in ("service-2", "endpoint-rule-set-1"):
            loader.load_service_model(service, kind)


def check_aws(settings: Settings, needed_by: str) -> None:
    """Start-up checks, each a one-line ConfigError naming the variable to set.

    Synchronous (backend factories are), on botocore's own chain: the answers the async
    session gets later, from the environment, the files or the instance role."""
    try:
        import aioboto3  # noqa: F401
        import botocore.session
    except ImportError as exc:
        raise ConfigError(
            f"{needed_by} needs aioboto3 ({exc}): pip install 'legal-pipeline-accelerated[aws]'"
        ) from None
    session = botocore.session.Session()
    try:
        region_for(settings, "textract", session.get_config_variable("region"))
    except ConfigError as exc:
        raise ConfigError(f"{needed_by}: {exc}") from None
    if session.get_credentials() is None:
        raise ConfigError(f"{needed_by}: {NO_CREDENTIALS}")


@contextlib.asynccontextmanager
async def _calls(what: str, gate: RateGate | None = None) -> AsyncIterator[None]:
    """AWS errors as pipeline errors: ``accelerated.aws`` sorts them; what is particular
    to Textract (a refused document; throttling, which every worker must heed) is here."""
    try:
        yield
    except PipelineError:
        raise
    except Exception as exc:
        failure = classify(exc)
        if failure is None:
            raise
        text = f"{what}: {failure.text}"
        if failure.code in THROTTLED:
            if gate is not None:
                await gate.cool_down(COOL_DOWN_MS)
            raise BackendUnavailable(f"{text} (throttled)", backend="textract") from None
        if failure.code in REFUSED:
            raise DocumentError(f"Textract refused the document ({text})", code="ocr") from None
        mapped = to_pipeline_error(exc, "textract")
        if isinstance(mapped, DocumentError):  # a staged object missing, access denied
            raise DocumentError(f"{what}: {mapped.args[0]}", code=mapped.code) from None
        raise (mapped or BackendRejected(text, backend="textract")) from None


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    m = S3_URI_RE.fullmatch(uri)
    if m is None:
        raise DocumentError(f"{uri!r} is not an s3://bucket/key URI", code="ocr")
    return m.group(1), m.group(2) or ""


def pages_from_blocks(
    blocks: list[dict[str, Any]], into: dict[int, list[tuple[str, float]]]
) -> None:
    """Fold one response's ``LINE`` blocks into ``into`` (page number -> lines with
    their confidence), keeping Textract's order within each page. ``WORD`` and the
    other blocks are dropped at once: a long document's blocks do not pile up."""
    for block in blocks:
        if block.get("BlockType") == "LINE":
            into.setdefault(int(block.get("Page", 1)), []).append(
                (str(block.get("Text", "")), float(block.get("Confidence", -1.0)))
            )


def page_texts(lines: dict[int, list[tuple[str, float]]], page_count: int) -> dict[int, OcrText]:
    """Every page from 1 to ``page_count`` (a page without lines is empty text)."""
    out: dict[int, OcrText] = {}
    for n in range(1, max(page_count, max(lines, default=0)) + 1):
        got = lines.get(n, [])
        conf = sum(c for _t, c in got) / len(got) if got else -1.0
        out[n] = OcrText(text="\n".join(t for t, _c in got), confidence=conf)
    return out


@dataclass(frozen=True)
class TextractService:
    """``AsyncDocumentOcr`` over AWS Textract; built (and validated) from settings."""

    settings: Settings
    staging_bucket: str
    staging_prefix: str
    mode: Literal["document"] = "document"
    name: str = "textract"
    version: str = VERSION
    clients: AwsClients = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "clients", AwsClients(self.settings))

    @classmethod
    def from_settings(cls, settings: Settings) -> TextractService:
        if not settings.textract_staging:
            raise ConfigError(
                "OCR_BACKEND=textract needs TEXTRACT_STAGING=s3://bucket/prefix (where local "
                "files are uploaded for Textract to read)"
            )
        check_aws(settings, "OCR_BACKEND=textract")
        bucket, prefix = split_s3(settings.textract_staging)
        prefix = prefix.strip("/")
        service = cls(settings, bucket, f"{prefix}/" if prefix else "")
        warm_up(service.clients.session)
        return service

    async def aclose(self) -> None:
        await self.clients.aclose()

    async def locate(
        self, name: str, source: str, fmt: str, read: Callable[[], Awaitable[bytes]]
    ) -> str:
        if source.startswith("s3://"):
            return source  # read in place
        suffix = FORMATS.get(fmt)
        if suffix is None:
            raise DocumentError(f"Textract cannot read {fmt} files", code="ocr")
        key = f"{self.staging_prefix}{name}.{suffix}"
        uri = f"s3://{self.staging_bucket}/{key}"
        async with _calls(f"staging upload to {uri}"):
            s3 = await self.clients.get("s3")
            try:
                await s3.head_object(Bucket=self.staging_bucket, Key=key)
                return uri  # uploaded before: the name is a content hash
            except Exception as exc:
                failure = classify(exc)
                # 403 too: without s3:ListBucket a missing key reads as forbidden.
                if failure is None or failure.status not in (403, 404):
                    raise
            data = await read()
            await s3.put_object(Bucket=self.staging_bucket, Key=key, Body=data)
        return uri

    async def start(self, location: str, token: str, gate: RateGate) -> str:
        bucket, key = split_s3(location)
        async with _calls("StartDocumentTextDetection", gate):
            tx = await self.clients.get("textract")
            await gate.wait()
            resp = await tx.start_document_text_detection(
                DocumentLocation={"S3Object": {"Bucket": bucket, "Name": key}},
                ClientRequestToken=token,
                JobTag="legal-pipeline",
            )
        return str(resp["JobId"])

    async def poll(self, job_id: str, gate: RateGate) -> OcrJobResult:
        lines: dict[int, list[tuple[str, float]]] = {}
        page_count = 0
        token: str | None = None
        async with _calls("GetDocumentTextDetection", gate):
            tx = await self.clients.get("textract")
        while True:
            kwargs: dict[str, Any] = {"JobId": job_id, "MaxResults": MAX_RESULTS}
            if token:
                kwargs["NextToken"] = token
            try:
                async with _calls("GetDocumentTextDetection", gate):
                    await gate.wait()
                    try:
                        resp = await tx.get_document_text_detection(**kwargs)
                    except Exception as exc:
                        failure = classify(exc)
                        if failure is None or failure.code != "InvalidJobIdException":
                            raise
                        return OcrJobResult(
                            "failed", error="Textract no longer knows this job (expired?)"
                        )
            except DocumentError as exc:  # InvalidS3Object & co. while it ran
                return OcrJobResult("failed", error=str(exc))
            status = resp.get("JobStatus")
            if status == "IN_PROGRESS":
                return OcrJobResult("running")
            if status != "SUCCEEDED":  # FAILED, PARTIAL_SUCCESS
                return OcrJobResult("failed", error=_failure(resp))
            page_count = max(page_count, int(resp.get("DocumentMetadata", {}).get("Pages", 0)))
            pages_from_blocks(resp.get("Blocks", []), lines)
            token = resp.get("NextToken")
            if not token:
                break
        return OcrJobResult("succeeded", pages=page_texts(lines, page_count))


def _failure(resp: dict[str, Any]) -> str:
    """FAILED / PARTIAL_SUCCESS in words: the status, its message, the pages warned about."""
    parts = [str(resp.get("JobStatus"))]
    if resp.get("StatusMessage"):
        parts.append(str(resp["StatusMessage"]))
    for w in resp.get("Warnings", []) or []:
        pages = ",".join(str(p) for p in w.get("Pages", []))
        parts.append(f"{w.get('ErrorCode', 'warning')} on page(s) {pages}")
    return "; ".join(parts)
