"""The LLM backends inside the pipeline, against the local OpenAI-compatible server:
structured extraction into ``documents.metadata`` on both paths (with its context read
from the clean stage's output), an invalid reply repaired or recorded, the run's
figures in the summary equal to what the server counted, the token budget ending
documents as ``budget_exhausted`` and a re-run finishing them without repeating a
call, the runtime's Redis client injected (no REDIS_URL needed) and closed on
shutdown, and the API key nowhere."""

from __future__ import annotations

import json
import logging
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from accelerated import state
from accelerated.backends import ENTITY_BACKENDS, STRUCTURED_EXTRACTORS
from accelerated.batch import summary_line
from accelerated.batch_run import BatchOptions, BatchReport, run_batch
from accelerated.errors import ConfigError
from accelerated.llm.entities import LlmEntityBackend
from accelerated.llm.structured import LlmStructuredExtractor
from accelerated.models import Cleaned, Page
from accelerated.runtime import Runtime
from accelerated.settings import Settings
from accelerated.stages.structure import head_of
from benchmarks.llm_server import ChatServer, default_responder, mentions_reply
from persistence.schema import migrate
from tests.conftest import DATABASE_URL, EXAMPLES
from tests.support import LLM_KEY, dump, llm_settings, make_runtime, redis_text, side_store

_DOC = re.compile(r"<document>\n(.*)\n</document>", re.S)


async def _run(rt: Runtime, opts: BatchOptions) -> BatchReport:
    try:
        return await run_batch(rt, opts)
    finally:
        await rt.aclose_backends()


def _documents(chat_server: ChatServer) -> list[str]:
    """The <document> blocks of the structured-extraction calls the server answered."""
    out = []
    for r in chat_server.ok():
        m = _DOC.search(r.body["messages"][-1]["content"])
        if m:
            out.append(m.group(1))
    return out


def _check_llm_figures(report: BatchReport, answered: list[Any], cache_hits: int) -> None:
    """The summary's LLM figures are what the server saw (Redis-counted, all workers)."""
    assert report.llm is not None
    u = report.llm
    assert u.calls == len(answered) and u.cache_hits == cache_hits
    assert u.tokens_in + u.tokens_out == sum(r.tokens for r in answered)
    assert u.cost_usd == pytest.approx((u.tokens_in * 1.0 + u.tokens_out * 2.0) / 1e6)
    assert u.wait_s >= 0.0
    line = summary_line(report)
    assert f"llm_calls={u.calls} " in line and f"llm_cache_hits={cache_hits} " in line


async def test_structured_fields_in_metadata_on_both_paths(
    tmp_path: Path,
    settings: Settings,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
    chat_server: ChatServer,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    src = tmp_path / "in"
    shutil.copytree(EXAMPLES, src)
    s = llm_settings(settings, chat_server, structured_extraction="llm")
    opts = BatchOptions(project="fields", inputs=[src])
    await migrate(pg_pool, s.pg_schema)
    accel = await _run(make_runtime(s, pg_pool, redis, accelerated=True), opts)
    answered_accel = chat_server.ok()
    rows_accel = await dump(pg_pool)
    docs = await pg_pool.fetch(
        "SELECT source_key, text, pages::text, metadata::text FROM documents"
    )
    async with side_store(s, DATABASE_URL, "t") as (s_b, pool_b, redis_b):
        await migrate(pool_b, s_b.pg_schema)
        chat_server.received.clear()
        trad = await _run(make_runtime(s_b, pool_b, redis_b, accelerated=False), opts)
        answered_trad = chat_server.ok()
        rows_trad = await dump(pool_b)
        trad_redis = await redis_text(redis_b, s_b.redis_prefix)
    for report in (accel, trad):
        assert report.failed == {} and report.done == report.total == len(docs) == 7
        assert report.structured == 7 and report.structured_errors == 0
    # The same rows on both paths, metadata included.
    assert rows_accel["documents"] == rows_trad["documents"]
    meta = {r["source_key"]: json.loads(r["metadata"]) for r in docs}
    order = meta["order_on_motion_to_dismiss.txt"]["structured"]
    assert order["court"] == "UNITED STATES DISTRICT COURT"
    assert "3:23-cv-04517" in order["docket_numbers"]
    assert order["extractor"].startswith("llm-structured_v1-")
    assert all(set(m["structured"]) >= {"caption", "parties", "counsel"} for m in meta.values())
    # The context was the head of clean's output (what the documents row holds as text);
    # the server's log holds the traditional run's prompts now, the same as the other's.
    heads = sorted(
        head_of(
            Cleaned(
                document_id=uuid.uuid4(),
                text=r["text"],
                pages=[Page(**p) for p in json.loads(r["pages"])],
                category="other",
            ),
            s.structured_head_chars,
        )
        for r in docs
    )
    assert sorted(_documents(chat_server)) == heads  # traditional run: the same prompts
    assert len(answered_accel) == len(answered_trad) == 7
    _check_llm_figures(accel, answered_accel, cache_hits=0)
    _check_llm_figures(trad, answered_trad, cache_hits=0)  # no LLM cache on this path
    # The key: not in the logs, the output, Redis or the database.
    everything = "\n".join(
        [
            caplog.text,
            *capsys.readouterr(),
            await redis_text(redis, s.redis_prefix),
            trad_redis,
            json.dumps(rows_accel, default=str),
        ]
    )
    assert len(everything) > 10_000 and "Acme" in everything
    assert LLM_KEY not in everything and "SECRET" not in everything
    assert {r.headers["authorization"] for r in chat_server.received} == {f"Bearer {LLM_KEY}"}


def _fields_responder(body: dict[str, Any]) -> str:
    """Good fields, except: "REPAIRME" documents get an invalid date first (fixed on the
    repair request); "BROKEN" ones never get a valid reply; an invented judge is added."""
    doc = _DOC.search(body["messages"][1]["content"])
    if doc is None:
        return default_responder(body)
    text, repair = doc.group(1), len(body["messages"]) > 2
    good = json.loads(default_responder(body))
    good["judges"] = [*good["judges"], "Invented"]
    if "BROKEN" in text:
        return '{"caption": 12}' if not repair else "I cannot help with that."
    if "REPAIRME" in text and not repair:
        good["filing_date"] = "July 27, 2023"
    return json.dumps(good)


async def test_invalid_fields_are_repaired_once_then_recorded(
    tmp_path: Path,
    settings: Settings,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
    chat_server: ChatServer,
) -> None:
    chat_server.responder = _fields_responder
    src = tmp_path / "in"
    src.mkdir()
    body = "Before Judge Roe.\nDated: July 27, 2023\n\n" + "The court heard the parties. " * 20
    for name, marker in (("good", ""), ("fixed", "REPAIRME "), ("broken", "BROKEN ")):
        (src / f"{name}.txt").write_text(
            f"{marker}IN THE SUPERIOR COURT\nCase No. 4:21-cv-77\n{body}"
        )
    s = llm_settings(settings, chat_server, structured_extraction="llm")
    await migrate(pg_pool, s.pg_schema)
    report = await _run(
        make_runtime(s, pg_pool, redis, accelerated=True), BatchOptions("rep", [src])
    )
    # Every document is done: a model that cannot give the fields does not fail one.
    assert report.done == 3 and report.failed == {}
    assert (report.structured, report.structured_errors) == (2, 1)
    rows = {
        r["source_key"]: (r["status"], json.loads(r["metadata"]))
        for r in await pg_pool.fetch("SELECT source_key, status, metadata::text FROM documents")
    }
    assert {k: v[0] for k, v in rows.items()} == dict.fromkeys(rows, state.DONE)
    fixed = rows["fixed.txt"][1]["structured"]
    assert fixed["filing_date"] == "2023-07-27" and fixed["docket_numbers"] == ["4:21-cv-77"]
    assert fixed["judges"] == ["Roe"]  # "Invented" is not in the text: dropped
    err = rows["broken.txt"][1]["structured_error"]
    assert "invalid_reply" in err and "after one repair attempt" in err
    assert "structured" not in rows["broken.txt"][1]
    calls = chat_server.ok()
    assert len(calls) == 1 + 2 + 2  # good; fixed and repaired; broken and its repair
    repair = [r for r in calls if len(r.body["messages"]) == 4]
    assert len(repair) == 2 and all(
        "not valid" in r.body["messages"][-1]["content"] for r in repair
    )
    assert report.llm is not None and report.llm.invalid == 3
    # A re-run asks again only what has no valid answer: the repaired one is cached under
    # its first question, the broken one was never stored.
    chat_server.received.clear()
    again = await _run(
        make_runtime(s, pg_pool, redis, accelerated=True),
        BatchOptions("rep", [src], reprocess=True, from_stage="structure"),
    )
    assert again.done == 3 and len(chat_server.ok()) == 2
    assert again.llm is not None and again.llm.cache_hits == 2 and again.llm.calls == 2


def _chunked_docs(dest: Path, n: int) -> None:
    dest.mkdir()
    for d in range(n):
        paras = [
            f"Paragraph {p} of document {d}. Judge Name{d}x{p} presided. " + f"Fact {d}.{p}. " * 45
            for p in range(3)
        ]
        (dest / f"doc{d}.txt").write_text("\n\n".join(paras))


async def test_budget_ends_documents_clearly_and_a_rerun_finishes_them(
    tmp_path: Path,
    settings: Settings,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
    chat_server: ChatServer,
) -> None:
    src = tmp_path / "in"
    _chunked_docs(src, 5)
    base = llm_settings(
        settings,
        chat_server,
        entity_backend="llm",
        chunk_chars=600,
        chunk_overlap=0,
        llm_max_tokens=64,
        concurrency=1,  # one document at a time in a stage: the budget runs out mid-run
        llm_budget_tokens=2500,
    )
    await migrate(pg_pool, base.pg_schema)
    opts = BatchOptions("budget", [src])
    first = await _run(make_runtime(base, pg_pool, redis, accelerated=True), opts)
    asked_first = [r.body["messages"][-1]["content"] for r in chat_server.ok()]
    assert first.failed == {} and first.budget_exhausted and first.done >= 1
    assert first.done + len(first.budget_exhausted) == 5
    assert all("LLM_BUDGET_TOKENS=2500" in e for e in first.budget_exhausted.values())
    assert f"budget_exhausted={len(first.budget_exhausted)} " in summary_line(first)
    rows = await pg_pool.fetch("SELECT source_key, status, error FROM documents")
    stopped = {r["source_key"]: r["error"] for r in rows if r["status"] == state.BUDGET_EXHAUSTED}
    assert stopped.keys() == first.budget_exhausted.keys()
    assert all(e.startswith("entities: ") and "Traceback" not in e for e in stopped.values())
    assert first.llm is not None and first.llm.budget_stops >= len(stopped)
    # The calls the run made stayed within the budget (reservations included).
    assert first.llm.tokens_in + first.llm.tokens_out <= 2500
    done_first = [f"doc{d}.txt" for d in range(5) if f"doc{d}.txt" not in stopped]

    # A larger budget: the stopped documents finish; nothing answered is asked again.
    chat_server.received.clear()
    more = base.model_copy(update={"llm_budget_tokens": 1_000_000})
    second = await _run(make_runtime(more, pg_pool, redis, accelerated=True), opts)
    asked_second = [r.body["messages"][-1]["content"] for r in chat_server.ok()]
    chunks_per_doc = {
        r["source_key"]: r["n"]
        for r in await pg_pool.fetch(
            "SELECT d.source_key, count(c.id) AS n FROM documents d "
            "LEFT JOIN chunks c ON c.document_id = d.id GROUP BY d.source_key"
        )
    }
    assert set(chunks_per_doc.values()) == {3}
    assert second.done == 5 and second.budget_exhausted == {} and second.failed == {}
    assert second.unchanged == len(done_first)
    assert not set(asked_first) & set(asked_second)
    assert len(asked_first) + len(asked_second) == sum(chunks_per_doc.values()) == 15
    assert second.llm is not None
    assert second.llm.calls == len(asked_second)
    # The chunks the first run answered for the documents it stopped: from the cache.
    assert second.llm.cache_hits == len(asked_first) - 3 * len(done_first)
    statuses = {r["status"] for r in await pg_pool.fetch("SELECT status FROM documents")}
    assert statuses == {state.DONE}


async def test_backend_takes_the_runtime_redis_and_is_closed_on_shutdown(
    tmp_path: Path,
    settings: Settings,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
    chat_server: ChatServer,
) -> None:
    # Built from settings without REDIS_URL (as the CLI edge does, before connecting).
    s = llm_settings(
        settings, chat_server, redis_url=None, entity_backend="llm", structured_extraction="llm"
    )
    backend = ENTITY_BACKENDS.create("llm", s)
    extractor = STRUCTURED_EXTRACTORS.create("llm", s)
    assert isinstance(backend, LlmEntityBackend) and isinstance(extractor, LlmStructuredExtractor)
    with pytest.raises(ConfigError, match="needs Redis"):
        await backend.extract_async(["Judge Roe sat."])
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.txt").write_text("Judge Roe sat in the District Court.")
    await migrate(pg_pool, settings.pg_schema)
    with pytest.raises(ConfigError, match="needs Redis"):  # at start-up, not per document
        make_runtime(s, pg_pool, None, accelerated=False)
    rt = make_runtime(s, pg_pool, redis, accelerated=True)
    assert rt.backends is not None
    llm_backend = rt.backends.entities
    assert isinstance(llm_backend, LlmEntityBackend) and llm_backend.service.bound
    report = await run_batch(rt, BatchOptions("inj", [src]))
    assert report.done == 1 and len(chat_server.ok()) == 2  # one chunk, one document head
    http = llm_backend.client()._client
    assert not http.is_closed()
    await rt.aclose()
    assert http.is_closed() and llm_backend.service.stats is None


def test_fields_reply_helpers() -> None:
    """The server's default answers are what the tests above rely on."""
    assert json.loads(mentions_reply("Judge Roe"))["mentions"][0]["text"] == "Roe"
    reply: Callable[[dict[str, Any]], str] = default_responder
    fields = json.loads(
        reply({"messages": [{"content": "<document>\nA v. B\nCase No. 1:2-cv-3\n</document>"}]})
    )
    assert fields["caption"] == "A v. B" and fields["docket_numbers"] == ["1:2-cv-3"]
