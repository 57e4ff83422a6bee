"""OpenAI's audio API (``/audio/transcriptions``) as a transcriber: deployment stage 1.

Through the ``openai`` package's client (extra ``llm``), as the LLM backends are, so
its retries, timeouts and error classes are the ones users know. The API takes files
of at most 25 MB, so the recording is decoded a window at a time
(:func:`~accelerated.audio.decode.audio_windows`, at most ten minutes: 19 MB as 16 kHz
16-bit WAV) and each window sent on its own with ``response_format=verbose_json``;
segment times are shifted by the window's start. Any OpenAI-compatible server with
that endpoint works (``OPENAI_BASE_URL``). Errors are translated at the boundary
(``map_driver_errors("openai-audio")``): a refused connection, a timeout, a 429 or a
5xx is ``BackendUnavailable`` (retried), another 4xx ``BackendRejected`` (the key or
the request is wrong). The API key is never part of a message.
"""

from __future__ import annotations

import hashlib
import io
import wave
from typing import Any, Final

import numpy as np
from pydantic import SecretStr

from accelerated.audio.decode import RATE, audio_windows
from accelerated.backends import Segment
from accelerated.boundary import map_driver_errors, register_mapper
from accelerated.errors import BackendError, BackendRejected, BackendUnavailable, ConfigError
from accelerated.settings import Settings

MAX_WINDOW_S: Final = 600.0


def _map_openai(exc: BaseException) -> BackendError | None:
    import openai

    if isinstance(exc, openai.APIConnectionError):  # refused, reset, timed out
        return BackendUnavailable(f"audio API unreachable: {type(exc).__name__}", backend="openai")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status >= 500 or status == 429:
            return BackendUnavailable(f"audio API answered {status}", backend="openai")
        return BackendRejected(f"audio API refused the request ({status})", backend="openai")
    if isinstance(exc, openai.APIError | ValueError):  # a body that is not the API's
        return BackendUnavailable(
            f"audio API sent an unusable reply: {type(exc).__name__}", backend="openai"
        )
    return None


register_mapper("openai-audio", _map_openai)


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


def _field(obj: Any, name: str, default: Any) -> Any:
    """A reply field whether the client parsed it to a model or left a dict."""
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


class OpenAiTranscriber:
    """One synchronous ``openai.OpenAI`` client per transcriber (the transcribe stage
    calls it from its own thread). ``max_retries=0``: the pipeline's own retries (with
    the document's attempt count and dead letters) decide, not a hidden loop."""

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
        import openai

        self.base_url, self.model = base_url.rstrip("/"), model
        self.language, self.timeout_s = language, timeout_s
        self.window_s = min(window_s, MAX_WINDOW_S)
        ident = hashlib.sha256(self.base_url.encode()).hexdigest()[:8]
        self.version = f"openai-{model}-{ident}-{language or 'auto'}-w{self.window_s:g}"
        self.calls = 0
        self._client = openai.OpenAI(
            base_url=self.base_url,
            api_key=api_key.get_secret_value(),
            timeout=timeout_s,
            max_retries=0,
        )

    def transcribe(self, audio: bytes, filename: str) -> list[Segment]:
        self.calls += 1
        out: list[Segment] = []
        extra: dict[str, Any] = {"language": self.language} if self.language else {}
        for start, samples in audio_windows(audio, self.window_s):
            with map_driver_errors("openai-audio"):
                body = self._client.audio.transcriptions.create(
                    model=self.model,
                    file=("window.wav", wav_bytes(samples), "audio/wav"),
                    response_format="verbose_json",
                    **extra,
                )
            segments = _field(body, "segments", None) or [
                {"start": 0.0, "end": len(samples) / RATE, "text": _field(body, "text", "")}
            ]
            for seg in segments:
                text = str(_field(seg, "text", "")).strip()
                if text:
                    out.append(
                        Segment(
                            start_s=start + float(_field(seg, "start", 0.0)),
                            end_s=start + float(_field(seg, "end", 0.0)),
                            text=text,
                        )
                    )
        return out

    def close(self) -> None:
        self._client.close()


def openai_transcriber(settings: Settings) -> OpenAiTranscriber:
    if not settings.openai_base_url:
        raise ConfigError("TRANSCRIBE_BACKEND=openai needs OPENAI_BASE_URL")
    key = settings.openai_api_key
    if key is None or not key.get_secret_value():
        raise ConfigError("TRANSCRIBE_BACKEND=openai needs OPENAI_API_KEY")
    try:
        import openai  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            "TRANSCRIBE_BACKEND=openai needs the openai package: pip install "
            "'legal-pipeline-accelerated[llm]'"
        ) from exc
    return OpenAiTranscriber(
        settings.openai_base_url,
        key,
        settings.transcribe_model or "whisper-1",
        language=settings.transcribe_language,
        window_s=settings.transcribe_window_s,
    )
