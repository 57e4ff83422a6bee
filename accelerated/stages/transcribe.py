"""Branch stage ``transcribe``: the text of an audio recording.

``extract`` recognises .wav .mp3 .m4a .flac .ogg by their bytes and routes them here
instead of to ``clean`` (the ``audio`` outcome in :mod:`accelerated.pipeline`); the
output replaces ``extract``'s under the same ``ocr`` key, so ``clean`` and every
later stage treat the transcript as any other text. Each segment is one page (its
times in the ``segments`` metadata, ``[[start_s, end_s], ...]``), so a mention's page
says when it was said.

The transcript is cached by the audio's sha256 and the transcriber's version: the
same recording under another name, in another project or on another host is never
transcribed twice. Transcription runs on one thread of its own per process (one
model per process; a second recording waits for the first rather than loading
another copy), off the event loop. Without a transcriber configured an audio file
fails with ``needs_transcription``; one FFmpeg cannot decode fails with
``corrupt_audio``; both are per-document errors, the rest of the batch goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import msgspec
from prometheus_client import Counter

from accelerated.backends import Segment, Transcriber
from accelerated.errors import DocumentError
from accelerated.extractors.base import assemble, tidy
from accelerated.models import Extracted
from accelerated.stages import StageContext

TRANSCRIBED: Final = Counter(
    "transcribe_recordings_total", "Recordings transcribed or taken from the cache", ["source"]
)
_EXECUTOR: Final = ThreadPoolExecutor(max_workers=1, thread_name_prefix="transcribe")


def to_text(extracted: Extracted, segments: list[Segment], version: str) -> Extracted:
    """The transcript as the document's text: a page per segment."""
    parts = [tidy(s.text) for s in segments]
    kept = [(s, p) for s, p in zip(segments, parts, strict=True) if p]
    if not kept:
        raise DocumentError("The recording contains no recognisable speech.", code="empty")
    text, pages = assemble([p for _s, p in kept])
    meta = dict(extracted.metadata)
    meta["transcriber"] = version
    meta["audio_seconds"] = f"{kept[-1][0].end_s:.2f}"
    meta["segments"] = json.dumps([[round(s.start_s, 2), round(s.end_s, 2)] for s, _p in kept])
    return msgspec.structs.replace(
        extracted, method="transcript", text=text, pages=pages, needs_ocr=False, metadata=meta
    )


async def transcribe(transcriber: Transcriber, data: bytes, filename: str) -> list[Segment]:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_EXECUTOR, transcriber.transcribe, data, filename)


async def run(extracted: Extracted, ctx: StageContext) -> Extracted:
    transcriber = ctx.backends.transcriber if ctx.backends is not None else None
    if transcriber is None:
        raise DocumentError(
            "The file is an audio recording and no transcriber is configured; set "
            "TRANSCRIBE_MODEL (a faster-whisper model) or TRANSCRIBE_BACKEND.",
            code="needs_transcription",
        )
    assert ctx.source is not None
    version = transcriber.version
    cache = ctx.transcript_cache
    segments = await cache.get(version, extracted.sha256) if cache else None
    if segments is not None:
        TRANSCRIBED.labels("cache").inc()
        return to_text(extracted, segments, version)
    # Only a miss takes the content's lease, and looks again under it: the same
    # recording under another name, transcribed by a document that held it first, is
    # in the cache by then.
    async with cache.exclusive(version, extracted.sha256) if cache else contextlib.nullcontext():
        segments = await cache.get(version, extracted.sha256) if cache else None
        if segments is None:
            data = await ctx.blobs.read(ctx.source, ctx.settings.max_file_bytes)
            name = ctx.source.source_key or ctx.source.source
            segments = await transcribe(transcriber, data, name)
            TRANSCRIBED.labels("engine").inc()
            if cache is not None:
                await cache.put(version, extracted.sha256, segments)
        else:
            TRANSCRIBED.labels("cache").inc()
    return to_text(extracted, segments, version)
