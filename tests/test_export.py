"""Graph export: neo4j-admin CSVs that follow its header rules with the tables' counts,
GraphML that parses to the same graph, JSON lines; deterministic; rows/s and peak RSS
of an export of a corpus ingest reported (not asserted)."""

from __future__ import annotations

import asyncio
import csv
import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from accelerated.batch_run import BatchOptions, run_batch
from accelerated.export import NODES, export
from accelerated.settings import Settings
from persistence.schema import migrate
from tests.conftest import EXAMPLES
from tests.support import PYTHON, make_runtime, sample_corpus, subprocess_env

NODE_TABLES = {k.file: k.table for k in NODES}


async def _counts(pool: asyncpg.Pool, project: str) -> dict[str, int]:
    out = {}
    for t in (*NODE_TABLES.values(), "relationships"):
        out[t] = await pool.fetchval(f"SELECT count(*) FROM {t} WHERE project = $1", project)
    return out


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


async def test_neo4j_csvs_follow_the_header_rules_and_match_the_tables(
    tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    await migrate(pg_pool, settings.pg_schema)
    await run_batch(
        make_runtime(settings, pg_pool, redis, accelerated=True), BatchOptions("g", [EXAMPLES])
    )
    counts = await _counts(pg_pool, "g")
    rep = await export(pg_pool, "g", "neo4j", tmp_path / "neo")
    ids: set[str] = set()
    for file, table in NODE_TABLES.items():
        header, rows = _read_csv(tmp_path / "neo" / file)
        assert header[0].endswith(":ID") and ":LABEL" in header, header
        assert all(len(r) == len(header) for r in rows)
        assert len(rows) == counts[table] > 0, table
        li = header.index(":LABEL")
        assert all(r[li] and all(part.isidentifier() for part in r[li].split(";")) for r in rows)
        ids.update(r[0] for r in rows)
        assert [r[0] for r in rows] == sorted(r[0] for r in rows)  # deterministic order
    assert len(ids) == sum(counts[t] for t in NODE_TABLES.values())  # one id space
    header, rels = _read_csv(tmp_path / "neo" / "relationships.csv")
    assert header[:3] == [":START_ID", ":END_ID", ":TYPE"]
    assert len(rels) == counts["relationships"] == rep.relationships
    assert all(r[0] in ids and r[1] in ids and r[2] for r in rels)  # no dangling edge
    assert {r[2] for r in rels} == {"HAS_CHUNK", "MENTIONS", "REFERS_TO", "CO_OCCURS_WITH"}
    assert rep.nodes == len(ids)

    # Again, by the CLI: byte-identical files.
    out = await asyncio.to_thread(
        lambda: subprocess.run(
            [PYTHON, "-m", "accelerated.export", "--project", "g", "--format", "neo4j",
             "--out", str(tmp_path / "neo2")],
            env=subprocess_env(settings), capture_output=True, text=True, timeout=120, check=False,
        )
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "neo4j-admin database import full" in out.stdout
    for f in (*NODE_TABLES, "relationships.csv"):
        assert (tmp_path / "neo" / f).read_bytes() == (tmp_path / "neo2" / f).read_bytes(), f

    # GraphML and JSON lines hold the same graph.
    await export(pg_pool, "g", "graphml", tmp_path / "gml")
    ns = {"g": "http://graphml.graphdrawing.org/xmlns"}
    graph = ET.parse(tmp_path / "gml" / "graph.graphml").getroot().find("g:graph", ns)
    assert graph is not None
    assert {n.get("id") for n in graph.findall("g:node", ns)} == ids
    assert len(graph.findall("g:edge", ns)) == len(rels)
    await export(pg_pool, "g", "jsonl", tmp_path / "jl")
    nodes = [json.loads(line) for line in (tmp_path / "jl" / "nodes.jsonl").open()]
    edges = [json.loads(line) for line in (tmp_path / "jl" / "relationships.jsonl").open()]
    assert {n["id"] for n in nodes} == ids and len(nodes) == len(ids)
    assert sorted((e["start"], e["end"], e["type"]) for e in edges) == sorted(
        (r[0], r[1], r[2]) for r in rels
    )


async def test_export_speed_and_memory_on_a_corpus_ingest(
    corpus: Path, tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    sample_corpus(corpus, tmp_path / "in", n=40)
    await migrate(pg_pool, settings.pg_schema)
    await run_batch(
        make_runtime(settings, pg_pool, redis, accelerated=True),
        BatchOptions("c", [tmp_path / "in"]),
    )
    counts = await _counts(pg_pool, "c")
    for fmt in ("neo4j", "graphml", "jsonl"):
        out = await asyncio.to_thread(_measured_export, settings, fmt, tmp_path / fmt)
        assert out.returncode == 0, out.stderr
        assert f"{counts['relationships']} relationships" in out.stdout
        print(f"{fmt}: {out.stdout.strip()}")


# VmHWM, not ru_maxrss: the latter survives execve, so a child of a big pytest process
# would report the parent's peak.
_PEAK = (
    "import runpy, sys; sys.argv = sys.argv[1:]\n"
    "try:\n    runpy.run_module('accelerated.export', run_name='__main__')\n"
    "finally:\n"
    "    hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')]\n"
    "    print('peak RSS', hwm[0].split(':')[1].strip())\n"
)


def _measured_export(settings: Settings, fmt: str, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-c", _PEAK, "export", "--project", "c", "--format", fmt, "--out", str(out)],
        env=subprocess_env(settings),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
