"""The batch progress bar's numbers (per stage, ETA) and the log lines: JSON records,
secrets masked in them, one line per finished document on both paths."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from rich.console import Console

from accelerated import state
from accelerated.aio import wait_for
from accelerated.batch import progress_bar, show_progress
from accelerated.batch_run import (
    BatchOptions,
    BatchProgress,
    ProgressTracker,
    progress_line,
    run_batch,
)
from accelerated.intake import discover, fingerprint_all, new_generation
from accelerated.keys import Keys
from accelerated.logs import DOCUMENTS, JsonFormatter, document_finished
from accelerated.redact import RedactingFilter
from accelerated.settings import Settings
from persistence.schema import migrate
from tests.conftest import EXAMPLES, KINDS
from tests.support import gated_clean, make_runtime

SECRET = "log-Secret-9001"


async def _state_stages(redis: aioredis.Redis, keys: Keys, ids: set[str]) -> Counter[str]:
    """Where the state hashes say the run's unfinished documents are."""
    out: Counter[str] = Counter()
    for doc in ids:
        st = await redis.hmget(keys.state(doc), state.STATUS, state.STAGE)
        if st[0] is not None and st[0].decode() not in state.TERMINAL:
            out[st[1].decode()] += 1
    return out


# --- progress ---------------------------------------------------------------------------


@pytest.mark.parametrize("redis_kind", KINDS, indirect=True)
async def test_stage_counts_match_the_state_while_queued(
    settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    await migrate(pg_pool, settings.pg_schema)
    rt = make_runtime(settings, pg_pool, redis, accelerated=True)
    await rt.transport.setup()
    refs = await fingerprint_all("pq", discover([EXAMPLES]).files, new_generation())
    await rt.transport.enqueue(refs[:3], "extract")  # queued, no consumer
    ids = {str(r.document_id) for r in refs[:3]}
    snap = await ProgressTracker(rt, "pq", ids).snapshot(left=3)
    assert snap.total == 3 and snap.finished == 0 and snap.failed == 0
    assert snap.stages["extract"] == 3 == (await _state_stages(redis, keys, ids))["extract"]
    assert all(n == 0 for s, n in snap.stages.items() if s != "extract")
    assert "ocr" not in snap.stages  # OCR is off in the test settings
    assert snap.eta_s is None and snap.per_second is None


@pytest.mark.parametrize("inline", [False, True])
async def test_snapshots_of_a_run_held_at_a_stage_match_the_state(
    settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys, inline: bool
) -> None:
    """A run held at clean: the snapshot the bar got agrees with the state hashes. Run
    inline after extract, a document is shown at the stage whose message it holds
    (extract) until its stages commit together."""
    await migrate(pg_pool, settings.pg_schema)
    settings = settings.model_copy(update={"inline_stages": inline})
    rt = make_runtime(settings, pg_pool, redis, accelerated=True)
    at, other = ("extract", "clean") if inline else ("clean", "extract")
    gate = asyncio.Event()

    gated = gated_clean(gate)
    rt.stage_overrides["clean"] = gated
    seen: list[BatchProgress] = []
    n = len(discover([EXAMPLES]).files)
    run = asyncio.create_task(run_batch(rt, BatchOptions("pm", [EXAMPLES]), progress=seen.append))
    try:
        for _ in range(400):
            if gated.held == n and seen and seen[-1].stages.get(at) == n:
                break
            await asyncio.sleep(0.05)
        held = seen[-1]
        assert held.total == n and held.finished == 0 and held.persisting == 0
        assert held.stages[at] == n and held.stages[other] == 0
        docs = {
            str(r["id"])
            for r in await pg_pool.fetch("SELECT id FROM documents WHERE project = 'pm'")
        }
        assert await _state_stages(redis, keys, docs) == Counter({at: n})
    finally:
        gate.set()
        report = await wait_for(run, 120)
    last = seen[-1]
    assert last.finished == last.total == report.total == n
    assert last.failed == len(report.failed) == 0
    assert all(v == 0 for v in last.stages.values()) and last.persisting == 0
    assert last.eta_s == 0.0
    assert [p.finished for p in seen] == sorted(p.finished for p in seen)  # never backwards


async def test_failed_documents_are_counted_on_the_traditional_path(
    tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "empty.txt").write_bytes(b"")
    (src / "corrupt.pdf").write_bytes(b"%PDF-1.4 not really")
    (src / "ok.txt").write_text("IN THE SUPREME COURT. Smith v. Jones, 123 U.S. 456 (1990).")
    await migrate(pg_pool, settings.pg_schema)
    rt = make_runtime(settings, pg_pool, redis, accelerated=False)
    seen: list[BatchProgress] = []
    report = await run_batch(rt, BatchOptions("pf", [src]), progress=seen.append)
    assert len(report.failed) == 2
    assert seen[-1].failed == 2 and seen[-1].finished == 3 and seen[-1].persisting == 0


async def test_eta_is_the_rest_at_the_recent_rate(
    settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    rt = make_runtime(settings, pg_pool, redis, accelerated=True)
    await rt.transport.setup()
    tracker = ProgressTracker(rt, "eta", {str(uuid.uuid4()) for _ in range(20)})
    first = await tracker.snapshot(20, now=100.0)
    assert first.eta_s is None  # no rate yet
    mid = await tracker.snapshot(10, now=105.0)  # 10 documents in 5 s
    assert mid.per_second == pytest.approx(2.0) and mid.eta_s == pytest.approx(5.0)
    stalled = await tracker.snapshot(10, now=140.0)  # nothing for longer than the window
    assert stalled.per_second is None and stalled.eta_s is None
    done = await tracker.snapshot(0, now=141.0)
    assert done.eta_s == 0.0


def test_the_rendered_bar_names_the_stages_and_the_eta() -> None:
    snap = BatchProgress(
        total=40,
        finished=25,
        stages={"extract": 3, "clean": 0, "chunk": 1, "entities": 7, "resolve": 0, "relate": 2},
        persisting=2,
        failed=1,
        per_second=2.5,
        eta_s=6.0,
    )
    line = progress_line(snap)
    assert line == (
        "extract 3 clean 0 chunk 1 entities 7 resolve 0 relate 2 writing 2 failed 1 "
        "| 2.5/s ETA 0:00:06"
    )
    for width in (220, 80):  # a terminal, and a log file or CI (rich's default width)
        out = io.StringIO()
        console = Console(file=out, width=width, force_terminal=False, color_system=None)
        with progress_bar(console, "demo", "accelerated") as bar:
            task = bar.add_task("documents", total=None, detail="")
            show_progress(bar, task, snap)
        text = out.getvalue()
        assert "demo accelerated" in text and "25/40" in text, text
        assert "entities 7" in text and "ETA 0:00:06" in text, text
    assert "ETA -:--:--" in progress_line(BatchProgress(total=1, finished=0))


# --- log lines --------------------------------------------------------------------------


def _json_logger(name: str) -> tuple[logging.Logger, io.StringIO]:
    """A logger whose handler is set up as the CLI's: redaction filter, JSON lines."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(name)
    logger.handlers, logger.propagate = [handler], False
    logger.setLevel(logging.INFO)
    return logger, out


def test_json_lines_parse_carry_the_fields_and_mask_passwords() -> None:
    logger, out = _json_logger(DOCUMENTS)
    try:
        doc = uuid.uuid4()
        error = f"entities: ConnectionError: redis://:{SECRET}@10.0.0.5:6379/0 refused"
        document_finished(
            document_id=doc,
            project="p",
            source="/data/a.pdf",
            status="failed",
            stage="entities",
            error=error,
            elapsed_ms=1234.56,
        )
        logger.warning("plain %s\nsecond line", f"postgresql://u:{SECRET}@db/x")
        try:
            raise RuntimeError(f"token={SECRET}")
        except RuntimeError:
            logger.exception("boom")
    finally:
        logger.handlers, logger.propagate = [], True
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # one object per line, newlines escaped inside
    assert SECRET not in out.getvalue()
    first, second, third = (json.loads(line) for line in lines)
    assert first["level"] == "INFO" and first["logger"] == DOCUMENTS
    assert first["ts"].endswith("Z") and "T" in first["ts"]
    assert first["document_id"] == str(doc) and first["source"] == "/data/a.pdf"
    assert first["status"] == "failed" and first["stage"] == "entities"
    assert first["elapsed_ms"] == 1234.6 and first["project"] == "p"
    assert first["error"].startswith("entities: ConnectionError: redis://:***@10.0.0.5")
    assert "document failed: /data/a.pdf at entities" in first["message"]
    assert second["level"] == "WARNING" and "postgresql://u:***@db/x" in second["message"]
    assert "\n" in second["message"]
    assert "RuntimeError" in third["exc"] and "token=***" in third["exc"]


@pytest.mark.parametrize(
    ("accelerated", "redis_kind"),
    [(True, "single"), (True, "cluster"), (False, "single")],
    ids=["accelerated", "accelerated-cluster", "traditional"],
    indirect=["redis_kind"],
)
async def test_one_line_per_document_with_its_status(
    accelerated: bool,
    tmp_path: Path,
    settings: Settings,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for p in sorted(EXAMPLES.iterdir()):
        if p.is_file():
            (src / p.name).write_bytes(p.read_bytes())
    (src / "empty.txt").write_bytes(b"")  # fails at extract
    await migrate(pg_pool, settings.pg_schema)
    rt = make_runtime(settings, pg_pool, redis, accelerated=accelerated)
    caplog.set_level(logging.INFO, logger=DOCUMENTS)
    report = await run_batch(rt, BatchOptions("lines", [src]))
    records = [r for r in caplog.records if r.name == DOCUMENTS]
    rows = await pg_pool.fetch("SELECT id, source, status FROM documents WHERE project='lines'")
    assert len(rows) == report.total and len(report.failed) == 1
    by_doc = Counter(getattr(r, "document_id", None) for r in records)
    assert by_doc == Counter(str(r["id"]) for r in rows)  # each document exactly once
    want = {str(r["id"]): (r["status"], r["source"]) for r in rows}
    for r in records:
        fields: dict[str, Any] = r.__dict__
        assert (fields["status"], fields["source"]) == want[fields["document_id"]]
        assert r.levelno == logging.INFO and fields["elapsed_ms"] >= 0
        assert fields["project"] == "lines" and fields["stage"]
        if fields["status"] == state.FAILED:
            assert fields["stage"] == "extract" and "empty" in fields["error"]
            assert f"document failed: {fields['source']} at extract" in r.getMessage()
        else:
            assert "error" not in fields


async def test_no_line_is_built_when_the_logger_is_quiet(
    settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    """The batch default (WARNING): the writer and the handoff skip the line entirely."""
    logger = logging.getLogger(DOCUMENTS)
    before = logger.level
    logger.setLevel(logging.WARNING)
    calls: list[logging.LogRecord] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            calls.append(record)

    catch = Catch()
    logger.addHandler(catch)
    try:
        await migrate(pg_pool, settings.pg_schema)
        rt = make_runtime(settings, pg_pool, redis, accelerated=True)
        report = await run_batch(rt, BatchOptions("quiet", [EXAMPLES]))
    finally:
        logger.removeHandler(catch)
        logger.setLevel(before)
    assert report.done == report.total and calls == []


def test_the_tools_apply_log_format_once_settings_are_read(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    """status, dlq and export (``tool_settings``) log in LOG_FORMAT as batch does."""
    from accelerated.logs import JsonFormatter
    from accelerated.tooling import tool_settings

    monkeypatch.setenv("REDIS_URL", str(settings.redis_url))
    monkeypatch.setenv("DATABASE_URL", str(settings.database_url))
    monkeypatch.setenv("LOG_FORMAT", "json")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    before = [(h, h.formatter) for h in root.handlers]  # pytest's own among them
    root.addHandler(handler)
    try:
        tool_settings()
        assert isinstance(handler.formatter, JsonFormatter)
        logging.getLogger("accelerated.test").warning("tool line")
    finally:
        root.removeHandler(handler)
        for h, fmt in before:
            h.setFormatter(fmt)
    assert json.loads(stream.getvalue().splitlines()[-1])["message"] == "tool line"
