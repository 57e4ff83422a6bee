"""``TRANSCRIBE_BACKEND=openai``: recordings through the ``openai`` client to a local
server that speaks OpenAI's ``/v1/audio/transcriptions`` (``tests/audio_api_server.py``)
and hears them with the real Whisper tiny.en model.

What is checked is the pipeline's side of the protocol: windows of at most
``TRANSCRIBE_WINDOW_S`` sent as 16 kHz mono WAV with ``verbose_json``, segment times
shifted by each window's start, the transcript cached by the audio's hash (a re-run
sends nothing), a 5xx retried, a 401 a clear per-document error without the key.
"""

from __future__ import annotations

import itertools
import re
import wave
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import msgspec
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from accelerated.batch_run import BatchOptions, run_batch
from accelerated.settings import Settings
from persistence.schema import migrate
from tests.audio_api_server import AudioApiServer
from tests.support import make_runtime
from tests.test_audio import FIRST, SECOND, needs_models, speak, whisper_dir, words

pytest.importorskip("faster_whisper")
pytest.importorskip("openai")
pytestmark = [needs_models, pytest.mark.timeout(300)]

KEY = "sk-AUDIO-SECRET-0123456789"


@pytest.fixture(scope="module")
def api() -> Iterator[AudioApiServer]:
    server = AudioApiServer(whisper_dir()).start()
    yield server
    server.stop()


def _settings(settings: Settings, url: str, **extra: object) -> Settings:
    return settings.model_copy(
        update={
            "transcribe_backend": "openai",
            "transcribe_model": "whisper-1",
            "transcribe_language": "en",
            "openai_base_url": url,
            "openai_api_key": SecretStr(KEY),
            **extra,
        }
    )


def _join(first: Path, second: Path, out: Path) -> None:
    """Two recordings one after the other, with a second of silence between."""
    with wave.open(str(first)) as a, wave.open(str(second)) as b:
        params = a.getparams()
        assert b.getframerate() == a.getframerate()
        frames = a.readframes(a.getnframes())
        gap = b"\0" * (a.getframerate() * a.getsampwidth())
        frames += gap + b.readframes(b.getnframes())
    with wave.open(str(out), "wb") as w:
        w.setparams(params)
        w.writeframes(frames)


async def test_recordings_go_through_the_openai_client_in_windows_and_are_cached(
    api: AudioApiServer,
    tmp_path: Path,
    settings: Settings,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
) -> None:
    src = tmp_path / "hearings"
    src.mkdir()
    speak(FIRST, tmp_path / "first.wav")
    speak(SECOND, tmp_path / "second.wav")
    _join(tmp_path / "first.wav", tmp_path / "second.wav", src / "hearing.wav")
    with wave.open(str(src / "hearing.wav")) as w:
        length_s = w.getnframes() / w.getframerate()
    s = _settings(settings, api.url, transcribe_window_s=max(2.0, length_s / 2 + 0.5))
    await migrate(pg_pool, s.pg_schema)
    api.heard.clear()
    report = await run_batch(
        make_runtime(s, pg_pool, redis, accelerated=True), BatchOptions("a", [src])
    )
    assert report.done == 1, report.failed
    # Windows (cut in pauses, so possibly a short tail), each within the limit, as the
    # API's WAV: 16 kHz mono.
    assert len(api.heard) >= 2, api.heard
    for heard in api.heard:
        assert heard.authorization == f"Bearer {KEY}"
        assert heard.fields["model"] == "whisper-1"
        assert heard.fields["response_format"] == "verbose_json"
        assert heard.fields["language"] == "en"
        assert (heard.rate, heard.channels) == (16_000, 1)
        assert heard.seconds <= s.transcribe_window_s + 0.01
    assert sum(h.seconds for h in api.heard) == pytest.approx(length_s, abs=0.05)
    row = await pg_pool.fetchrow("SELECT method, text, metadata FROM documents")
    assert row["method"] == "transcript"
    assert {"court", "granted", "motion"} <= words(row["text"])
    assert {"judge", "ordered", "defendant"} <= words(row["text"])
    spans = msgspec.json.decode(msgspec.json.decode(row["metadata"])["segments"])
    # The second window's segments are shifted by its start: times grow to the end.
    assert spans[-1][1] > api.heard[0].seconds - 0.5
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(spans))
    assert spans[-1][1] <= length_s + 0.5

    # A copy under another name: the transcript comes from the cache, nothing is sent.
    again = tmp_path / "again"
    again.mkdir()
    (again / "copy.wav").write_bytes((src / "hearing.wav").read_bytes())
    api.heard.clear()
    report = await run_batch(
        make_runtime(s, pg_pool, redis, accelerated=True), BatchOptions("b", [again])
    )
    assert report.done == 1 and api.heard == []


async def test_a_5xx_is_retried_and_a_401_fails_the_document_without_the_key(
    api: AudioApiServer,
    tmp_path: Path,
    settings: Settings,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    speak(FIRST, src / "ruling.wav")
    s = _settings(settings, api.url)
    await migrate(pg_pool, s.pg_schema)
    api.heard.clear()
    api.fail_next[:] = [503]
    report = await run_batch(
        make_runtime(s, pg_pool, redis, accelerated=True), BatchOptions("r", [src])
    )
    assert report.done == 1, report.failed  # the 503 was retried
    assert len(api.heard) == 1 and not api.fail_next

    other = tmp_path / "other"
    other.mkdir()
    speak(SECOND, other / "order.wav")
    api.fail_next[:] = [401] * 10
    report = await run_batch(
        make_runtime(s, pg_pool, redis, accelerated=True), BatchOptions("k", [other])
    )
    api.fail_next.clear()
    assert report.done == 0
    error = report.failed["order.wav"]
    assert re.search(r"audio API refused the request \(401\)", error), error
    assert KEY not in error
