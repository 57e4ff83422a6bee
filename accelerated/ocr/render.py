"""One page to grey pixels, then to text: the call the OCR stage sends to the pool.

Everything here runs in a pool process, one page per call, so the pages of many
documents are read side by side. The document arrives as a path to a file the
stage wrote once (not its bytes: pickling a 100 MB scan into every page's call
would cost more than the OCR). Each page's size is checked against
``OCR_MAX_PIXELS`` from the PDF page box or the image header *before* anything is
decoded, so a decompression bomb costs a header read, not the machine's memory.
"""

from __future__ import annotations

import math
import time
from typing import Final

from PIL import Image, ImageOps

from accelerated.backends import OcrEngine, OcrText, PageImage
from accelerated.errors import DocumentError
from accelerated.extractors.image import kind_name, open_image, too_many_pixels

PDF_POINTS_PER_INCH: Final = 72
DEFAULT_IMAGE_DPI: Final = 300  # an image without a resolution tag: assume a 300 dpi scan
_SANE_DPI: Final = (50, 2400)


def render_pdf_page(path: str, number: int, dpi: int, max_pixels: int) -> PageImage:
    """Page ``number`` (1-based) of a PDF at ``dpi``, as 8-bit grey pixels (PDFium)."""
    import pypdfium2 as pdfium

    from accelerated.extractors.pdf import _LOCK, open_pdf

    with _LOCK:
        doc = open_pdf(path)
        try:
            page = doc[number - 1]
            try:
                w_pt, h_pt = page.get_size()
                scale = dpi / PDF_POINTS_PER_INCH
                width, height = math.ceil(w_pt * scale), math.ceil(h_pt * scale)
                if width * height > max_pixels:
                    raise too_many_pixels(
                        f"Page {number} of the PDF, drawn at {dpi} dpi,", width, height, max_pixels
                    )
                try:
                    bitmap = page.render(scale=scale, grayscale=True)
                except pdfium.PdfiumError as exc:
                    raise DocumentError(
                        f"Page {number} of the PDF cannot be drawn ({exc}).", code="corrupt"
                    ) from None
                width, height, stride = bitmap.width, bitmap.height, bitmap.stride
                raw = bytes(bitmap.buffer)
            finally:
                page.close()
        finally:
            doc.close()
    if stride != width:
        raw = b"".join(raw[r * stride : r * stride + width] for r in range(height))
    return PageImage(number=number, width=width, height=height, dpi=dpi, pixels=raw)


def _image_dpi(im: Image.Image) -> int:
    dpi = im.info.get("dpi")
    try:
        x = float(dpi[0] if isinstance(dpi, tuple) else dpi or 0)
    except (TypeError, ValueError, IndexError):
        return DEFAULT_IMAGE_DPI
    return round(x) if _SANE_DPI[0] <= x <= _SANE_DPI[1] else DEFAULT_IMAGE_DPI


def _to_grey(im: Image.Image) -> Image.Image:
    """8-bit grey, transparent parts on white paper, EXIF rotation applied (phones)."""
    im = ImageOps.exif_transpose(im) or im
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(paper, rgba)
    return im if im.mode == "L" else im.convert("L")


def render_image_page(path: str, kind: str, number: int, max_pixels: int) -> PageImage:
    """Page ``number`` (1-based frame) of a TIFF, or a PNG / JPEG, as grey pixels at
    its own resolution (no resampling: the scan's pixels are what OCR should see)."""
    with open_image(path, kind) as im:
        if number > 1:
            try:
                im.seek(number - 1)
            except Exception as exc:  # a damaged directory: Pillow raises many things
                raise DocumentError(
                    f"Page {number} of the TIFF cannot be found ({exc}).", code="corrupt"
                ) from None
        width, height = im.size
        if width * height > max_pixels:
            where = f"Page {number} of the {kind_name(kind)}"
            raise too_many_pixels(where, width, height, max_pixels)
        dpi = _image_dpi(im)
        try:
            im.load()
            grey = _to_grey(im)
        except MemoryError:
            raise
        except Exception as exc:  # truncated or garbled data: zlib, struct, OSError...
            raise DocumentError(
                f"Page {number} of the {kind_name(kind)} cannot be decoded ({exc}).",
                code="corrupt",
            ) from None
    return PageImage(
        number=number, width=grey.width, height=grey.height, dpi=dpi, pixels=grey.tobytes()
    )


def render_page(path: str, kind: str, number: int, dpi: int, max_pixels: int) -> PageImage:
    if kind == "pdf":
        return render_pdf_page(path, number, dpi, max_pixels)
    return render_image_page(path, kind, number, max_pixels)


def ocr_page(
    path: str, kind: str, number: int, dpi: int, max_pixels: int, engine: OcrEngine
) -> tuple[OcrText, float]:
    """Render and read one page; returns the text and the seconds both took."""
    t0 = time.perf_counter()
    result = engine.recognize(render_page(path, kind, number, dpi, max_pixels))
    return result, time.perf_counter() - t0
