"""S3 input, the S3 blob source and the S3 spill store, against moto's server mode.

Everything here goes through the real aioboto3 client over HTTP to a moto server on
a free loopback port (tests/s3_server.py); moto's own IAM checks make AccessDenied.
GetObject calls are counted on the server's side.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import boto3
import pytest
import redis.asyncio as aioredis

from accelerated.aio import wait_for
from accelerated.aws import check_credentials, session_from_settings
from accelerated.batch_run import BatchOptions, BatchReport, run_batch
from accelerated.cli import validate_startup
from accelerated.codec import Codec
from accelerated.errors import BackendUnavailable, CodecError, ConfigError, DocumentError
from accelerated.runtime import Runtime
from accelerated.s3 import S3Store, parse_s3_uri
from accelerated.settings import Settings
from accelerated.spill import S3Spill
from persistence.schema import migrate
from tests import s3_server
from tests.conftest import EXAMPLES
from tests.support import PYTHON, make_runtime, subprocess_env

ROOT = Path(__file__).resolve().parents[1]
KEY_ID = "AKIATESTS3INPUT00001"
SECRET = "s3-input-test-secret-0123456789abcdefABCDEF"  # must never be printed
LIMIT_S = 60.0  # bound on every run a test waits for


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[s3_server.S3Server]:
    with s3_server.running() as srv:
        yield srv


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The usual credential chain, fed from the environment only (no ~/.aws, no IMDS)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def s3_settings(settings: Settings, server: s3_server.S3Server) -> Settings:
    return settings.model_copy(update={"s3_endpoint_url": server.url, "aws_max_attempts": 2})


def admin(url: str) -> Any:
    """A plain boto3 client for arranging buckets (the code under test uses aioboto3)."""
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        config=boto3.session.Config(s3={"addressing_style": "path"}),
    )


def new_bucket(url: str, objects: dict[str, bytes] | None = None) -> str:
    name = f"t-{uuid.uuid4().hex[:16]}"
    s3 = admin(url)
    s3.create_bucket(Bucket=name)
    for key, body in (objects or {}).items():
        s3.put_object(Bucket=name, Key=key, Body=body)
    return name


def doc(n: int, extra: str = "") -> bytes:
    return (
        f"ORDER {n}\n\nIT IS ORDERED that the motion is granted. Smith v. Jones, "
        f"123 F.3d {400 + n} (9th Cir. 1999). {extra}\n"
    ).encode()


@contextlib.asynccontextmanager
async def runtime(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, *, accelerated: bool
) -> AsyncIterator[Runtime]:
    await migrate(pool, settings.pg_schema)
    rt = make_runtime(settings, pool, redis, accelerated=accelerated)
    try:
        yield rt
    finally:
        await rt.aclose()


async def batch(rt: Runtime, project: str, *uris: str, **kw: Any) -> BatchReport:
    return await wait_for(run_batch(rt, BatchOptions(project, s3_inputs=list(uris), **kw)), LIMIT_S)


async def rows(pool: asyncpg.Pool) -> dict[str, asyncpg.Record]:
    return {
        r["source_key"]: r
        for r in await pool.fetch("SELECT source_key, source, status, error, text FROM documents")
    }


# --- listing and change detection -------------------------------------------------------


@pytest.mark.parametrize("accelerated", [True, False], ids=["accelerated", "traditional"])
async def test_listing_pages_and_a_rerun_downloads_nothing(
    accelerated: bool,
    s3_settings: Settings,
    server: s3_server.S3Server,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
) -> None:
    n_docs = 10
    docs = {f"prod/batch{n % 3}/order_{n:02d}.txt": doc(n) for n in range(n_docs)}
    bucket = new_bucket(
        server.url,
        {
            **docs,
            "prod/sub/": b"",  # a folder marker
            "prod/.hidden/order.txt": doc(90),
            "prod/drafts/skip_me.txt": doc(91),
            "prod/scan.bin": b"\x00\x01",
            "prod2/order_99.txt": doc(99),  # shares the prefix's letters only
        },
    )
    layer = server.layer
    assert layer is not None
    settings = s3_settings.model_copy(update={"s3_list_page_size": 3})
    uri = f"s3://{bucket}/prod"
    async with runtime(settings, pg_pool, redis, accelerated=accelerated) as rt:
        first = await batch(rt, "s3p", uri, exclude=["drafts/*"])
        expected = {k.removeprefix("prod/") for k in docs}
        assert first.failed == {}
        assert (first.total, first.done) == (n_docs, n_docs)
        assert first.s3_skipped == {"scan.bin": "not a document type we take"}
        # 15 objects start with "prod", 3 a page: 5 pages, and the start-up probe.
        assert layer.lists(bucket) == 6 and first.s3_listed == n_docs + 5
        got = await rows(pg_pool)
        assert set(got) == expected
        for key, row in got.items():
            assert row["source"] == f"s3://{bucket}/prod/{key}"
            assert row["status"] == "done" and "IT IS ORDERED" in row["text"]
        # Intake hashed each object once and extract read it once.
        assert layer.gets(bucket) == 2 * n_docs and first.s3_downloaded == n_docs

        before = layer.gets(bucket)
        second = await batch(rt, "s3p", uri, exclude=["drafts/*"])
        assert layer.gets(bucket) == before  # not one object downloaded
        assert (second.total, second.unchanged, second.s3_unchanged) == (n_docs,) * 3
        assert second.s3_downloaded == 0

        # One object changed, one rewritten with the same bytes, one new.
        s3 = admin(server.url)
        s3.put_object(Bucket=bucket, Key="prod/batch0/order_00.txt", Body=doc(0, "AMENDED"))
        same = docs["prod/batch1/order_01.txt"]
        s3.put_object(Bucket=bucket, Key="prod/batch1/order_01.txt", Body=same)
        s3.put_object(Bucket=bucket, Key="prod/new.txt", Body=doc(50))
        before = layer.gets(bucket)
        third = await batch(rt, "s3p", uri, exclude=["drafts/*"])
        assert third.failed == {} and third.total == n_docs + 1
        assert third.s3_downloaded == 2 and third.unchanged == n_docs - 1
        assert layer.gets(bucket) - before == 2 * 2  # hash + extract, for those two only
        assert layer.gets(bucket, "prod/batch1/order_01.txt") == 2  # still only the first run's
        assert "AMENDED" in (await rows(pg_pool))["batch0/order_00.txt"]["text"]


async def test_a_single_object_input_and_reprocess(
    s3_settings: Settings, server: s3_server.S3Server, pg_pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    bucket = new_bucket(server.url, {"a/b/one.txt": doc(1), "a/b/two.txt": doc(2)})
    layer = server.layer
    assert layer is not None
    async with runtime(s3_settings, pg_pool, redis, accelerated=True) as rt:
        report = await batch(rt, "single", f"s3://{bucket}/a/b/one.txt")
        assert (report.total, report.done) == (1, 1)
        assert set(await rows(pg_pool)) == {"one.txt"}
        before = layer.gets(bucket)
        again = await wait_for(
            run_batch(rt, BatchOptions("single", reprocess=True, from_stage="chunk")), LIMIT_S
        )
        assert again.failed == {} and again.done == 1
        assert layer.gets(bucket) == before  # unchanged by ETag: not downloaded to hash


# --- size cap ---------------------------------------------------------------------------


async def test_size_cap_is_enforced_before_and_while_streaming(
    s3_settings: Settings, server: s3_server.S3Server, pg_pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    big = doc(7) + b"x" * 6000
    bucket = new_bucket(
        server.url, {"in/small.txt": doc(1), "in/big.txt": big, "in/chunked.txt": big}
    )
    layer = server.layer
    assert layer is not None
    layer.no_length.add(f"/{bucket}/in/chunked.txt")  # only the count while reading can tell
    settings = s3_settings.model_copy(update={"max_file_bytes": 4000})
    store = S3Store(settings)
    try:
        with pytest.raises(DocumentError) as exc:
            await store.read(parse_s3_uri(f"s3://{bucket}/in/chunked.txt"), 4000)
        assert exc.value.code == "too_large" and f"s3://{bucket}/in/chunked.txt" in str(exc.value)
        assert await store.read(parse_s3_uri(f"s3://{bucket}/in/big.txt"), len(big)) == big
        with pytest.raises(DocumentError, match="too_large"):
            await store.read(parse_s3_uri(f"s3://{bucket}/in/big.txt"), len(big) - 1)
    finally:
        await store.aclose()

    async with runtime(settings, pg_pool, redis, accelerated=True) as rt:
        report = await batch(rt, "cap", f"s3://{bucket}/in")
    assert report.done == 1 and set(report.failed) == {"big.txt", "chunked.txt"}
    assert all("too_large" in e and "MAX_FILE_BYTES" in e for e in report.failed.values())
    # The listing's size was over the cap: intake never downloaded those to hash them.
    assert layer.gets(bucket, "in/big.txt") == 3  # the two direct reads above + extract's
    assert report.s3_downloaded == 1


# --- per-document errors ----------------------------------------------------------------


def reader_credentials(url: str, bucket: str) -> tuple[str, str]:
    """An IAM user of moto that may do anything in S3 but read ``<bucket>/denied/*``."""
    iam = boto3.client(
        "iam",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
    user = f"reader-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {
                "Effect": "Deny",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/in/denied/*",
            },
        ],
    }
    iam.put_user_policy(UserName=user, PolicyName="read", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


async def wait_registered(pool: asyncpg.Pool, n: int) -> None:
    """Until intake has written ``n`` document rows (it hashed every object before)."""
    async with asyncio.timeout(LIMIT_S):
        while (await pool.fetchval("SELECT count(*) FROM documents")) < n:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("accelerated", [True, False], ids=["accelerated", "traditional"])
async def test_missing_denied_and_vanished_are_per_document_errors(
    accelerated: bool,
    s3_settings: Settings,
    server: s3_server.S3Server,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bucket = new_bucket(
        server.url,
        {
            "in/ok_1.txt": doc(1),
            "in/ok_2.txt": doc(2),
            "in/gone.txt": doc(3),
            "in/denied/secret.txt": doc(4),
        },
    )
    other = new_bucket(server.url, {"in/elsewhere.txt": doc(5)})
    key_id, secret = reader_credentials(server.url, bucket)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    with s3_server.iam_auth():
        async with runtime(s3_settings, pg_pool, redis, accelerated=accelerated) as rt:
            queued = asyncio.create_task(
                batch(rt, "errs", f"s3://{bucket}/in", f"s3://{other}/in", consume=False)
            )
            stop = asyncio.Event()
            engine: asyncio.Task[None] | None = None
            try:
                await wait_registered(pg_pool, 5)
                # Between the listing and the worker's read: an object and a bucket go.
                s3 = admin(server.url)
                s3.delete_object(Bucket=bucket, Key="in/gone.txt")
                s3.delete_object(Bucket=other, Key="in/elsewhere.txt")
                s3.delete_bucket(Bucket=other)
                engine = asyncio.create_task(rt.engine().run(stop))
                report = await queued
            finally:
                stop.set()
                queued.cancel()
                await asyncio.gather(queued, return_exceptions=True)
                if engine is not None:
                    await wait_for(engine, LIMIT_S)
    got = await rows(pg_pool)
    assert {k for k, r in got.items() if r["status"] == "done"} == {"ok_1.txt", "ok_2.txt"}
    errors = {k: r["error"] for k, r in got.items() if r["status"] == "failed"}
    assert set(errors) == {"gone.txt", "denied/secret.txt", "elsewhere.txt"}
    assert "missing" in errors["gone.txt"] and "NoSuchKey" in errors["gone.txt"]
    assert f"s3://{bucket}/in/gone.txt" in errors["gone.txt"]
    assert "access_denied" in errors["denied/secret.txt"]
    assert "AccessDenied" in errors["denied/secret.txt"]
    assert "missing" in errors["elsewhere.txt"] and "NoSuchBucket" in errors["elsewhere.txt"]
    assert report.failed.keys() == errors.keys()
    for text in errors.values():
        assert secret not in text and key_id not in text and "Traceback" not in text


async def test_throttling_is_transient_and_retried(
    s3_settings: Settings, server: s3_server.S3Server, pg_pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    bucket = new_bucket(server.url, {"in/a.txt": doc(1), "in/b.txt": doc(2)})
    layer = server.layer
    assert layer is not None
    settings = s3_settings.model_copy(update={"aws_max_attempts": 1})  # botocore gives up at once
    store = S3Store(settings)
    try:
        layer.slow_down[f"/{bucket}/in/a.txt"] = 1
        with pytest.raises(BackendUnavailable, match="SlowDown"):
            await store.read(parse_s3_uri(f"s3://{bucket}/in/a.txt"), 10_000)
    finally:
        await store.aclose()
    # Intake hashes a.txt (1 GET), then extract's first two reads are throttled.
    layer.slow_down[f"/{bucket}/in/a.txt"] = 0
    async with runtime(settings, pg_pool, redis, accelerated=True) as rt:
        plan = asyncio.create_task(batch(rt, "slow", f"s3://{bucket}/in", consume=False))
        stop = asyncio.Event()
        engine: asyncio.Task[None] | None = None
        try:
            await wait_registered(pg_pool, 2)
            layer.slow_down[f"/{bucket}/in/a.txt"] = 2
            engine = asyncio.create_task(rt.engine().run(stop))
            report = await plan
        finally:
            stop.set()
            plan.cancel()
            await asyncio.gather(plan, return_exceptions=True)
            if engine is not None:
                await wait_for(engine, LIMIT_S)
    assert report.failed == {} and report.done == 2
    assert layer.slow_down[f"/{bucket}/in/a.txt"] == 0  # both throttled replies were hit


# --- start-up errors ---------------------------------------------------------------------


async def test_start_up_problems_are_one_line_config_errors(
    s3_settings: Settings,
    server: s3_server.S3Server,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bucket = new_bucket(server.url, {"in/a.txt": doc(1)})
    async with runtime(s3_settings, pg_pool, redis, accelerated=True) as rt:
        with pytest.raises(ConfigError, match="no such bucket"):
            await batch(rt, "cfg", "s3://no-such-bucket-here/in")
        with s3_server.iam_auth(), pytest.raises(ConfigError, match="refused the credentials") as e:
            await batch(rt, "cfg", f"s3://{bucket}/in")
        assert SECRET not in str(e.value) and "InvalidAccessKeyId" in str(e.value)
    dead = s3_settings.model_copy(
        update={"s3_endpoint_url": "http://127.0.0.1:9", "aws_max_attempts": 1}
    )
    async with runtime(dead, pg_pool, redis, accelerated=True) as rt:
        with pytest.raises(ConfigError, match=r"cannot reach S3_ENDPOINT_URL=http://127.0.0.1:9"):
            await batch(rt, "cfg", f"s3://{bucket}/in")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    async with runtime(s3_settings, pg_pool, redis, accelerated=True) as rt:
        with pytest.raises(ConfigError, match="no AWS credentials found"):
            await batch(rt, "cfg", f"s3://{bucket}/in")
    with pytest.raises(ConfigError, match="no AWS credentials found"):
        await check_credentials(session_from_settings(s3_settings))
    with pytest.raises(ConfigError, match="SPILL_URL=s3://no-such-spill-bucket"):
        validate_startup(s3_settings.model_copy(update={"spill_url": "s3://no-such-spill-bucket"}))
    with pytest.raises(ConfigError, match="not a valid S3 bucket name"):
        parse_s3_uri("s3://x/")
    assert await pg_pool.fetchval("SELECT count(*) FROM documents") == 0


def test_cli_reports_a_missing_bucket_in_one_line(
    s3_settings: Settings, server: s3_server.S3Server, pg_pool: asyncpg.Pool
) -> None:
    env = {**subprocess_env(s3_settings), "S3_ENDPOINT_URL": server.url}
    out = subprocess.run(
        [PYTHON, "-m", "accelerated.batch", "--project", "cli", "--input", "s3://no-bucket-x/a"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 2, text
    assert "configuration error: --input s3://no-bucket-x/a: no such bucket" in text
    assert "Traceback" not in text and SECRET not in text


# --- spill ------------------------------------------------------------------------------


def test_spill_round_trip_through_s3(s3_settings: Settings, server: s3_server.S3Server) -> None:
    bucket = new_bucket(server.url)
    spill = S3Spill(s3_settings, f"s3://{bucket}/spill/run1")
    spill.check()
    codec = Codec(max_value_bytes=64, spill=spill)
    value = {"text": "x" * 5000, "n": list(range(300))}
    frame = codec.encode(value)
    assert len(frame) < 80 and codec.spilled == 1  # Redis would hold only the reference
    keys = [o["Key"] for o in admin(server.url).list_objects_v2(Bucket=bucket)["Contents"]]
    assert len(keys) == 1 and keys[0].startswith("spill/run1/")
    assert codec.decode(frame, dict) == value
    # A corrupt or vanished object is a codec error, not garbage.
    admin(server.url).put_object(Bucket=bucket, Key=keys[0], Body=b"LP\x01\x00tampered")
    with pytest.raises(CodecError, match="does not match"):
        codec.decode(frame, dict)
    admin(server.url).delete_object(Bucket=bucket, Key=keys[0])
    with pytest.raises(CodecError, match="cannot be read"):
        codec.decode(frame, dict)


# --- a worker on another host --------------------------------------------------------------


async def test_worker_process_reads_from_s3_and_spills_there(
    tmp_path: Path,
    s3_settings: Settings,
    server: s3_server.S3Server,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
) -> None:
    """The queuing side and the worker share only Redis, Postgres and the object store:
    the worker runs in another folder with its own state directory, and the documents
    exist nowhere on disk."""
    pdf = (EXAMPLES / "complaint_acme_v_brightline.pdf").read_bytes()
    bucket = new_bucket(
        server.url,
        {
            "prod/complaint.pdf": pdf,
            "prod/order_1.txt": doc(1, "MARKER-ONE"),
            "prod/order_2.txt": doc(2),
            "prod/deleted_later.txt": doc(3),
        },
    )
    spill_bucket = new_bucket(server.url)
    spill_url = f"s3://{spill_bucket}/spill"
    settings = s3_settings.model_copy(update={"spill_url": spill_url, "max_value_bytes": 400})
    host = tmp_path / "other-host"
    host.mkdir()
    env = {
        **subprocess_env(settings),
        "PYTHONPATH": str(ROOT),
        "S3_ENDPOINT_URL": server.url,
        "SPILL_URL": spill_url,
        "MAX_VALUE_BYTES": "400",
        "STATE_DIR": str(host / "state"),
    }
    worker: subprocess.Popen[bytes] | None = None
    async with runtime(settings, pg_pool, redis, accelerated=True) as rt:
        queued = asyncio.create_task(batch(rt, "remote", f"s3://{bucket}/prod", consume=False))
        try:
            await wait_registered(pg_pool, 4)
            admin(server.url).delete_object(Bucket=bucket, Key="prod/deleted_later.txt")
            worker = _start_worker(host, env)
            report = await queued
        finally:
            queued.cancel()
            await asyncio.gather(queued, return_exceptions=True)
            out = _stop(worker)
    assert worker is not None and worker.returncode == 0, out
    got = await rows(pg_pool)
    assert {k for k, r in got.items() if r["status"] == "done"} == {
        "complaint.pdf",
        "order_1.txt",
        "order_2.txt",
    }, out
    assert "MARKER-ONE" in got["order_1.txt"]["text"]
    assert "Brightline" in got["complaint.pdf"]["text"]
    assert all(r["source"].startswith(f"s3://{bucket}/prod/") for r in got.values())
    assert report.failed.keys() == {"deleted_later.txt"}
    assert "missing" in report.failed["deleted_later.txt"]
    # Values over MAX_VALUE_BYTES went to the bucket, none to a local directory.
    spilled = admin(server.url).list_objects_v2(Bucket=spill_bucket).get("Contents", [])
    assert len(spilled) >= 3
    assert not (host / "state" / "spill").exists()
    assert SECRET not in out and KEY_ID not in out and "Traceback" not in out


def _start_worker(cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [PYTHON, "-m", "accelerated.worker"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _stop(proc: subprocess.Popen[bytes] | None) -> str:
    if proc is None:
        return ""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
    return out.decode(errors="replace")


async def test_a_client_being_opened_when_the_holder_closes_is_closed_too(
    s3_settings: Settings,
) -> None:
    """``aclose`` while a client is being opened (a shutdown racing a late caller) waits
    for it and closes it with the rest: none is left open for the collector, which
    would report an "Unclosed client session" (conftest's loop exception handler fails
    the test on that)."""
    import gc

    from accelerated.aws import AwsClients

    clients = AwsClients(s3_settings)
    late = asyncio.create_task(clients.get("s3"))
    await asyncio.sleep(0)  # opening
    await clients.aclose()
    s3 = await late
    with contextlib.suppress(Exception):  # closed: a call may fail, and must not leak
        await s3.list_buckets()
    del s3, late
    gc.collect()
    await asyncio.sleep(0)
    # The holder is usable again afterwards, and closes what it opened.
    again = await clients.get("s3")
    assert "Buckets" in await again.list_buckets()
    await clients.aclose()
