"""``RESOLUTION=llm`` against the local server: candidate pairs of the project's
canonical entities blocked by rapidfuzz, adjudicated by the LLM, decided once per
pair, merged by union-find into aliases that are the same whatever order the
documents came in, on both paths."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from rapidfuzz import fuzz

from accelerated.batch import summary_line
from accelerated.batch_run import BatchOptions, BatchReport, run_batch
from accelerated.keys import Keys
from accelerated.llm.resolution import candidate_pairs, representatives
from accelerated.models import CanonicalEntity
from accelerated.settings import Settings
from benchmarks.llm_server import ChatServer, chunk_of
from persistence.schema import migrate
from tests.conftest import DATABASE_URL
from tests.support import llm_settings, make_runtime, side_store

NAMES = (  # longest first: a name inside a longer one is not a second mention
    "Acme Widget Holdings Inc.",
    "Acme Widget Holdings",
    "Acme Widgets",
    "Acme Widget",
    "Borealis Shipping Company",
    "Borealis Shipping",
    "Zephyr Logistics Group",
    "Zephyr Logistics",
)
DOCS = {
    "a.txt": "Acme Widget Holdings signed a lease with Borealis Shipping.",
    "b.txt": "Acme Widget paid Borealis Shipping Company in full.",
    "c.txt": "Zephyr Logistics met Acme Widget Holdings Inc. at noon.",
    "d.txt": "Zephyr Logistics Group wrote to Acme Widgets.",
}
# acme widget ~ acme widget holdings ~ acme widgets (a chain: the last two are not even
# a candidate pair), zephyr logistics ~ zephyr logistics group; representatives: the
# least key of each set.
EXPECTED = {
    ("ORGANIZATION", "acme widget holdings", "acme widget"),
    ("ORGANIZATION", "acme widgets", "acme widget"),
    ("ORGANIZATION", "zephyr logistics group", "zephyr logistics"),
}
_PAIR = re.compile(r'<pair>\nTYPE: (\w+)\nA: "(.*)"\nB: "(.*)"\n</pair>')


def responder(body: dict[str, Any]) -> str:
    """Organisation mentions of NAMES; a pair is one entity when its names score >= 90."""
    pair = _PAIR.search(body["messages"][-1]["content"])
    if pair is not None:
        same = fuzz.token_set_ratio(pair.group(2).lower(), pair.group(3).lower()) >= 90
        return json.dumps({"same": same})
    text, out, taken = chunk_of(body), [], [False] * len(chunk_of(body))
    for name in NAMES:
        for m in re.finditer(re.escape(name), text):
            if not any(taken[m.start() : m.end()]):
                taken[m.start() : m.end()] = [True] * len(name)
                out.append({"type": "ORGANIZATION", "text": name, "start": m.start()})
    return json.dumps({"mentions": out})


@pytest.fixture
def server(chat_server: ChatServer) -> ChatServer:
    chat_server.responder = responder
    return chat_server


def _folder(root: Path, name: str, files: list[str]) -> Path:
    d = root / name
    d.mkdir()
    for f in files:
        (d / f).write_text(DOCS[f])
    return d


async def _aliases(pool: asyncpg.Pool, project: str) -> set[tuple[str, str, str]]:
    rows = await pool.fetch(
        "SELECT type, alias_key, canonical_key FROM canonical_aliases WHERE project = $1",
        project,
    )
    return {(r["type"], r["alias_key"], r["canonical_key"]) for r in rows}


async def _batches(
    settings: Settings,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    project: str,
    folders: list[Path],
    *,
    accelerated: bool = True,
) -> list[BatchReport]:
    rt = make_runtime(settings, pool, redis, accelerated=accelerated)
    try:
        return [await run_batch(rt, BatchOptions(project, [f])) for f in folders]
    finally:
        await rt.aclose_backends()


async def test_merges_do_not_depend_on_document_order(
    tmp_path: Path,
    settings: Settings,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
    server: ChatServer,
) -> None:
    s = llm_settings(settings, server, entity_backend="llm", resolution="llm")
    await migrate(pg_pool, s.pg_schema)
    ab, cd = (
        _folder(tmp_path, "ab", ["a.txt", "b.txt"]),
        _folder(tmp_path, "cd", ["c.txt", "d.txt"]),
    )
    dc, ba = (
        _folder(tmp_path, "dc", ["d.txt", "c.txt"]),
        _folder(tmp_path, "ba", ["b.txt", "a.txt"]),
    )
    every = _folder(tmp_path, "all", list(DOCS))
    one = await _batches(s, pg_pool, redis, "order1", [ab, cd])
    two = await _batches(s, pg_pool, redis, "order2", [dc, ba])
    three = await _batches(s, pg_pool, redis, "order3", [every])
    # After the first batch of order 1 only a and b were known: one merge then.
    first = one[0].resolution
    assert first is not None and first.complete and first.candidates == 1
    assert one[0].aliases == 1
    for reports in (one, two, three):
        last = reports[-1]
        assert last.failed == {}
        assert last.resolution is not None and last.resolution.complete
        assert last.resolution.candidates == 3 and last.resolution.same == 3
        assert last.aliases == 3
        assert "merge_candidates=3 " in summary_line(last) and "aliases=3 " in summary_line(last)
    for project in ("order1", "order2", "order3"):
        assert await _aliases(pg_pool, project) == EXPECTED
    # The traditional path (canonical entities read from Postgres) agrees.
    async with side_store(s, DATABASE_URL, "t") as (s_b, pool_b, redis_b):
        await migrate(pool_b, s_b.pg_schema)
        trad = await _batches(s_b, pool_b, redis_b, "order2", [dc, ba], accelerated=False)
        assert trad[-1].aliases == 3
        assert await _aliases(pool_b, "order2") == EXPECTED
    # The view gives every canonical entity the id it resolves to.
    resolved = {
        r["key"]: r["rep"]
        for r in await pg_pool.fetch(
            "SELECT r.key, c.key AS rep FROM resolved_entities r "
            "JOIN canonical_entities c ON c.id = r.resolved_id WHERE r.project = 'order1'"
        )
    }
    assert resolved["acme widgets"] == resolved["acme widget"] == "acme widget"
    assert resolved["borealis shipping"] == "borealis shipping"


async def test_decisions_are_asked_once_per_pair(
    tmp_path: Path,
    settings: Settings,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
    server: ChatServer,
    keys: Keys,
) -> None:
    s = llm_settings(settings, server, entity_backend="llm", resolution="llm")
    await migrate(pg_pool, s.pg_schema)
    every = _folder(tmp_path, "all", list(DOCS))
    [first] = await _batches(s, pg_pool, redis, "once", [every])
    pairs_asked = [r for r in server.ok() if "<pair>" in r.body["messages"][-1]["content"]]
    assert first.resolution is not None and first.resolution.asked == 3 == len(pairs_asked)
    assert await redis.hlen(keys.llm_merges("once")) == 3
    # The pair is put in one order: A is the entity with the least key.
    for r in pairs_asked:
        m = _PAIR.search(r.body["messages"][-1]["content"])
        assert m is not None and m.group(2).lower() <= m.group(3).lower()
    # A run with nothing new: the end-of-batch step asks nothing, the aliases stay.
    server.received.clear()
    [again] = await _batches(s, pg_pool, redis, "once", [every])
    assert again.unchanged == 4 and server.ok() == []
    assert again.resolution is not None
    assert (again.resolution.asked, again.resolution.remembered) == (0, 3)
    assert await _aliases(pg_pool, "once") == EXPECTED


def _entity(key: str, etype: str = "PARTY") -> CanonicalEntity:
    return CanonicalEntity(id=uuid.uuid4(), project="p", type=etype, key=key, name=key)


def test_blocking_and_union_find_are_order_free() -> None:
    es = [_entity(k) for k in ("john smith", "smith", "j smith", "unit 1 llc", "unit 2 llc")]
    es.append(_entity("smith", "JUDGE"))  # another type: never paired with a PARTY
    pairs, over = candidate_pairs(es, 80, 100)
    forward = {(a.key, b.key) for a, b in pairs}
    backward, _ = candidate_pairs(list(reversed(es)), 80, 100)
    assert forward == {(a.key, b.key) for a, b in backward} and over == 0
    assert ("john smith", "smith") in forward
    assert all(a.type == b.type and a.key < b.key for a, b in pairs)
    assert not any("unit" in a.key for a, _b in pairs)  # digits differ: no candidate
    capped, over = candidate_pairs(es, 80, 1)
    assert len(capped) == 1 and over == len(pairs) - 1
    same = [(es[0], es[1]), (es[2], es[1])]
    reps = representatives(es, same)
    assert {e.key: r.key for e, r in reps.items()} == {"smith": "j smith", "john smith": "j smith"}
    assert representatives(es, list(reversed(same))) == reps
