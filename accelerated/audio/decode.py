"""Decode audio a window at a time: 16 kHz mono float32, the rate Whisper takes.

A two-hour hearing is 115 M samples (460 MB as float32) once decoded: instead of
decoding all of it (as ``faster_whisper.decode_audio`` does), :func:`audio_windows`
yields ``window_s`` seconds at a time while FFmpeg reads the container frame by
frame, so memory holds the file's bytes and one window. Each window ends at the
quietest 50 ms in its last two seconds, so a cut rarely falls inside a word.
Anything FFmpeg cannot read is a ``DocumentError(code="corrupt_audio")``.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any, Final

import numpy as np

from accelerated.errors import DocumentError

RATE: Final = 16_000
_FRAME: Final = RATE // 20  # 50 ms, the unit a cut is chosen in
_SEARCH_S: Final = 2.0


def _corrupt(exc: BaseException) -> DocumentError:
    detail = getattr(exc, "strerror", None) or str(exc)  # FFmpeg's words, without errno
    text = str(detail).strip().splitlines()[0][:200] if str(detail).strip() else ""
    return DocumentError(
        "The audio file cannot be decoded (damaged, truncated or not audio)"
        + (f": {text}" if text else "."),
        code="corrupt_audio",
    )


def _quiet_cut(samples: np.ndarray, window: int) -> int:
    """Where to end a window of ``window`` samples: the quietest 50 ms near its end."""
    lo = max(0, window - int(_SEARCH_S * RATE))
    tail = samples[lo:window]
    frames = len(tail) // _FRAME
    if frames < 2:
        return window
    energy = (tail[: frames * _FRAME].reshape(frames, _FRAME) ** 2).sum(axis=1)
    return lo + int(np.argmin(energy)) * _FRAME + _FRAME // 2


def audio_windows(data: bytes, window_s: float = 600.0) -> Iterator[tuple[float, np.ndarray]]:
    """(start in seconds, samples) per window, in order, over the whole recording."""
    try:
        import av
    except ImportError as exc:  # faster-whisper depends on it
        raise DocumentError(f"audio decoding needs PyAV ({exc})", code="corrupt_audio") from None
    window = max(_FRAME * 4, int(window_s * RATE))
    try:
        container: Any = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except Exception as exc:  # av.FFmpegError and its kin: not a container FFmpeg knows
        raise _corrupt(exc) from None
    try:
        if not container.streams.audio:
            raise DocumentError("The file contains no audio stream.", code="corrupt_audio")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        parts: list[np.ndarray] = []
        held = 0
        offset = 0
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                    parts.append(chunk)
                    held += len(chunk)
                while held >= window + int(_SEARCH_S * RATE):
                    buf = np.concatenate(parts)
                    cut = _quiet_cut(buf, window)
                    yield offset / RATE, buf[:cut]
                    offset += cut
                    parts, held = [buf[cut:]], len(buf) - cut
            for out in resampler.resample(None):  # flush
                parts.append(out.to_ndarray().reshape(-1).astype(np.float32, copy=False))
        except DocumentError:
            raise
        except Exception as exc:
            raise _corrupt(exc) from None
        rest = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
        if offset == 0 and len(rest) == 0:
            raise DocumentError("The audio stream holds no samples.", code="corrupt_audio")
        while len(rest) > window:
            cut = _quiet_cut(rest, window)
            yield offset / RATE, rest[:cut]
            offset, rest = offset + cut, rest[cut:]
        if len(rest):
            yield offset / RATE, rest
    finally:
        container.close()
