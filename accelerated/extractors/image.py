"""Images of pages: TIFF (one page per frame, as e-discovery productions deliver
them), PNG and JPEG. They have no text layer, so every page goes to OCR.

Only headers are read here: Pillow opens lazily, and walking a TIFF's frames reads
each frame's directory, not its pixels. Decoding happens in the OCR stage, page by
page in the process pool, after it has checked the page's dimensions against
``OCR_MAX_PIXELS`` and the page count against ``OCR_MAX_PAGES`` (settings live
there, not in the pure extractors). Pillow is told which decoder to use (the sniffed
format), so a file cannot steer it into one of its many other parsers.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from typing import IO, Final

from PIL import Image, UnidentifiedImageError

from accelerated.errors import DocumentError
from accelerated.extractors.base import ExtractResult
from accelerated.models import Page

MAX_PAGES: Final = 5000  # as for PDFs: the rest is listed as truncated
PILLOW_FORMATS: Final = {"tiff": "TIFF", "png": "PNG", "jpeg": "JPEG"}
_NAMES: Final = {"tiff": "TIFF", "png": "PNG", "jpeg": "JPEG"}


def too_many_pixels(where: str, width: int, height: int, cap: int) -> DocumentError:
    """The one error for a page over the pixel cap (``where``: "Page 2 of the TIFF")."""
    return DocumentError(
        f"{where} is {width:,}x{height:,} pixels ({width * height / 1e6:,.0f} million), "
        f"over the OCR_MAX_PIXELS limit of {cap / 1e6:,.0f} million (a decompression "
        "bomb, or a scan at far too high a resolution); it was not decoded.",
        code="too_large",
    )


def kind_name(kind: str) -> str:
    return _NAMES.get(kind, kind.upper())


@contextlib.contextmanager
def open_image(fp: IO[bytes] | str, kind: str) -> Iterator[Image.Image]:
    """Pillow's lazy open, restricted to the sniffed format, with its errors mapped.

    Pillow itself refuses images over twice its ``MAX_IMAGE_PIXELS`` at open
    (``DecompressionBombError``) and warns above it; the OCR stage's own, lower cap
    (``OCR_MAX_PIXELS``) makes the warning noise, as are its warnings about damaged
    metadata (EXIF) while the image is in use: damage that matters raises.
    """
    name = _NAMES[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", module=r"PIL\.")
        try:
            im = Image.open(fp, formats=[PILLOW_FORMATS[kind]])
        except Image.DecompressionBombError:
            raise DocumentError(
                f"The {name} claims more pixels than any page can have (a decompression "
                "bomb); it was not decoded.",
                code="too_large",
            ) from None
        except UnidentifiedImageError:
            raise DocumentError(
                f"The file is not a readable {name} image (its data does not decode as one).",
                code="corrupt",
            ) from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise DocumentError(
                f"The file is not a readable {name} image ({exc}).", code="corrupt"
            ) from None
        try:
            yield im
        finally:
            im.close()


def frame_count(im: Image.Image, kind: str, limit: int) -> int:
    """Pages in the image, counting at most ``limit``: a TIFF's frames are its pages (an
    animated PNG's or a JPEG's extra frames are not pages, only the first is read)."""
    if kind != "tiff":
        return 1
    count = 1
    while count < limit:
        try:
            im.seek(count)
        except EOFError:
            break
        except Exception as exc:  # a damaged directory: Pillow raises many things
            raise DocumentError(
                f"The TIFF is damaged: page {count + 1} cannot be found ({exc}).",
                code="corrupt",
            ) from None
        count += 1
    return count


def extract_image(data: bytes, kind: str) -> ExtractResult:
    """Every page of the image, to be OCRed (``needs_ocr``); text and ranges come later."""
    with open_image(io.BytesIO(data), kind) as im:
        total = frame_count(im, kind, MAX_PAGES + 1)
    count = min(total, MAX_PAGES)
    meta = {"page_count": str(count)}
    if total > count:
        meta["truncated"] = f"only the first {MAX_PAGES} pages were extracted"
    return ExtractResult(
        format=kind,
        method="needs_ocr",
        text="",
        pages=[Page(n, 0, 0) for n in range(1, count + 1)],
        needs_ocr=True,
        metadata=meta,
    )
