"""faster-whisper (CTranslate2 Whisper) on a local model directory.

The model (``model.bin``, ``config.json``, ``tokenizer.json``, ``vocabulary.*``) is
loaded once per process, on first use, on the device :func:`resolve_device` picks:
int8 on the CPU and float16 on CUDA unless ``TRANSCRIBE_COMPUTE_TYPE`` says otherwise.
The files are checked at start-up (a wrong path fails there, not per recording).
Each window of :func:`~accelerated.audio.decode.audio_windows` is transcribed on its
own and its segments shifted by the window's start, so a recording of any length is
held one window at a time.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from accelerated.audio.decode import audio_windows
from accelerated.backends import Segment
from accelerated.devices import ctranslate2_gpu_available, resolve_device
from accelerated.errors import ConfigError
from accelerated.revision import directory_revision
from accelerated.settings import Settings

log = logging.getLogger(__name__)

_MODELS: dict[tuple[str, str, str, int], Any] = {}
_LOCK = threading.Lock()


class FasterWhisperTranscriber:
    def __init__(
        self,
        model_dir: Path,
        *,
        device: str = "cpu",
        compute_type: str = "auto",
        language: str | None = None,
        beam_size: int = 5,
        window_s: float = 600.0,
        cpu_threads: int = 0,
    ) -> None:
        try:
            import faster_whisper
        except ImportError as exc:
            raise ConfigError(
                f"TRANSCRIBE_BACKEND=faster-whisper needs faster-whisper ({exc}); "
                "pip install '.[audio]'"
            ) from None
        if not (model_dir / "model.bin").is_file():
            raise ConfigError(
                f"TRANSCRIBE_MODEL={model_dir} is not a CTranslate2 Whisper model "
                "(no model.bin there; convert one with ct2-transformers-converter)"
            )
        self.model_dir, self.device = model_dir, device
        if compute_type == "auto":
            compute_type = "float16" if device == "cuda" else "int8"
        self.compute_type, self.language = compute_type, language
        self.beam_size, self.window_s, self.cpu_threads = beam_size, window_s, cpu_threads
        revision = directory_revision(model_dir)[:12]
        self.version = (
            f"faster-whisper-{faster_whisper.__version__}-{model_dir.name}@{revision}-"
            f"{compute_type}-b{beam_size}-{language or 'auto'}-w{window_s:g}"
        )
        self.calls = 0  # recordings transcribed by this object (tests, metrics)

    def _model(self) -> Any:
        key = (str(self.model_dir), self.device, self.compute_type, self.cpu_threads)
        with _LOCK:
            model = _MODELS.get(key)
            if model is None:
                from faster_whisper import WhisperModel

                model = _MODELS[key] = WhisperModel(
                    str(self.model_dir),
                    device=self.device,
                    compute_type=self.compute_type,
                    cpu_threads=self.cpu_threads,
                )
                log.info(
                    "whisper model %s on %s (%s)", self.model_dir, self.device, self.compute_type
                )
        return model

    def transcribe(self, audio: bytes, filename: str) -> list[Segment]:
        model = self._model()
        self.calls += 1
        out: list[Segment] = []
        for start, samples in audio_windows(audio, self.window_s):
            segments, _info = model.transcribe(
                samples,
                language=self.language,
                beam_size=self.beam_size,
                vad_filter=False,
                condition_on_previous_text=False,
            )
            for s in segments:  # a generator: decoding happens here
                text = s.text.strip()
                if text:
                    out.append(Segment(start_s=start + s.start, end_s=start + s.end, text=text))
        return out


def faster_whisper_transcriber(settings: Settings) -> FasterWhisperTranscriber:
    if not settings.transcribe_model:
        raise ConfigError(
            "TRANSCRIBE_BACKEND=faster-whisper needs TRANSCRIBE_MODEL "
            "(a CTranslate2 Whisper model directory)"
        )
    path = Path(settings.transcribe_model).expanduser()
    if not path.is_dir():
        raise ConfigError(f"TRANSCRIBE_MODEL={settings.transcribe_model} is not a directory")
    device = resolve_device(
        settings.transcribe_device,
        setting="TRANSCRIBE_DEVICE",
        allow_cpu=settings.allow_cpu,
        probe=ctranslate2_gpu_available,
    )
    return FasterWhisperTranscriber(
        path,
        device=device,
        compute_type=settings.transcribe_compute_type,
        language=settings.transcribe_language,
        beam_size=settings.transcribe_beam_size,
        window_s=settings.transcribe_window_s,
        cpu_threads=settings.transcribe_cpu_threads,
    )
