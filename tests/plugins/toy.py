"""Toy backends, registered on import: ``PLUGINS=tests.plugins.toy``.

They are real implementations of the protocols in ``accelerated/backends.py``, only
trivial: the tests check that settings alone select them, on both paths, with no
change to the engine or the stages.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path

from accelerated.backends import ENTITY_BACKENDS, OCR_ENGINES, OcrText, PageImage
from accelerated.entities import RawMention
from accelerated.errors import ConfigError
from accelerated.settings import Settings

_COURT = re.compile(r"\bCourt\b")


class ToyOcr:
    """Reads every page as a sentence naming the page and its size in pixels."""

    version = "toy-ocr-1"

    def recognize(self, page: PageImage) -> OcrText:
        dark = sum(1 for b in page.pixels[:: max(1, len(page.pixels) // 4096)] if b < 128)
        text = (
            f"Toy OCR page {page.number} ({page.width}x{page.height} at {page.dpi} dpi). "
            f"The Supreme Court decided Smith v. Jones, 410 U.S. 113 (1973). Ink {dark}."
        )
        return OcrText(text=text, confidence=91.5)


class ToyAsyncEntities:
    """An ``async`` backend (as an LLM client would be): every "Court" is a COURT."""

    version = "toy-async-1"
    mode = "async"

    def __init__(self) -> None:
        self.calls = 0

    async def extract_async(self, texts: list[str]) -> list[list[RawMention]]:
        self.calls += 1
        await asyncio.sleep(0)  # really awaited on the loop
        return [
            [RawMention("COURT", m.start(), m.end(), "court") for m in _COURT.finditer(t)]
            for t in texts
        ]


class HangingEntities:
    """``async`` mode, and never returns while the file ``HANG_FILE`` names exists."""

    version = "toy-hang-1"
    mode = "async"

    def __init__(self, flag: Path) -> None:
        self.flag = flag

    async def extract_async(self, texts: list[str]) -> list[list[RawMention]]:
        # Says it is hanging (a test waits for this, whichever stage's message it holds).
        self.flag.with_name(self.flag.name + ".entered").touch()
        while self.flag.exists():  # noqa: ASYNC110 - a file another process removes
            await asyncio.sleep(0.05)
        return [[] for _ in texts]


class PoolSaboteur:
    """``pool`` mode: on a chunk containing ``TRIGGER``, the first call per flag file
    kills its own process (as the OOM killer would) or hangs (a native call that never
    returns); later calls work."""

    version = "toy-pool-1"
    TRIGGER = "SABOTAGE"

    def __init__(self, flag: str, how: str) -> None:
        self.flag, self.how = flag, how

    def extract(self, texts: list[str]) -> list[list[RawMention]]:
        if any(self.TRIGGER in t for t in texts) and os.path.exists(self.flag):
            os.unlink(self.flag)
            if self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(3600)
        return [
            [RawMention("COURT", m.start(), m.end(), "court") for m in _COURT.finditer(t)]
            for t in texts
        ]


def _hang(settings: Settings) -> HangingEntities:
    flag = os.environ.get("HANG_FILE")
    if not flag:
        raise ConfigError("ENTITY_BACKEND=toy-hang needs HANG_FILE")
    return HangingEntities(Path(flag))


def _saboteur(settings: Settings) -> PoolSaboteur:
    flag, how = os.environ.get("SABOTAGE_FILE", ""), os.environ.get("SABOTAGE", "kill")
    return PoolSaboteur(flag, how)


OCR_ENGINES.register("toy-ocr", lambda _s: ToyOcr())
ENTITY_BACKENDS.register("toy-async", lambda _s: ToyAsyncEntities())
ENTITY_BACKENDS.register("toy-hang", _hang)
ENTITY_BACKENDS.register("toy-pool", _saboteur)
