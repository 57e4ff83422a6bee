"""A small OpenAI-compatible chat server on 127.0.0.1 (stdlib only), for the tests and
the benchmark harness (``benchmarks.run --entity-backend rules+llm``).

It lives in ``benchmarks`` because the harness may not import ``tests``; the tests
import it from here. It records every request (arrival time, body, headers) and
answers what no real server does on demand: 429s with ``retry-after`` /
``retry-after-ms``, ``x-ratelimit-remaining-*`` headers, slow replies, malformed
JSON, replies that do not match the schema, mentions whose text is not in the chunk.
``latency_s`` delays every reply and ``rpm_limit`` enforces a requests-per-minute
limit of its own (sliding 60 s window over accepted calls; over it: a 429 with
``retry-after-ms``), so a benchmark can check what the limiter keeps to as the
server measures it. By default it answers each of the pipeline's three questions
(entity mentions in a ``<chunk>``, document fields of a ``<document>``, whether a
``<pair>`` is one entity) with a deterministic reply read from the prompt.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_CHUNK = re.compile(r"<chunk>\n(.*)\n</chunk>", re.S)
_DOCUMENT = re.compile(r"<document>\n(.*)\n</document>", re.S)
_PAIR = re.compile(r"<pair>\n(.*)\n</pair>", re.S)
_NAME = re.compile(r"\b(?:Judge|Justice) ([A-Z][a-z]+)\b")
_DOCKET = re.compile(r"\bNo\. ?(\d[\w:-]*\d)")
_VERSUS = re.compile(r"^(.{2,80}?),? v\.? (.{2,80}?)[,.]?$", re.M)
_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_DATE = re.compile(rf"\b({'|'.join(_MONTHS)}) (\d{{1,2}}), (\d{{4}})\b")
_SUFFIXES = frozenset({"inc", "inc.", "corp", "corp.", "corporation", "co", "co.", "llc", "the"})


def _between(body: dict[str, Any], rx: re.Pattern[str]) -> str | None:
    for message in body["messages"]:
        m = rx.search(str(message.get("content", "")))
        if m:
            return m.group(1)
    return None


def chunk_of(body: dict[str, Any]) -> str:
    """The chunk text of the prompt (between the <chunk> markers), else the last message."""
    found = _between(body, _CHUNK)
    return found if found is not None else str(body["messages"][-1]["content"])


def mentions_reply(text: str) -> str:
    """Every "Judge X" is a JUDGE mention of its surname (with its offset)."""
    mentions = [
        {"type": "JUDGE", "text": m.group(1), "start": m.start(1)} for m in _NAME.finditer(text)
    ]
    return json.dumps({"mentions": mentions})


def fields_reply(text: str) -> str:
    """Document fields read from the head of a document by a few patterns."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    court = next((ln for ln in lines[:20] if "COURT" in ln.upper()), None)
    parties: list[dict[str, str]] = []
    caption = None
    m = _VERSUS.search(text)
    if m:
        caption = f"{m.group(1).strip()} v. {m.group(2).strip()}"
        parties = [
            {"name": m.group(1).strip(), "role": "plaintiff"},
            {"name": m.group(2).strip(), "role": "defendant"},
        ]
    date = _DATE.search(text)
    filing = (
        f"{date.group(3)}-{_MONTHS.index(date.group(1)) + 1:02d}-{int(date.group(2)):02d}"
        if date
        else None
    )
    return json.dumps(
        {
            "caption": caption or (lines[0][:200] if lines else None),
            "court": court,
            "docket_numbers": sorted(set(_DOCKET.findall(text))),
            "filing_date": filing,
            "document_type": "opinion" if "OPINION" in text.upper() else "other",
            "parties": parties,
            "judges": sorted(set(_NAME.findall(text))),
            "counsel": [],
        }
    )


def _words(name: str) -> frozenset[str]:
    return frozenset(w for w in name.casefold().replace(",", " ").split() if w not in _SUFFIXES)


def same_entity(a: str, b: str) -> bool:
    """One name's words are all in the other's (corporate suffixes aside)."""
    wa, wb = _words(a), _words(b)
    return bool(wa and wb) and (wa <= wb or wb <= wa)


def pair_reply(text: str) -> str:
    """``{"same": ...}`` for the two names of a ``<pair>`` block ("A: ..." / "B: ...")."""
    names = re.findall(r"^[AB]: (?:[A-Z_]+ )?\"?(.*?)\"?$", text, re.M)
    same = len(names) == 2 and same_entity(names[0], names[1])
    return json.dumps({"same": same, "reason": "names agree" if same else "names differ"})


def default_responder(body: dict[str, Any]) -> str:
    """What a cooperative model would say to each of the pipeline's questions."""
    doc = _between(body, _DOCUMENT)
    if doc is not None:
        return fields_reply(doc)
    pair = _between(body, _PAIR)
    if pair is not None:
        return pair_reply(pair)
    return mentions_reply(chunk_of(body))


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
    def __init__(
        self,
        responder: Callable[[dict[str, Any]], str] = default_responder,
        *,
        latency_s: float = 0.0,
        rpm_limit: int = 0,
    ) -> None:
        self.responder = responder
        self.script: list[Reply] = []  # answered first, in order
        self.default = Reply()
        self.received: list[Received] = []
        self.latency_s = latency_s  # added to every reply's own delay
        self.rpm_limit = rpm_limit  # 0: no limit of the server's own
        self.refused = 0  # 429s sent because of rpm_limit
        self._window: deque[float] = deque()  # arrival times of accepted calls, last 60 s
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
                    reply = server._over_limit(rec.at)
                    if reply is None:
                        reply = server.script.pop(0) if server.script else server.default
                delay = reply.delay_s + (server.latency_s if reply.status == 200 else 0.0)
                if delay:
                    time.sleep(delay)
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

    def _over_limit(self, now: float) -> Reply | None:
        """A 429 when ``rpm_limit`` calls were accepted in the last 60 s (lock held)."""
        if not self.rpm_limit:
            return None
        while self._window and self._window[0] <= now - 60.0:
            self._window.popleft()
        if len(self._window) >= self.rpm_limit:
            self.refused += 1
            wait_ms = max(1, int((self._window[0] + 60.0 - now) * 1000))
            return Reply(status=429, headers={"retry-after-ms": str(wait_ms)})
        self._window.append(now)
        return None

    def start(self) -> ChatServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def ok(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.status == 200]

    def busiest_window(self, window_s: float = 60.0) -> int:
        """Most accepted calls that arrived within any ``window_s`` (the server's view)."""
        times = sorted(r.at for r in self.ok())
        most, lo = 0, 0
        for hi, t in enumerate(times):
            while times[lo] <= t - window_s:
                lo += 1
            most = max(most, hi - lo + 1)
        return most
