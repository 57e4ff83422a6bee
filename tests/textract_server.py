"""A local server speaking AWS Textract's JSON 1.1 protocol, reading from moto's S3.

moto's own Textract succeeds at once, returns no blocks, does not page and ignores the
request token: not enough to test a poller. This one behaves like the service where
the pipeline depends on it:

* ``Textract.StartDocumentTextDetection`` (``X-Amz-Target``, ``Content-Type:
  application/x-amz-json-1.1``, SigV4-signed by a real aioboto3 client) reads the
  object from the S3 server (moto's, ``tests/s3_server.py``, through a real boto3
  client): a missing object is
  ``InvalidS3ObjectException``; the same ``ClientRequestToken`` returns the same
  ``JobId`` (with other parameters: ``IdempotentParameterMismatchException``);
* a job is ``IN_PROGRESS`` for ``in_progress_s`` (and while ``hold`` is set), then
  ``SUCCEEDED`` with real ``PAGE``/``LINE``/``WORD`` blocks (``Geometry`` with a
  ``BoundingBox`` and a ``Polygon``, ``Page``, ``Confidence``, ``Relationships``)
  produced by running tesseract on the rendered pages;
* ``Textract.GetDocumentTextDetection`` pages its blocks by ``NextToken``, at most
  ``page_size`` a response whatever ``MaxResults`` asks (the service caps it too);
* an object whose key contains one of ``fail_keys`` (or ``textract-fail``) ends
  ``FAILED``, one of ``partial_keys`` ``PARTIAL_SUCCESS`` with a warning; bytes that
  are neither a PDF nor an image end ``FAILED`` as unsupported;
* it counts Start calls, jobs created and Get calls, and keeps every request's arrival
  time (for the rate-limit test).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}

# Tesseract's results by (content sha256, dpi), for every server of this process: the
# same scan is read once per test session, however many tests start a job on it.
_OCR_MEMO: dict[tuple[str, int], tuple[int, list[dict[str, Any]]]] = {}
_OCR_LOCK = threading.Lock()  # one page at a time: the tests' machine has few cores


def s3_client(url: str) -> Any:
    """A boto3 S3 client for the moto server at ``url`` (``tests/s3_server.py``)."""
    import boto3

    return boto3.session.Session().client(
        "s3",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def _geometry(left: float, top: float, width: float, height: float) -> dict[str, Any]:
    return {
        "BoundingBox": {"Width": width, "Height": height, "Left": left, "Top": top},
        "Polygon": [
            {"X": left, "Y": top},
            {"X": left + width, "Y": top},
            {"X": left + width, "Y": top + height},
            {"X": left, "Y": top + height},
        ],
    }


def _box(bbox: tuple[int, int, int, int], w: int, h: int) -> dict[str, Any]:
    x1, y1, x2, y2 = bbox
    return _geometry(x1 / w, y1 / h, (x2 - x1) / w, (y2 - y1) / h)


def _images(data: bytes, dpi: int) -> list[Any]:
    """The document's pages as greyscale PIL images (PDF through PDFium, else Pillow)."""
    from PIL import Image, ImageSequence

    if data.startswith(b"%PDF"):
        import pypdfium2

        # PDFium is not thread-safe, and the pipeline under test uses it in this process
        # too: take the lock its PDF code takes.
        from accelerated.extractors.pdf import _LOCK

        with _LOCK:
            doc = pypdfium2.PdfDocument(data)
            try:
                return [
                    doc[i].render(scale=dpi / 72, grayscale=True).to_pil() for i in range(len(doc))
                ]
            finally:
                doc.close()
    img = Image.open(io.BytesIO(data))
    return [frame.convert("L") for frame in ImageSequence.Iterator(img)]


def tesseract_blocks(data: bytes, dpi: int) -> tuple[int, list[dict[str, Any]]]:
    """(page count, blocks) as Textract lays them out: per page a PAGE block, then each
    LINE followed by its WORDs, coordinates as fractions of the page."""
    key = (hashlib.sha256(data).hexdigest(), dpi)
    with _OCR_LOCK:
        if key in _OCR_MEMO:
            return _OCR_MEMO[key]
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")
        import tesserocr

        from accelerated.ocr.tesseract import tessdata_dir

        pages = _images(data, dpi)
        blocks: list[dict[str, Any]] = []
        word_level, line_level = tesserocr.RIL.WORD, tesserocr.RIL.TEXTLINE
        with tesserocr.PyTessBaseAPI(path=str(tessdata_dir()) + "/", lang="eng") as api:
            for number, img in enumerate(pages, start=1):
                w, h = img.size
                api.SetImage(img)
                api.Recognize()
                lines: list[tuple[Any, float, list[tuple[str, Any, float]]]] = []
                it = api.GetIterator()
                for r in tesserocr.iterate_level(it, word_level):
                    if not lines or r.IsAtBeginningOf(line_level):
                        lines.append((r.BoundingBox(line_level), r.Confidence(line_level), []))
                    text = (r.GetUTF8Text(word_level) or "").strip()
                    if text:
                        lines[-1][2].append(
                            (text, r.BoundingBox(word_level), r.Confidence(word_level))
                        )
                page = {
                    "BlockType": "PAGE",
                    "Id": str(uuid.uuid4()),
                    "Page": number,
                    "Geometry": _geometry(0.0, 0.0, 1.0, 1.0),
                    "Relationships": [{"Type": "CHILD", "Ids": []}],
                }
                blocks.append(page)
                for bbox, conf, words in lines:
                    if not words:
                        continue
                    word_blocks = [
                        {
                            "BlockType": "WORD",
                            "Id": str(uuid.uuid4()),
                            "Page": number,
                            "Text": text,
                            "TextType": "PRINTED",
                            "Confidence": wconf,
                            "Geometry": _box(wbox, w, h),
                        }
                        for text, wbox, wconf in words
                    ]
                    line = {
                        "BlockType": "LINE",
                        "Id": str(uuid.uuid4()),
                        "Page": number,
                        "Text": " ".join(b["Text"] for b in word_blocks),
                        "Confidence": conf,
                        "Geometry": _box(bbox, w, h),
                        "Relationships": [{"Type": "CHILD", "Ids": [b["Id"] for b in word_blocks]}],
                    }
                    page["Relationships"][0]["Ids"].append(line["Id"])
                    blocks.append(line)
                    blocks.extend(word_blocks)
                api.Clear()
        _OCR_MEMO[key] = (len(pages), blocks)
        return _OCR_MEMO[key]


@dataclass
class Job:
    id: str
    bucket: str
    key: str
    token: str | None
    created: float
    status: str = "IN_PROGRESS"  # what it will be once done
    done: threading.Event = field(default_factory=threading.Event)
    pages: int = 0
    blocks: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    warnings: list[dict[str, Any]] = field(default_factory=list)


class AwsError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class TextractServer:
    """Run with ``start()``; ``url`` is the endpoint to give the client."""

    def __init__(
        self,
        s3_url: str,
        *,
        in_progress_s: float = 1.0,
        page_size: int = 25,
        dpi: int = 150,
    ) -> None:
        self.s3 = s3_client(s3_url)  # one client, made here: making them is not thread-safe
        self.in_progress_s = in_progress_s
        self.page_size = page_size
        self.dpi = dpi
        self.fail_keys: set[str] = {"textract-fail"}
        self.partial_keys: set[str] = set()
        self.hold = threading.Event()  # set: every job stays IN_PROGRESS
        self.jobs: dict[str, Job] = {}
        self.tokens: dict[str, tuple[tuple[str, str], str]] = {}
        self.starts = 0
        self.gets = 0
        self.paged_gets = 0  # Get calls that carried a NextToken
        self.arrivals: list[tuple[float, str]] = []  # (time.time(), operation)
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self.url = ""

    # lifecycle -------------------------------------------------------------------------
    def start(self) -> TextractServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                server._serve(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    @property
    def jobs_created(self) -> int:
        return len(self.jobs)

    def lines(self, job_id: str) -> dict[int, list[str]]:
        """The LINE texts of a finished job, by page (what the pipeline must store)."""
        out: dict[int, list[str]] = {}
        for b in self.jobs[job_id].blocks:
            if b["BlockType"] == "LINE":
                out.setdefault(b["Page"], []).append(b["Text"])
        return out

    # protocol --------------------------------------------------------------------------
    def _serve(self, req: BaseHTTPRequestHandler) -> None:
        body = req.rfile.read(int(req.headers.get("Content-Length", "0") or 0))
        target = req.headers.get("X-Amz-Target", "")
        with self._lock:
            self.arrivals.append((time.time(), target))
        try:
            if "application/x-amz-json-1.1" not in req.headers.get("Content-Type", ""):
                raise AwsError("SerializationException", "expected application/x-amz-json-1.1")
            if not req.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256"):
                raise AwsError("MissingAuthenticationTokenException", "request is not signed", 403)
            args = json.loads(body or b"{}")
            if target == "Textract.StartDocumentTextDetection":
                reply = self._start(args)
            elif target == "Textract.GetDocumentTextDetection":
                reply = self._get(args)
            else:
                raise AwsError("UnknownOperationException", f"unknown operation {target!r}")
            status, payload = 200, reply
        except AwsError as exc:
            status, payload = exc.status, {"__type": exc.code, "message": exc.message}
        data = json.dumps(payload).encode()
        req.send_response(status)
        req.send_header("Content-Type", "application/x-amz-json-1.1")
        req.send_header("Content-Length", str(len(data)))
        req.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        if status != 200:
            req.send_header("x-amzn-ErrorType", payload["__type"])
        req.end_headers()
        req.wfile.write(data)

    def _start(self, args: dict[str, Any]) -> dict[str, Any]:
        obj = args.get("DocumentLocation", {}).get("S3Object", {})
        bucket, key = obj.get("Bucket"), obj.get("Name")
        if not bucket or not key:
            raise AwsError("InvalidParameterException", "DocumentLocation.S3Object is required")
        token = args.get("ClientRequestToken")
        with self._lock:
            self.starts += 1
            if token is not None and token in self.tokens:
                params, job_id = self.tokens[token]
                if params != (bucket, key):
                    raise AwsError(
                        "IdempotentParameterMismatchException",
                        "ClientRequestToken reused with different parameters",
                    )
                return {"JobId": job_id}
        try:
            data = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception:
            raise AwsError(
                "InvalidS3ObjectException",
                "Unable to get object metadata from S3. Check object key, region and/or "
                "access permissions.",
            ) from None
        with self._lock:
            if token is not None and token in self.tokens:  # a concurrent twin won
                return {"JobId": self.tokens[token][1]}
            job = Job(
                hashlib.sha256(uuid.uuid4().bytes).hexdigest(), bucket, key, token, time.monotonic()
            )
            self.jobs[job.id] = job
            if token is not None:
                self.tokens[token] = ((bucket, key), job.id)
        threading.Thread(target=self._process, args=(job, data), daemon=True).start()
        return {"JobId": job.id}

    def _process(self, job: Job, data: bytes) -> None:
        try:
            if any(marker in job.key for marker in self.fail_keys):
                job.status, job.message = "FAILED", "Request has invalid parameters"
                return
            if not (
                data.startswith(b"%PDF")
                or data[:4] in (b"II*\x00", b"MM\x00*")
                or data.startswith(b"\x89PNG")
                or data.startswith(b"\xff\xd8")
            ):
                job.status, job.message = "FAILED", "Request has unsupported document format"
                return
            job.pages, job.blocks = tesseract_blocks(data, self.dpi)
            job.status = "SUCCEEDED"
            if any(marker in job.key for marker in self.partial_keys):
                job.status = "PARTIAL_SUCCESS"
                job.message = "Some pages could not be processed"
                job.warnings = [{"ErrorCode": "UNSUPPORTED_DOCUMENT", "Pages": [job.pages]}]
        except Exception as exc:  # a bug in here must show as a failed job, not a hang
            job.status, job.message = "FAILED", f"internal error: {exc}"
        finally:
            job.done.set()

    def _get(self, args: dict[str, Any]) -> dict[str, Any]:
        job = self.jobs.get(str(args.get("JobId", "")))
        if job is None:
            raise AwsError("InvalidJobIdException", "An invalid job identifier was passed.")
        with self._lock:
            self.gets += 1
            if args.get("NextToken"):
                self.paged_gets += 1
        if (
            self.hold.is_set()
            or not job.done.is_set()
            or time.monotonic() - job.created < self.in_progress_s
        ):
            return {"JobStatus": "IN_PROGRESS"}
        if job.status == "FAILED":
            return {"JobStatus": "FAILED", "StatusMessage": job.message}
        size = max(1, min(int(args.get("MaxResults", 1000)), self.page_size))
        offset = 0
        if args.get("NextToken"):
            try:
                tid, _, at = base64.b64decode(args["NextToken"]).decode().partition(":")
                offset = int(at)
                if tid != job.id:
                    raise ValueError(tid)
            except ValueError:
                raise AwsError("InvalidParameterException", "invalid NextToken") from None
        reply: dict[str, Any] = {
            "JobStatus": job.status,
            "DocumentMetadata": {"Pages": job.pages},
            "Blocks": job.blocks[offset : offset + size],
            "DetectDocumentTextModelVersion": "1.0",
        }
        if offset + size < len(job.blocks):
            reply["NextToken"] = base64.b64encode(f"{job.id}:{offset + size}".encode()).decode()
        if job.status == "PARTIAL_SUCCESS":
            reply["StatusMessage"] = job.message
            reply["Warnings"] = job.warnings
        return reply
