"""The ``llm`` and ``rules+llm`` entity backends against the test server: settings
select them on both paths; replies are validated, repaired once, mapped onto the one
vocabulary and span-checked; the API key is never written anywhere."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from accelerated.backends import ENTITY_BACKENDS
from accelerated.batch_run import BatchOptions, run_batch
from accelerated.entities import RawMention
from accelerated.errors import ConfigError
from accelerated.llm.client import InvalidReply
from accelerated.llm.entities import LlmEntityBackend, RulesPlusLlm, locate, map_type, merge
from accelerated.settings import Settings
from benchmarks.llm_server import ChatServer, Reply
from persistence.schema import migrate
from tests.conftest import DATABASE_URL, EXAMPLES
from tests.support import LLM_KEY, dump, llm_settings, make_runtime, redis_text, side_store


def test_factory_needs_url_key_and_model(settings: Settings, chat_server: ChatServer) -> None:
    good = llm_settings(settings, chat_server)
    assert isinstance(ENTITY_BACKENDS.create("llm", good), LlmEntityBackend)
    assert isinstance(ENTITY_BACKENDS.create("rules+llm", good), RulesPlusLlm)
    for missing, name in (
        ("openai_base_url", "OPENAI_BASE_URL"),
        ("llm_model", "LLM_MODEL"),
        ("openai_api_key", "OPENAI_API_KEY"),
    ):
        with pytest.raises(ConfigError, match=name) as err:
            ENTITY_BACKENDS.create("llm", good.model_copy(update={missing: None}))
        assert LLM_KEY not in str(err.value)


async def test_mentions_mapped_and_span_checked(
    settings: Settings, chat_server: ChatServer, redis: aioredis.Redis
) -> None:
    chunk = "Before Judge Roe. Acme Corp. paid $5,000 to Acme Corp. on May 1, 2020."
    chat_server.script = [
        Reply(
            content=json.dumps(
                {
                    "mentions": [
                        {"type": "JUDGE", "text": "Roe", "start": 13},  # right offset
                        {"type": "org", "text": "Acme Corp."},  # synonym, no offset
                        {"type": "ORGANIZATION", "text": "Acme Corp."},  # the second one
                        {"type": "MONEY", "text": "$5,000", "start": 2},  # wrong offset
                        {"type": "PERSON", "text": "John Doe"},  # not in the chunk
                        {"type": "VEHICLE", "text": "Roe"},  # not in the vocabulary
                        {"type": "DATE", "text": "May 1, 2020", "start": 999},
                    ]
                }
            )
        )
    ]
    backend = LlmEntityBackend(llm_settings(settings, chat_server), redis=redis)
    [got] = await backend.extract_async([chunk])
    await backend.aclose()
    spans = [(m.type, chunk[m.start : m.end]) for m in got]
    assert spans == [
        ("JUDGE", "Roe"),
        ("ORGANIZATION", "Acme Corp."),
        ("MONEY", "$5,000"),
        ("ORGANIZATION", "Acme Corp."),
        ("DATE", "May 1, 2020"),
    ]
    assert len({(m.start, m.end) for m in got}) == 5  # two distinct Acme offsets
    assert (backend.dropped_spans, backend.dropped_types) == (1, 1)
    sent = chat_server.received[0].body
    assert sent["model"] == "test-model" and sent["response_format"] == {"type": "json_object"}
    assert "<chunk>\n" + chunk + "\n</chunk>" in sent["messages"][-1]["content"]
    assert "CASE_CITATION" in sent["messages"][0]["content"]


async def test_one_repair_then_a_clear_chunk_error(
    settings: Settings, chat_server: ChatServer, redis: aioredis.Redis
) -> None:
    backend = LlmEntityBackend(llm_settings(settings, chat_server), redis=redis)
    chat_server.script = [Reply(content="Sure! Here are the mentions: Judge Roe")]
    [got] = await backend.extract_async(["Judge Roe sat."])  # repaired by the default reply
    assert [(m.type, m.start, m.end) for m in got] == [("JUDGE", 6, 9)]
    assert len(chat_server.received) == 2
    repair = chat_server.received[1].body["messages"]
    assert repair[-2] == {"role": "assistant", "content": "Sure! Here are the mentions: Judge Roe"}
    assert "not valid" in repair[-1]["content"]
    # The repaired answer is stored under the first question too: a re-run asks nothing.
    again0 = LlmEntityBackend(llm_settings(settings, chat_server), redis=redis)
    assert await again0.extract_async(["Judge Roe sat."]) == [got]
    assert len(chat_server.received) == 2
    await again0.aclose()
    # Twice invalid: the chunk fails, clearly, and nothing is cached.
    chat_server.script = [Reply(content='{"mentions": "none"}'), Reply(content="[]")]
    with pytest.raises(InvalidReply, match=r"chunk 0: .*after one repair attempt"):
        await backend.extract_async(["Judge Poe sat."])
    assert backend.failed_chunks == 1
    chat_server.received.clear()
    again = LlmEntityBackend(llm_settings(settings, chat_server), redis=redis)
    [poe] = await again.extract_async(["Judge Poe sat."])
    assert [(m.type, m.start) for m in poe] == [("JUDGE", 6)]
    assert len(chat_server.received) == 1  # asked again: the invalid replies were not stored
    await backend.aclose()
    await again.aclose()


async def test_rerun_makes_no_call_and_version_covers_the_model(
    settings: Settings, chat_server: ChatServer, redis: aioredis.Redis
) -> None:
    s = llm_settings(settings, chat_server)
    texts = [f"Judge Name{i} ruled." for i in range(6)]
    a, b = LlmEntityBackend(s, redis=redis), LlmEntityBackend(s, redis=redis)
    first = await a.extract_async(texts)
    assert len(chat_server.received) == 6
    second = await b.extract_async(texts)
    await a.aclose()
    await b.aclose()
    assert second == first and len(chat_server.received) == 6
    v = LlmEntityBackend(s, redis=redis).version
    assert v != LlmEntityBackend(s.model_copy(update={"llm_model": "other"}), redis=redis).version
    assert v != LlmEntityBackend(s.model_copy(update={"llm_temperature": 0.5}), redis=redis).version


def test_helpers() -> None:
    assert map_type("case citation") == "CASE_CITATION" and map_type("Lawyer") == "ATTORNEY"
    assert map_type("SPACESHIP") is None
    assert locate("a b a b", "b", None, {(2, 3)}) == 6
    assert locate("a b a b", "b", 5, set()) == 6
    assert locate("a b a b", "c", None, set()) is None
    rules = [RawMention("CASE_CITATION", 10, 30, "c"), RawMention("JUDGE", 40, 45, "j")]
    llm = [
        RawMention("PARTY", 12, 17, "p"),  # inside the citation: dropped
        RawMention("CASE_CITATION", 0, 5, "x"),  # the LLM's citations: dropped
        RawMention("JUDGE", 40, 46, "j2"),  # the LLM's judge wins over the rules'
    ]
    assert merge(rules, llm) == [rules[0], llm[2]]


async def test_rules_plus_llm_on_both_paths_and_the_key_is_nowhere(
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
    src.mkdir()
    for p in sorted(EXAMPLES.iterdir())[:3]:
        shutil.copy(p, src / p.name)
    s = llm_settings(settings, chat_server, entity_backend="rules+llm")
    opts = BatchOptions(project="llm", inputs=[src])
    await migrate(pg_pool, s.pg_schema)
    rt = make_runtime(s, pg_pool, redis, accelerated=True)
    accel = await run_batch(rt, opts)
    assert rt.backends is not None
    await rt.backends.entities.aclose()  # type: ignore[attr-defined]
    rows_accel = await dump(pg_pool)
    calls_accel = len(chat_server.received)
    async with side_store(s, DATABASE_URL, "t") as (s_b, pool_b, redis_b):
        await migrate(pool_b, s_b.pg_schema)
        rt_b = make_runtime(s_b, pool_b, redis_b, accelerated=False)
        trad = await run_batch(rt_b, opts)
        assert rt_b.backends is not None
        await rt_b.backends.entities.aclose()  # type: ignore[attr-defined]
        rows_trad = await dump(pool_b)
        trad_redis = await redis_text(redis_b, s_b.redis_prefix)
    for report in (accel, trad):
        assert report.failed == {}
        assert report.done == report.total
    assert calls_accel > 0 and len(chat_server.received) > calls_accel
    assert {r.headers["authorization"] for r in chat_server.received} == {f"Bearer {LLM_KEY}"}
    types = {r[0] for r in await pg_pool.fetch("SELECT DISTINCT type FROM entity_mentions")}
    assert "CASE_CITATION" in types  # by the rules
    for table in rows_accel:
        for a, b in zip(rows_accel[table], rows_trad[table], strict=True):
            assert a == b, table
    # The key: not in the logs, the output, Redis (values decompressed) or the database.
    everything = "\n".join(
        [
            caplog.text,
            *capsys.readouterr(),
            await redis_text(redis, s.redis_prefix),
            trad_redis,
            json.dumps(rows_accel, default=str),
            json.dumps(rows_trad, default=str),
        ]
    )
    assert len(everything) > 10_000  # the grep ran over real content
    assert LLM_KEY not in everything and "SECRET" not in everything


def test_llm_settings_parse_and_bounds(
    settings: Settings, chat_server: ChatServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_RPM", "60")
    monkeypatch.setenv("LLM_PRICES", '{"m": [1, 2]}')
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.llm_rpm == 60 and s.llm_prices == {"m": (1.0, 2.0)}
    for field in ("llm_rpm", "llm_tpm", "llm_max_tokens", "llm_concurrency"):
        with pytest.raises(ValueError, match=">= 1"):
            Settings(_env_file=None, **{field: 0})  # type: ignore[call-arg, arg-type]
    with pytest.raises(ValueError, match=">= 0"):
        Settings(_env_file=None, llm_budget_tokens=-1)  # type: ignore[call-arg]
    assert LLM_KEY not in repr(llm_settings(settings, chat_server))
