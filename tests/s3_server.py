"""moto's S3 in server mode on loopback, with a thin WSGI layer the tests steer.

The pipeline talks to it with the real aioboto3 client over HTTP (moto cannot mock
aiobotocore in-process). The layer in front of moto only observes and, when a test
asks, misbehaves the way a real endpoint can:

* it records every request (method, path, query), so a test counts the GetObject
  calls a run made on the server's side, not in the code under test;
* ``slow_down[path] = n`` answers the next ``n`` GETs of that object with S3's
  ``503 SlowDown`` (throttling), which the client must treat as transient;
* ``no_length`` paths are answered without ``Content-Length`` (chunked), so only the
  count while streaming can enforce a size cap.

``iam_auth()`` switches moto's own IAM checks on (signatures verified, policies
evaluated), so ``AccessDenied`` and ``InvalidAccessKeyId`` come from moto itself.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)

StartResponse = Callable[..., Any]


class S3Layer:
    """Request log and fault switches in front of the moto app."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str, str]] = []
        self.slow_down: dict[str, int] = {}
        self.no_length: set[str] = set()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        query = environ.get("QUERY_STRING", "")
        with self.lock:
            self.requests.append((method, path, query))
            throttled = method == "GET" and self.slow_down.get(path, 0) > 0
            if throttled:
                self.slow_down[path] -= 1
        if throttled:
            start_response(
                "503 Slow Down",
                [("Content-Type", "application/xml"), ("Content-Length", str(len(SLOW_DOWN)))],
            )
            return [SLOW_DOWN]
        if method == "GET" and path in self.no_length and not query:

            def chunked(status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
                kept = [(k, v) for k, v in headers if k.lower() != "content-length"]
                return start_response(status, kept, exc)

            body = self.app(environ, chunked)
            return (block for block in body)  # an iterator: werkzeug cannot know its length
        return self.app(environ, start_response)

    def gets(self, bucket: str, key_prefix: str = "") -> int:
        """GetObject calls on objects of ``bucket`` whose key starts with ``key_prefix``."""
        start = f"/{bucket}/{key_prefix}"
        with self.lock:
            return sum(
                1
                for m, p, q in self.requests
                if m == "GET"
                and p.startswith(start)
                and p != f"/{bucket}/"
                and "list-type" not in q
            )

    def lists(self, bucket: str) -> int:
        """ListObjectsV2 calls on ``bucket``."""
        with self.lock:
            return sum(
                1
                for m, p, q in self.requests
                if m == "GET" and p.rstrip("/") == f"/{bucket}" and "list-type=2" in q
            )


class S3Server(ThreadedMotoServer):
    """``ThreadedMotoServer`` on a free loopback port, with :class:`S3Layer` in front."""

    def __init__(self) -> None:
        super().__init__(ip_address="127.0.0.1", port=0, verbose=False)
        self.layer: S3Layer | None = None

    def _server_entry(self) -> None:  # as moto's, plus the layer
        self.layer = S3Layer(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            self._ip_address, self._port, self.layer, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()

    @property
    def url(self) -> str:
        host, port = self.get_host_and_port()
        return f"http://{host}:{port}"


@contextlib.contextmanager
def running() -> Iterator[S3Server]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = S3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def iam_auth() -> Iterator[None]:
    """moto checks signatures and IAM policies inside the block (a process-wide switch:
    the server runs in this process), and stops checking after it, even on failure."""
    from moto import settings as moto_settings
    from moto.core.authorization import ActionAuthenticatorMixin

    before = moto_settings.INITIAL_NO_AUTH_ACTION_COUNT
    moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    ActionAuthenticatorMixin.request_count = 0
    try:
        yield
    finally:
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = before
