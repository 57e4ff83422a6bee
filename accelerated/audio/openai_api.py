"""OpenAI's audio API (``/audio/transcriptions``) as a transcriber: deployment stage 1.

The API takes files of at most 25 MB, so the recording is decoded a window at a time
(:func:`~accelerated.audio.decode.audio_windows`, at most ten minutes: 19 MB as 16 kHz
16-bit WAV) and each window sent on its own with ``response_format=verbose_json``;
segment times are shifted by the window's start. Any OpenAI-compatible server with
that endpoint works (``OPENAI_BASE_URL``). HTTP errors are translated at the
boundary: a refused connection, a timeout or a 5xx/429 is ``BackendUnavailable``
(retried), another 4xx ``BackendRejected`` (the key or the request is wrong).
"""

from __future__ import annotations

import hashlib
import io
import wave
from typing import Final

import httpx
import numpy as np
from pydantic import SecretStr

from accelerated.audio.decode import RATE, audio_windows
from accelerated.backends import Segment
from accelerated.boundary import map_driver_errors, register_mapper
from accelerated.errors import BackendError, BackendRejected, BackendUnavailable, ConfigError
from accelerated.settings import Settings

MAX_WINDOW_S: Final = 600.0


def _map_httpx(exc: BaseException) -> BackendError | None:
    if isinstance(exc, httpx.TransportError):  # connect, read, timeouts
        return BackendUnavailable(f"audio API unreachable: {type(exc).__name__}", backend="openai")
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        if status >= 500 or status == 429:
            return BackendUnavailable(f"audio API answered {status}", backend="openai")
        return BackendRejected(f"audio API refused the request ({status})", backend="openai")
    return None


register_mapper("openai-audio", _map_httpx)


def wav_bytes(samples: np.ndarray) -> bytes:
    """16 kHz mono 16-bit PCM WAV of float samples in [-1, 1]."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm)
    return buf.getvalue()


class OpenAiTranscriber:
    def __init__(
        self,
        base_url: str,
        api_key: SecretStr,
        model: str,
        *,
        language: str | None = None,
        window_s: float = MAX_WINDOW_S,
        timeout_s: float = 300.0,
    ) -> None:
        self.base_url, self._key, self.model = base_url.rstrip("/"), api_key, model
        self.language, self.timeout_s = language, timeout_s
        self.window_s = min(window_s, MAX_WINDOW_S)
        ident = hashlib.sha256(self.base_url.encode()).hexdigest()[:8]
        self.version = f"openai-{model}-{ident}-{language or 'auto'}-w{self.window_s:g}"
        self.calls = 0

    def transcribe(self, audio: bytes, filename: str) -> list[Segment]:
        self.calls += 1
        out: list[Segment] = []
        headers = {"Authorization": f"Bearer {self._key.get_secret_value()}"}
        with httpx.Client(timeout=self.timeout_s, headers=headers) as client:
            for start, samples in audio_windows(audio, self.window_s):
                data = {"model": self.model, "response_format": "verbose_json"}
                if self.language:
                    data["language"] = self.language
                with map_driver_errors("openai-audio"):
                    reply = client.post(
                        f"{self.base_url}/audio/transcriptions",
                        data=data,
                        files={"file": ("window.wav", wav_bytes(samples), "audio/wav")},
                    )
                    reply.raise_for_status()
                body = reply.json()
                segments = body.get("segments") or [
                    {"start": 0.0, "end": len(samples) / RATE, "text": body.get("text", "")}
                ]
                for s in segments:
                    text = str(s.get("text", "")).strip()
                    if text:
                        out.append(
                            Segment(
                                start_s=start + float(s.get("start", 0.0)),
                                end_s=start + float(s.get("end", 0.0)),
                                text=text,
                            )
                        )
        return out


def openai_transcriber(settings: Settings) -> OpenAiTranscriber:
    if not settings.openai_base_url:
        raise ConfigError("TRANSCRIBE_BACKEND=openai needs OPENAI_BASE_URL")
    key = settings.openai_api_key
    if key is None or not key.get_secret_value():
        raise ConfigError("TRANSCRIBE_BACKEND=openai needs OPENAI_API_KEY")
    return OpenAiTranscriber(
        settings.openai_base_url,
        key,
        settings.transcribe_model or "whisper-1",
        language=settings.transcribe_language,
        window_s=settings.transcribe_window_s,
    )
