"""AWS clients, built in one place for every backend that talks to AWS.

S3 input (:mod:`accelerated.s3`), the S3 spill store (:mod:`accelerated.spill`) and
Textract all get their clients here, so they share one answer to each question:

* **credentials**: botocore's own chain (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``
  / ``AWS_SESSION_TOKEN``, ``AWS_PROFILE`` and ``~/.aws``, web identity, an instance or
  task role). No setting of ours holds a key, so none can be logged;
* **region**: ``AWS_REGION`` (the ``aws_region`` setting), else botocore's chain
  (``AWS_DEFAULT_REGION``, the config file), else ``us-east-1`` for S3, whose global
  endpoint needs none; another service without a region is a :class:`ConfigError`;
* **endpoint**: the ``<service>_endpoint_url`` setting when present (``S3_ENDPOINT_URL``
  for MinIO, moto or LocalStack; a backend for another service adds its own field,
  e.g. ``textract_endpoint_url``), with path-style addressing for S3 there, since
  such servers rarely resolve ``bucket.host`` names;
* **retries and time-outs**: botocore's ``standard`` retry mode (backoff with jitter,
  throttling and 5xx retried) with ``AWS_MAX_ATTEMPTS``, ``AWS_CONNECT_TIMEOUT_S``,
  ``AWS_READ_TIMEOUT_S``;
* **errors**: :func:`classify` sorts whatever botocore or aiohttp raised into a few
  kinds, and :func:`to_pipeline_error` turns them into this package's errors; it is
  registered with :func:`accelerated.boundary.register_mapper` as ``"s3"``, so code
  that calls AWS runs inside ``with map_driver_errors("s3"):`` like every other driver.

Async code keeps its clients in an :class:`AwsClients` (one long-lived client per
service: connections and the parsed service model are reused, as aiobotocore's docs
recommend) and closes it with ``aclose()``. The few synchronous callers (the codec's
spill store) use :func:`sync_client`, plain botocore with the same settings.

aioboto3 is the optional ``aws`` extra: it is imported only when a client is made, so
a deployment without AWS never loads it, and one that needs it without having it gets
one :class:`ConfigError` naming the package.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from accelerated.boundary import describe, register_mapper
from accelerated.errors import (
    BackendRejected,
    BackendUnavailable,
    ConfigError,
    DocumentError,
    PipelineError,
)

if TYPE_CHECKING:
    from botocore.config import Config

    from accelerated.settings import Settings

S3_DEFAULT_REGION: Final = "us-east-1"

FailureKind = Literal["missing", "denied", "credentials", "unavailable", "config", "rejected"]

# AWS error codes by what they mean for the caller. Codes are the same across services
# (S3's XML and the JSON protocols of Textract & co.); HeadObject, which has no body,
# reports only the status as its code ("404", "403").
_MISSING: Final = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchVersion", "NotFound", "404"})
_DENIED: Final = frozenset(
    {"AccessDenied", "AccessDeniedException", "AllAccessDisabled", "AccountProblem", "403"}
)
_CREDENTIALS: Final = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "MissingAuthenticationToken",
    }
)
# Credentials that expired under a long run are refreshed by botocore on the next call.
_TRANSIENT: Final = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "TokenRefreshRequired",
        "RequestTimeout",
        "RequestTimeoutException",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
    }
)
_CONFIG: Final = frozenset(
    {"AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraintException"}
)


# --- clients -----------------------------------------------------------------------


def endpoint_url(settings: Settings, service: str) -> str | None:
    """The endpoint override for ``service`` (``S3_ENDPOINT_URL`` ...), or None for AWS."""
    value = getattr(settings, f"{service}_endpoint_url", None)
    return str(value) if value else None


def _aioboto3() -> Any:
    try:
        import aioboto3
    except ImportError:
        raise ConfigError(
            "AWS access (S3 input, SPILL_URL, Textract) needs aioboto3: "
            "pip install 'legal-pipeline-accelerated[aws]'"
        ) from None
    return aioboto3


def session_from_settings(settings: Settings) -> Any:
    """An ``aioboto3.Session`` on the usual credential chain, in ``AWS_REGION`` if set.

    Making a session reads no credentials yet (they resolve on the first call, or in
    :func:`check_credentials`), so building one at start-up costs nothing."""
    return _aioboto3().Session(region_name=settings.aws_region)


def region_for(settings: Settings, service: str, session_region: str | None) -> str:
    region = settings.aws_region or session_region
    if region:
        return region
    if service == "s3":
        return S3_DEFAULT_REGION
    raise ConfigError(
        f"{service} needs an AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or a "
        "region in the AWS config file)"
    )


# Services whose every request waits on the shared rate limiter (Textract's
# TEXTRACT_TPS): botocore must not send one again on its own, past the limiter; their
# callers (the engine, the OCR poller) retry with their own backoff.
RATE_LIMITED: Final = frozenset({"textract"})


def client_config(settings: Settings, service: str) -> Config:
    """Retries, time-outs, pool size and addressing, the same for async and sync clients."""
    from botocore.config import Config

    s3: dict[str, str] | None = None
    if service == "s3" and endpoint_url(settings, "s3"):
        s3 = {"addressing_style": "path"}
    attempts = 1 if service in RATE_LIMITED else settings.aws_max_attempts
    return Config(
        retries={"mode": "standard", "total_max_attempts": attempts},
        connect_timeout=settings.aws_connect_timeout_s,
        read_timeout=settings.aws_read_timeout_s,
        # Every document in flight may hold a connection while its body streams.
        max_pool_connections=max(10, settings.concurrency * 2),
        s3=s3,
        user_agent_extra="legal-pipeline-accelerated",
    )


def open_client(settings: Settings, service: str, session: Any | None = None) -> Any:
    """``async with open_client(settings, "s3") as s3:`` a client for one block of work."""
    session = session or session_from_settings(settings)
    return session.client(
        service,
        region_name=region_for(settings, service, session.region_name),
        endpoint_url=endpoint_url(settings, service),
        config=client_config(settings, service),
    )


class AwsClients:
    """Long-lived clients, one per service, opened on first use and closed together.

    Clients belong to the event loop that opened them (their connection pool does):
    used from another loop (a new ``asyncio.run``), the holder opens fresh ones there;
    the old loop's were closed with it or are dropped.
    """

    def __init__(self, settings: Settings, session: Any | None = None) -> None:
        self.settings = settings
        self._session = session
        self._clients: dict[str, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        # Clients being opened: ``aclose`` waits for them, so none is left open.
        self._opening: set[asyncio.Future[Any]] = set()
        # Every client opened on this loop; ``aclose`` closes each one. A client used
        # after ``aclose`` (a caller that had it before the close) opens its connection
        # pool again by itself, so each ``aclose`` closes them all again, and such a
        # pool is not left to the collector either.
        self._opened: list[Any] = []

    @property
    def session(self) -> Any:
        if self._session is None:
            self._session = session_from_settings(self.settings)
        return self._session

    async def get(self, service: str) -> Any:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # another loop's clients cannot be used (or closed) here
            self._loop, self._lock = loop, asyncio.Lock()
            self._clients, self._opened = {}, []
        client = self._clients.get(service)
        if client is not None:
            return client
        assert self._lock is not None
        async with self._lock:
            client = self._clients.get(service)
            if client is None:
                # Opened in a task of its own and shielded: a caller cancelled half-way
                # (a time limit, a shutdown) must not leave a client whose connection
                # pool nobody closes ("Unclosed client session" when it is collected);
                # the task finishes opening it, and ``aclose`` closes it. (Leaving the
                # client's context is its ``close()``, which ``aclose`` calls.)
                opening = asyncio.ensure_future(
                    open_client(self.settings, service, self.session).__aenter__()
                )
                self._opening.add(opening)
                opening.add_done_callback(self._opening.discard)
                opening.add_done_callback(self._keep)
                client = await asyncio.shield(opening)
                self._clients[service] = client
        return client

    def _keep(self, opening: asyncio.Future[Any]) -> None:
        if not opening.cancelled() and opening.exception() is None:
            self._opened.append(opening.result())

    async def aclose(self) -> None:
        self._clients = {}
        if self._loop is not asyncio.get_running_loop():
            return  # another loop's clients went with it
        if self._opening:
            await asyncio.gather(*self._opening, return_exceptions=True)
        for client in self._opened:
            with contextlib.suppress(Exception):
                await client.close()


async def check_credentials(session: Any) -> None:
    """A :class:`ConfigError` when the chain finds no credentials at all (no network
    call is made when they come from the environment or a file)."""
    try:
        creds = await session.get_credentials()
    except Exception as exc:
        raise ConfigError(f"AWS credentials cannot be loaded: {describe(exc)}") from None
    if creds is None:
        raise ConfigError(NO_CREDENTIALS)


NO_CREDENTIALS: Final = (
    "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
    "AWS_PROFILE, or run with an instance or task role"
)


def sync_client(settings: Settings, service: str) -> Any:
    """A plain botocore client with the same settings, for synchronous code."""
    try:
        import boto3
    except ImportError:
        raise ConfigError(
            "AWS access needs boto3 (installed with aioboto3): "
            "pip install 'legal-pipeline-accelerated[aws]'"
        ) from None
    session = boto3.session.Session(region_name=settings.aws_region)
    return session.client(
        service,
        region_name=region_for(settings, service, session.region_name),
        endpoint_url=endpoint_url(settings, service),
        config=client_config(settings, service),
    )


# --- errors ------------------------------------------------------------------------


@dataclass(frozen=True)
class AwsFailure:
    """What a failed AWS call means, without the driver's types."""

    kind: FailureKind
    code: str  # the AWS error code, or the exception's class name
    text: str  # one line, redacted (no key or signature ever reaches it)
    status: int | None = None


def classify(exc: BaseException) -> AwsFailure | None:
    """Sort an exception from botocore, aiobotocore or aiohttp; None if it is none of theirs."""
    try:
        import botocore.exceptions as bx
    except ImportError:  # no AWS installed: nothing here came from it
        return None
    if isinstance(exc, bx.ClientError):
        err = exc.response.get("Error", {})
        meta = exc.response.get("ResponseMetadata", {})
        code = str(err.get("Code") or "Unknown")
        status = meta.get("HTTPStatusCode")
        message = str(err.get("Message") or "").splitlines()[0][:200] if err.get("Message") else ""
        text = describe_aws(code, status, message)
        if code in _MISSING:
            return AwsFailure("missing", code, text, status)
        if code in _DENIED:
            return AwsFailure("denied", code, text, status)
        if code in _CREDENTIALS:
            return AwsFailure("credentials", code, text, status)
        if code in _CONFIG:
            return AwsFailure("config", code, text, status)
        if code in _TRANSIENT or (isinstance(status, int) and (status >= 500 or status == 429)):
            return AwsFailure("unavailable", code, text, status)
        return AwsFailure("rejected", code, text, status)
    name = type(exc).__name__
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return AwsFailure("credentials", name, NO_CREDENTIALS)
    if isinstance(exc, bx.CredentialRetrievalError):
        return AwsFailure("credentials", name, describe(exc))
    if isinstance(exc, bx.NoRegionError):
        return AwsFailure("config", name, "no AWS region: set AWS_REGION")
    if isinstance(
        exc,
        bx.EndpointConnectionError
        | bx.ConnectionClosedError
        | bx.ConnectTimeoutError
        | bx.ReadTimeoutError
        | bx.ResponseStreamingError
        | bx.IncompleteReadError
        | bx.FlexibleChecksumError  # a body cut or corrupted in transit: fetch it again
        | bx.HTTPClientError,
    ):
        return AwsFailure("unavailable", name, describe(exc))
    if isinstance(exc, bx.InvalidEndpointConfigurationError | bx.InvalidRegionError):
        return AwsFailure("config", name, describe(exc))
    try:
        import aiohttp
    except ImportError:
        return None
    if isinstance(exc, aiohttp.ClientError | asyncio.TimeoutError):
        return AwsFailure("unavailable", name, describe(exc))
    return None


def describe_aws(code: str, status: int | None, message: str) -> str:
    """``NoSuchKey, HTTP 404: The specified key does not exist.``, secrets masked."""
    text = f"{code}, HTTP {status}" if status else code
    line = f"{text}: {message}" if message else text
    return describe(Exception(line)).removeprefix("Exception: ")


def to_pipeline_error(exc: BaseException, service: str = "s3") -> PipelineError | None:
    """The run-time mapping for a call on one object: a missing or forbidden object is
    the document's problem (a :class:`DocumentError` the caller prefixes with its URI);
    refused credentials are the worker's (not retried, dead-lettered for replay once
    fixed); throttling and network failures are worth retrying."""
    failure = classify(exc)
    if failure is None:
        return None
    if failure.kind == "missing":
        what = "its bucket does not exist" if failure.code == "NoSuchBucket" else "not found"
        return DocumentError(f"{what} ({failure.text})", code="missing")
    if failure.kind == "denied":
        return DocumentError(
            f"access denied ({failure.text}); the credentials in use may not read it",
            code="access_denied",
        )
    if failure.kind == "unavailable":
        return BackendUnavailable(f"{service} unavailable: {failure.text}", backend=service)
    if failure.kind == "credentials":
        return BackendRejected(
            f"{service} refused the credentials ({failure.text}): fix the AWS credentials "
            "of this process",
            backend=service,
        )
    if failure.kind == "config":
        return ConfigError(f"{service}: {failure.text}")
    return BackendRejected(f"{service} refused the call: {failure.text}", backend=service)


def mapper(service: str) -> Callable[[BaseException], PipelineError | None]:
    """The boundary mapper for ``service`` (a Textract backend registers its own name)."""
    return lambda exc: to_pipeline_error(exc, service)


register_mapper("s3", mapper("s3"))
