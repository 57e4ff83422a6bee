"""The README "Querying" SQL, run as written against an ingest of examples/documents;
each answer is compared with the same question answered in Python from the raw rows."""

from __future__ import annotations

import re
import shutil
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from accelerated.batch_run import BatchOptions, run_batch
from accelerated.settings import Settings
from persistence.schema import migrate
from tests.conftest import EXAMPLES
from tests.support import make_runtime

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_queries() -> list[str]:
    text = README.read_text()
    section = text.split("## Querying", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, flags=re.S)


async def test_readme_queries_answer_what_the_rows_say(
    tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    party_q, citation_q, cooccur_q, failed_q, changed_q = readme_queries()
    src = tmp_path / "in"
    shutil.copytree(EXAMPLES, src)
    (src / "broken.pdf").write_bytes(b"%PDF-1.4\n this is not a pdf at all")
    await migrate(pg_pool, settings.pg_schema)
    rt = make_runtime(settings, pg_pool, redis, accelerated=True)
    await run_batch(rt, BatchOptions("q", [src]))

    docs = {r["id"]: r for r in await pg_pool.fetch("SELECT * FROM documents")}
    canon = {r["id"]: r for r in await pg_pool.fetch("SELECT * FROM canonical_entities")}
    mentions = await pg_pool.fetch("SELECT document_id, canonical_id FROM entity_mentions")
    per: dict[Any, Counter[str]] = defaultdict(Counter)  # canonical -> source_key -> n
    for m in mentions:
        if m["canonical_id"] is not None:
            per[m["canonical_id"]][docs[m["document_id"]]["source_key"]] += 1

    def top(kind: str) -> Any:
        ids = [c for c in per if canon[c]["type"] == kind]
        assert ids, f"no {kind} in the examples"
        return max(ids, key=lambda c: (len(per[c]), sum(per[c].values()), str(c)))

    # 1. Which documents mention this party (asked in another case).
    party = top("PARTY")
    got = await pg_pool.fetch(party_q, "q", canon[party]["name"].upper())
    assert {r["source_key"]: r["mention_count"] for r in got} == dict(per[party])
    assert [r["mention_count"] for r in got] == sorted(
        (r["mention_count"] for r in got), reverse=True
    )

    # 2. Which cases cite this citation.
    cite = top("CASE_CITATION")
    got = await pg_pool.fetch(citation_q, "q", canon[cite]["name"])
    assert {r["source_key"]: r["citations"] for r in got} == dict(per[cite])

    # 3. Who co-occurs with X.
    want: Counter[tuple[str, str]] = Counter()
    for r in await pg_pool.fetch("SELECT * FROM relationships WHERE type = 'CO_OCCURS_WITH'"):
        names = {r["source_id"]: r["target_id"], r["target_id"]: r["source_id"]}
        for c in (r["source_id"], r["target_id"]):
            if canon[c]["name"].lower() == canon[party]["name"].lower():
                other = canon[names[c]]
                want[(other["type"], other["name"])] += r["weight"]
    got = await pg_pool.fetch(cooccur_q, "q", canon[party]["name"])
    assert want, "the top party co-occurs with nobody: pick another example"
    assert {(r["type"], r["name"]): r["shared_chunks"] for r in got} == dict(want)

    # 4. What failed and why.
    got = await pg_pool.fetch(failed_q, "q")
    bad = {
        d["source_key"]: d["error"] for d in docs.values() if d["status"] in ("failed", "needs_ocr")
    }
    assert "broken.pdf" in bad
    assert {r["source_key"]: r["error"] for r in got} == bad

    # 5. What changed in the last run: one file edited, one added, the rest untouched.
    with (src / "order_on_motion_to_dismiss.txt").open("a") as fh:
        fh.write("\nSO ORDERED again.\n")
    shutil.copyfile(src / "opinion_vega_v_harbor_point.html", src / "copy_of_vega.html")
    (src / "broken.pdf").unlink()
    await run_batch(rt, BatchOptions("q", [src]))
    got = await pg_pool.fetch(changed_q, "q")
    assert [r["source_key"] for r in got] == ["copy_of_vega.html", "order_on_motion_to_dismiss.txt"]
    assert all(r["status"] == "done" for r in got)


async def test_views_equal_their_aggregates(
    settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    await migrate(pg_pool, settings.pg_schema)
    await run_batch(
        make_runtime(settings, pg_pool, redis, accelerated=True), BatchOptions("v", [EXAMPLES])
    )
    rows = await pg_pool.fetch("SELECT document_id, canonical_id FROM entity_mentions")
    pairs = Counter((r["document_id"], r["canonical_id"]) for r in rows if r["canonical_id"])
    view = await pg_pool.fetch(
        "SELECT document_id, canonical_id, mention_count FROM document_entities"
    )
    assert {(r["document_id"], r["canonical_id"]): r["mention_count"] for r in view} == dict(pairs)
    ent = await pg_pool.fetch(
        "SELECT canonical_id, document_count, mention_count FROM entity_documents"
    )
    docs_of: dict[Any, set[Any]] = defaultdict(set)
    for d, c in pairs:
        docs_of[c].add(d)
    assert {r["canonical_id"]: (r["document_count"], r["mention_count"]) for r in ent} == {
        c: (len(ds), sum(pairs[(d, c)] for d in ds)) for c, ds in docs_of.items()
    }
    plans = await pg_pool.fetch(
        "EXPLAIN SELECT * FROM relationships WHERE target_id = $1 AND type = 'REFERS_TO'",
        next(iter(docs_of)),
    )
    assert plans  # the index exists; the planner may still scan a table this small
    idx = await pg_pool.fetch(
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
    )
    assert {
        "entity_mentions_canonical_idx",
        "stored_relationships_source_idx",
        "stored_relationships_target_idx",
        "entity_mentions_chunk_idx",
        "documents_project_status_idx",
    } <= {r["indexname"] for r in idx}
