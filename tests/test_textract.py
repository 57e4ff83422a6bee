"""OCR by AWS Textract's asynchronous API, against a local server that speaks its
protocol (tests/textract_server.py) and moto's S3: jobs in Redis, documents parked
while they run, one poller per deployment that a killed holder hands on, the shared
rate limit, and start-up checks."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import math
import re
import shutil
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO

import asyncpg
import msgspec
import pytest
import redis.asyncio as aioredis
from PIL import Image, ImageDraw, ImageFont

from accelerated.aio import wait_for
from accelerated.backends import OcrJobResult
from accelerated.batch_run import BatchOptions, BatchReport, run_batch
from accelerated.cli import load_settings, validate_startup
from accelerated.codec import Codec
from accelerated.errors import ConfigError
from accelerated.extractors import extract_bytes
from accelerated.keys import Keys
from accelerated.models import Extracted, SourceRef
from accelerated.ocr.jobs import IN_PROGRESS, STARTING, SUCCEEDED, RedisOcrJobs
from accelerated.ocr.textract import VERSION, TextractService, page_texts, pages_from_blocks
from accelerated.parking import Parked
from accelerated.runtime import Runtime
from accelerated.settings import Settings
from persistence.schema import migrate
from tests.conftest import KINDS
from tests.s3_server import S3Server, running
from tests.support import PYTHON, make_runtime, redis_from_url, subprocess_env
from tests.textract_server import CREDENTIALS, REGION, TextractServer, s3_client

ROOT = Path(__file__).resolve().parents[1]
LOCK_TTL_S = 3.0  # short, so a dead poller is replaced within the test
SCAN = "courtlistener/recap_pdf/pdf_ocr_test.pdf"  # one scanned page, no text layer
TEXT_PDF = "courtlistener/opinions_pdf/8thCircuit-071306U.pdf"  # a text layer only


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def scanned_page(lines: list[str]) -> bytes:
    """A one-page PDF that is only an image of text (small: quick to OCR)."""
    img = Image.new("L", (1275, 1650), 255)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=40)
    for i, line in enumerate(lines):
        draw.text((120, 150 + 70 * i), line, fill=0, font=font)
    buf = io.BytesIO()
    img.save(buf, "PDF", resolution=150)
    return buf.getvalue()


def _pdf(*pages: bytes) -> bytes:
    """The first page of each PDF, in order, as one PDF."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for data in pages:
        writer.add_page(PdfReader(io.BytesIO(data)).pages[0])
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


PAGE_2 = ["Second page of the filing", "Tarrant Regional Water District"]


@pytest.fixture(scope="module")
def scan(corpus_dir: Path) -> bytes:
    """Two scanned pages: the corpus's scanned order and a drawn page (made once per
    module: the server reads the same bytes once)."""
    return _pdf((corpus_dir / SCAN).read_bytes(), scanned_page(PAGE_2))


@pytest.fixture(scope="module")
def corpus_dir() -> Path:
    from tests.conftest import CORPUS

    if not CORPUS.is_dir():
        pytest.fail(f"corpus not found at {CORPUS}: set CORPUS_DIR")
    return CORPUS


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials; nothing from this machine's AWS config, no instance metadata."""
    for var in ("AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for var, value in CREDENTIALS.items():
        monkeypatch.setenv(var, value)


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with running() as server:
        yield server


@pytest.fixture
def textract(s3: S3Server) -> Iterator[TextractServer]:
    server = TextractServer(s3.url, in_progress_s=0.6, page_size=25).start()
    yield server
    server.stop()


@pytest.fixture
def tx_settings(
    settings: Settings, s3: S3Server, textract: TextractServer, aws_env: None
) -> Settings:
    bucket = f"staging-{uuid.uuid4().hex[:12]}"
    s3_client(s3.url).create_bucket(Bucket=bucket)
    return settings.model_copy(
        update={
            "ocr_backend": "textract",
            "aws_region": REGION,
            "s3_endpoint_url": s3.url,
            "textract_endpoint_url": textract.url,
            "textract_staging": f"s3://{bucket}/scans",
            "textract_poll_s": 0.2,
            "textract_poll_max_s": 0.5,
            "textract_lock_ttl_s": LOCK_TTL_S,
            "textract_tps": 50,
        }
    )


async def _within(
    aw: Awaitable[BatchReport], redis: aioredis.Redis, settings: Settings, seconds: float = 120
) -> BatchReport:
    """The batch's report, or a failure that shows where its Textract jobs stand."""
    try:
        return await wait_for(aw, seconds)
    except TimeoutError:
        jobs = [k async for k in redis.scan_iter(match=f"{settings.redis_prefix}:ocr-job:*")]
        states = {k: await redis.hgetall(k) for k in jobs}
        pytest.fail(f"batch not finished within {seconds:g}s; jobs: {states}")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# On a cluster: a job's record and the documents' rooms and streams are in other slots.
BOTH = pytest.mark.parametrize("redis_kind", KINDS, indirect=True)


@BOTH
async def test_scans_end_done_with_textract_text_and_failed_jobs_fail_only_their_document(
    corpus: Path,
    scan: bytes,
    tmp_path: Path,
    tx_settings: Settings,
    textract: TextractServer,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
    closing: list[Runtime],
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "scan.pdf").write_bytes(scan)
    # A filed page with a scanned exhibit: Textract reads both, the text layer stays.
    exhibit = ["EXHIBIT A", "Acme Widgets signed on June 1, 2017"]
    (src / "mixed.pdf").write_bytes(_pdf((corpus / TEXT_PDF).read_bytes(), scanned_page(exhibit)))
    (src / "bad.pdf").write_bytes(scanned_page(["This job will fail"]))
    (src / "partial.pdf").write_bytes(scanned_page(["Half of this one is read"]))
    textract.fail_keys.add(_sha(src / "bad.pdf"))
    textract.partial_keys.add(_sha(src / "partial.pdf"))
    # Input from S3 is read where it lies: the job names the input object itself (the
    # server fails a key holding "textract-fail", which no staging key does).
    inbox = f"input-{uuid.uuid4().hex[:12]}"
    s3 = textract.s3
    s3.create_bucket(Bucket=inbox)
    s3.put_object(Bucket=inbox, Key="in/exhibit.pdf", Body=scanned_page(["Read in place"]))
    s3.put_object(Bucket=inbox, Key="in/textract-fail.pdf", Body=scanned_page(["Failed in place"]))
    await migrate(pg_pool, tx_settings.pg_schema)

    rt = make_runtime(tx_settings, pg_pool, redis, accelerated=True)
    closing.append(rt)
    opts = BatchOptions("tx", [src], s3_inputs=[f"s3://{inbox}/in"])
    report = await _within(run_batch(rt, opts), redis, tx_settings)

    assert report.done == 3 and report.needs_ocr == 0, report
    assert set(report.failed) == {"bad.pdf", "partial.pdf", "textract-fail.pdf"}
    assert "FAILED" in report.failed["textract-fail.pdf"]
    in_place = {j.key: j for j in textract.jobs.values() if j.bucket == inbox}
    assert set(in_place) == {"in/exhibit.pdf", "in/textract-fail.pdf"}
    assert "ocr_failed" in report.failed["bad.pdf"]
    assert "FAILED" in report.failed["bad.pdf"]
    assert "Request has invalid parameters" in report.failed["bad.pdf"]
    assert "PARTIAL_SUCCESS" in report.failed["partial.pdf"]
    assert "page(s) 1" in report.failed["partial.pdf"]
    # The summary's pages: read by the service for the documents done (the scan's 2, the
    # mixed PDF's scanned page, the exhibit's page), none from the cache yet.
    assert (report.ocr_pages, report.ocr_cached_pages) == (4, 0)
    assert report.ocr_seconds > 0
    # One job per scanned file, each started once.
    assert textract.starts == textract.jobs_created == 6
    by_key = {j.key.rsplit("/", 1)[-1]: j for j in textract.jobs.values()}
    job = by_key[f"{_sha(src / 'scan.pdf')}.pdf"]
    # Every page of blocks was fetched: the server gives 25 blocks a response.
    assert textract.paged_gets >= math.ceil(len(job.blocks) / 25) - 1 > 3

    rows = {
        r["source_key"]: r
        for r in await pg_pool.fetch(
            "SELECT source_key, method, raw_text, raw_pages, metadata FROM documents"
        )
    }
    row = rows["scan.pdf"]
    assert row["method"] == "ocr"
    assert f'"ocr_engine": "{VERSION}"' in row["metadata"]
    lines = textract.lines(job.id)
    assert sorted(lines) == [1, 2]
    want = [w for n in (1, 2) for w in words("\n".join(lines[n]))]
    assert words(row["raw_text"]) == want  # all of it, in page order
    pages = msgspec.json.decode(row["raw_pages"])
    page2 = row["raw_text"][pages[1]["start"] : pages[1]["end"]]
    assert words(page2) == words("\n".join(lines[2]))  # page numbers respected
    assert words(page2)[:4] == ["second", "page", "of", "the"]

    # Of the mixed PDF only its scanned page went to Textract (it bills per page).
    (sent,) = [j for j in textract.jobs.values() if _sha(src / "mixed.pdf") in j.key]
    assert sent.pages == 1 and sent.key.endswith(".pdf") and "-p" in sent.key
    mixed = rows["mixed.pdf"]
    assert mixed["method"] == "text_layer+ocr"
    assert '"page_methods": "text_layer,ocr"' in mixed["metadata"]

    def page(row: asyncpg.Record, n: int) -> str:
        p = msgspec.json.decode(row["raw_pages"])[n - 1]
        return str(row["raw_text"][p["start"] : p["end"]])

    layer = extract_bytes((corpus / TEXT_PDF).read_bytes(), "text.pdf")
    first = layer.pages[0]
    assert words(page(mixed, 1)) == words(layer.text[first.start : first.end])  # its own
    assert "Acme Widgets" in page(mixed, 2) and "June 1, 2017" in page(mixed, 2)
    assert words(rows["exhibit.pdf"]["raw_text"]) == ["read", "in", "place"]

    # The same scan under another name, in another project: the OCR cache answers.
    again = tmp_path / "again"
    again.mkdir()
    shutil.copy(src / "scan.pdf", again / "renamed.pdf")
    rt = make_runtime(tx_settings, pg_pool, redis, accelerated=True)
    closing.append(rt)
    report = await _within(run_batch(rt, BatchOptions("tx2", [again])), redis, tx_settings)
    assert report.done == 1 and textract.starts == 6
    assert (report.ocr_pages, report.ocr_cached_pages) == (0, 2)


@pytest.fixture
async def closing() -> AsyncIterator[list[Runtime]]:
    """Runtimes the test makes, whose backends (the S3 reader's and Textract's clients)
    are closed on the test's loop at the end, as the CLI closes its own."""
    made: list[Runtime] = []
    yield made
    for rt in made:
        await rt.aclose_backends()


@pytest.fixture
async def service(tx_settings: Settings) -> AsyncIterator[TextractService]:
    svc = TextractService.from_settings(tx_settings)
    yield svc
    await svc.aclose()  # its clients, on the test's loop


@BOTH
async def test_a_retried_start_never_starts_a_second_job(
    tx_settings: Settings,
    service: TextractService,
    textract: TextractServer,
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    data = scanned_page(["Retried starts", "share one job"])
    sha = hashlib.sha256(data).hexdigest()
    found = extract_bytes(data, "x.pdf")
    assert found.needs_ocr
    extracted = Extracted(
        document_id=uuid.uuid4(),
        sha256=sha,
        format="pdf",
        method=found.method,
        text="",
        pages=found.pages,
        needs_ocr=True,
    )

    def ref() -> SourceRef:  # a document of these bytes (another id each time)
        return SourceRef(
            document_id=uuid.uuid4(),
            project="p",
            source="/nowhere/x.pdf",  # never read: the bytes come from read()
            source_key="x.pdf",
            sha256=sha,
            size=len(data),
            format="pdf",
        )

    async def read() -> bytes:
        return data

    jobs = RedisOcrJobs(redis, keys, Codec(), service, tx_settings)
    textract.hold.set()
    first = ref()
    with pytest.raises(Parked) as parked:
        await jobs.pages(first, extracted, read)
    # It waits for the job's first attempt, in its shard's room (not in the job record).
    assert parked.value.ticket == 1
    assert parked.value.room == keys.ocr_room("textract", sha, keys.shard(first.document_id))
    key = jobs.job_key(sha)
    job_id = (await redis.hget(key, "job_id")).decode()
    assert textract.starts == textract.jobs_created == 1

    # The worker died after StartDocumentTextDetection, before it recorded the job:
    # its message is delivered again and the stage starts again, with the same token.
    await redis.hset(key, mapping={"status": STARTING})
    await redis.hdel(key, "job_id")
    await redis.zrem(keys.ocr_jobs("textract"), sha)
    with pytest.raises(Parked):
        await jobs.pages(first, extracted, read)
    assert textract.starts == 2 and textract.jobs_created == 1
    assert (await redis.hget(key, "job_id")).decode() == job_id
    assert (await redis.hget(key, "status")).decode() == IN_PROGRESS
    assert (await redis.hget(key, "attempts")).decode() == "1"

    # Another document with the same bytes joins the job without a start call.
    with pytest.raises(Parked):
        await jobs.pages(ref(), extracted, read)
    assert textract.starts == 2
    # Only the poller asks about it; once it has, the text is there for both.
    textract.hold.clear()

    async def until_done() -> None:
        while (await redis.hget(key, "status")) != SUCCEEDED.encode():
            await jobs.poll_one(sha)
            await asyncio.sleep(0.2)

    await wait_for(until_done(), timeout=30)
    pages = await jobs.pages(ref(), extracted, read)
    assert words(pages[1].text) == ["retried", "starts", "share", "one", "job"]
    assert textract.starts == 2 and textract.jobs_created == 1


def _spawn_worker(env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [PYTHON, "-m", "accelerated.worker"], cwd=ROOT, env=env, stdout=log, stderr=log
    )


@contextlib.asynccontextmanager
async def _engine(rt: Runtime) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(rt.engine().run(stop))
    try:
        yield
    finally:
        stop.set()
        await wait_for(task, timeout=30)


async def test_a_killed_poller_is_replaced_and_its_job_resumes(
    scan: bytes,
    tmp_path: Path,
    tx_settings: Settings,
    textract: TextractServer,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
    keys: Keys,
    closing: list[Runtime],
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "scan.pdf").write_bytes(scan)
    await migrate(pg_pool, tx_settings.pg_schema)
    s = tx_settings
    env = {
        **subprocess_env(s),
        **CREDENTIALS,
        "AWS_EC2_METADATA_DISABLED": "true",
        "OCR_BACKEND": "textract",
        "AWS_REGION": REGION,
        "S3_ENDPOINT_URL": str(s.s3_endpoint_url),
        "TEXTRACT_ENDPOINT_URL": str(s.textract_endpoint_url),
        "TEXTRACT_STAGING": str(s.textract_staging),
        "TEXTRACT_POLL_S": "0.2",
        "TEXTRACT_POLL_MAX_S": "0.5",
        "TEXTRACT_LOCK_TTL_S": str(LOCK_TTL_S),
    }
    lock = keys.ocr_poller_lock("textract")
    textract.hold.set()  # the job stays IN_PROGRESS until the worker is dead
    log = (tmp_path / "worker.log").open("wb")
    worker = _spawn_worker(env, log)
    rt = make_runtime(s, pg_pool, redis, accelerated=True)
    closing.append(rt)
    batch: asyncio.Task[BatchReport] | None = None
    try:

        async def until(
            check: Callable[[], Awaitable[bool]], what: str, within: float = 30
        ) -> None:
            async def loop() -> None:
                while not await check():
                    assert worker.poll() is None, (tmp_path / "worker.log").read_text()
                    await asyncio.sleep(0.05)

            try:
                await wait_for(loop(), within)
            except TimeoutError:
                pytest.fail(f"{what} not seen within {within}s")

        async def worker_leads() -> bool:
            return await redis.get(lock) is not None

        await until(worker_leads, "the worker taking the poller lock")
        holder = await redis.get(lock)
        assert f"-{worker.pid}-" in holder.decode()  # the lock names its holder
        # Queue only; the worker runs extract and ocr, which starts the job and parks.
        batch = asyncio.create_task(run_batch(rt, BatchOptions("kill", [src], consume=False)))

        async def polled_twice() -> bool:
            return textract.gets >= 2

        await until(polled_twice, "the worker polling the job")
        worker.kill()
        worker.wait(timeout=30)
        gets_by_worker = textract.gets
        assert await redis.get(lock) == holder  # still held: it lapses, nobody released it
        textract.hold.clear()

        # Another process (this one) takes over once the lock lapses, and resumes the job.
        async with _engine(rt):
            report = await _within(batch, redis, s)
        assert rt.ocr_jobs is not None
        poller = rt.ocr_jobs.poller
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
        log.close()
        if batch is not None and not batch.done():
            batch.cancel()
            await asyncio.gather(batch, return_exceptions=True)
    assert report.done == 1, report
    assert textract.starts == textract.jobs_created == 1  # no second job
    assert poller.terms >= 1 and poller.polls >= 1
    assert textract.gets > gets_by_worker
    text = await pg_pool.fetchval("SELECT raw_text FROM documents WHERE source_key = 'scan.pdf'")
    (job,) = textract.jobs.values()
    lines = textract.lines(job.id)
    assert words(text) == words("\n".join(lines[1] + lines[2]))


async def test_the_shared_limiter_bounds_the_request_rate(
    tx_settings: Settings, textract: TextractServer, prefix: str, keys: Keys
) -> None:
    tps = 5
    s = tx_settings.model_copy(update={"textract_tps": tps})
    service = TextractService.from_settings(s)
    # Two "workers": their own Redis connections, one limit.
    clients = [redis_from_url(str(s.redis_url)) for _ in range(2)]
    try:
        workers = [RedisOcrJobs(c, keys, Codec(), service, s) for c in clients]
        s3 = textract.s3
        bucket = str(s.textract_staging).split("/")[2]
        s3.put_object(Bucket=bucket, Key="blank.pdf", Body=scanned_page([]))
        textract.hold.set()
        job_id = await service.start(f"s3://{bucket}/blank.pdf", "t" * 64, workers[0].gate)
        # A process's first call of an operation resolves its model (a few tenths of a
        # second here, past the limiter's margin for the trip to the server): not measured.
        await service.poll(job_id, workers[0].gate)
        begin = len(textract.arrivals)

        async def polls(worker: RedisOcrJobs) -> list[OcrJobResult]:
            # One request after the other, as fast as the gate lets them (unlimited,
            # each worker alone would send them all within a fraction of a second).
            return [await worker.service.poll(job_id, worker.gate) for _ in range(8)]

        per_worker = await wait_for(asyncio.gather(*(polls(w) for w in workers)), timeout=30)
        results = [r for rs in per_worker for r in rs]
    finally:
        await service.aclose()
        for c in clients:
            await c.aclose()
    assert [r.status for r in results] == ["running"] * 16
    times = sorted(
        t for t, op in textract.arrivals[begin:] if op.endswith("GetDocumentTextDetection")
    )
    assert len(times) == 16
    most = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
    span = times[-1] - times[0]
    print(f"Textract limiter: at most {most} of {tps} a second; {len(times)} in {span:.2f}s")
    assert most <= tps, [round(t - times[0], 3) for t in times]  # any second, all workers


def test_lines_become_page_text_by_their_page_numbers() -> None:
    lines: dict[int, list[tuple[str, float]]] = {}
    pages_from_blocks(
        [
            {"BlockType": "PAGE", "Page": 1},
            {"BlockType": "LINE", "Page": 1, "Text": "first line", "Confidence": 90.0},
            {"BlockType": "WORD", "Page": 1, "Text": "first", "Confidence": 90.0},
            {"BlockType": "LINE", "Page": 3, "Text": "third page", "Confidence": 80.0},
        ],
        lines,
    )
    pages_from_blocks(  # the next response may carry more of page 1
        [{"BlockType": "LINE", "Page": 1, "Text": "second line", "Confidence": 70.0}], lines
    )
    out = page_texts(lines, page_count=3)
    assert out[1].text == "first line\nsecond line" and out[1].confidence == 80.0
    assert out[2].text == "" and out[2].confidence == -1.0  # a blank page
    assert out[3].text == "third page"


def test_startup_names_the_missing_setting(
    tx_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="TEXTRACT_STAGING"):
        validate_startup(tx_settings.model_copy(update={"textract_staging": None}))
    with pytest.raises(ConfigError, match="AWS_REGION"):
        validate_startup(tx_settings.model_copy(update={"aws_region": None}))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID"):
        validate_startup(tx_settings)
    monkeypatch.setenv("TEXTRACT_STAGING", "http://bucket/prefix")
    with pytest.raises(ConfigError) as bad:
        load_settings(_env_file=None)
    assert str(bad.value).startswith("TEXTRACT_STAGING=http://bucket/prefix is not valid")
    assert "\n" not in str(bad.value)
