"""A small OpenAI-compatible chat server for the tests, on 127.0.0.1 (stdlib only).

It records every request (arrival time, body, headers) and answers what no real
server does on demand: 429s with ``retry-after`` / ``retry-after-ms``,
``x-ratelimit-remaining-*`` headers, slow replies, malformed JSON, replies that do
not match the schema, mentions whose text is not in the chunk. By default it answers
with the mentions ``responder`` finds in the last user message.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_CHUNK = re.compile(r"<chunk>\n(.*)\n</chunk>", re.S)
_NAME = re.compile(r"\b(?:Judge|Justice) ([A-Z][a-z]+)\b")


def chunk_of(body: dict[str, Any]) -> str:
    """The chunk text of the prompt (between the <chunk> markers), else the last message."""
    for message in body["messages"]:
        m = _CHUNK.search(str(message.get("content", "")))
        if m:
            return m.group(1)
    return str(body["messages"][-1]["content"])


def default_responder(body: dict[str, Any]) -> str:
    """Every "Judge X" is a JUDGE mention of its surname (with its offset)."""
    text = chunk_of(body)
    mentions = [
        {"type": "JUDGE", "text": m.group(1), "start": m.start(1)} for m in _NAME.finditer(text)
    ]
    return json.dumps({"mentions": mentions})


@dataclass
class Reply:
    """One scripted answer: status, extra headers, the message content or a raw body."""

    status: int = 200
    content: str | None = None  # the assistant message; None: the responder's
    raw_body: bytes | None = None  # sent as is (malformed JSON...)
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    finish_reason: str = "stop"


@dataclass
class Received:
    at: float  # time.time() on arrival
    body: dict[str, Any]
    headers: dict[str, str]
    status: int = 0
    tokens: int = 0  # prompt + completion tokens reported in usage


class ChatServer:
    def __init__(self, responder: Callable[[dict[str, Any]], str] = default_responder) -> None:
        self.responder = responder
        self.script: list[Reply] = []  # answered first, in order
        self.default = Reply()
        self.received: list[Received] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                rec = Received(time.time(), body, {k.lower(): v for k, v in self.headers.items()})
                with server._lock:
                    server.received.append(rec)
                    reply = server.script.pop(0) if server.script else server.default
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                rec.status = reply.status
                if reply.status != 200:
                    payload = json.dumps(
                        {"error": {"message": "rate limited", "type": "rate_limit"}}
                    ).encode()
                elif reply.raw_body is not None:
                    payload = reply.raw_body
                else:
                    content = reply.content if reply.content is not None else server.responder(body)
                    prompt = sum(len(str(m.get("content", ""))) for m in body["messages"]) // 4
                    completion = len(content) // 4 + 1
                    rec.tokens = prompt + completion
                    payload = json.dumps(
                        {
                            "id": "chatcmpl-test",
                            "object": "chat.completion",
                            "created": int(time.time()),
                            "model": body.get("model", ""),
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": content},
                                    "finish_reason": reply.finish_reason,
                                }
                            ],
                            "usage": {
                                "prompt_tokens": prompt,
                                "completion_tokens": completion,
                                "total_tokens": prompt + completion,
                            },
                        }
                    ).encode()
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up on a slow reply closed its socket: expected

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def start(self) -> ChatServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def ok(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.status == 200]
