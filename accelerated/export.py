"""``python -m accelerated.export --project P --format neo4j|graphml|jsonl --out DIR``.

The project's graph as files for other tools: documents, chunks, mentions and
canonical entities are nodes; the ``relationships`` view is the edges
(CO_OCCURS_WITH as stored; HAS_CHUNK, MENTIONS, REFERS_TO derived from the chunk and
mention rows as they are read, with the view's md5-based ids).

* ``neo4j``: CSVs for ``neo4j-admin database import full`` with the header in each
  file's first line: node files ``id:ID,:LABEL,...`` and one relationship file
  ``:START_ID,:END_ID,:TYPE,...``. Ids are the rows' uuids, unique across every node
  kind (uuid5 over different names), so one id space serves. Mention text may hold a
  line break: import with ``--multiline-fields=true``.
* ``graphml``: one ``graph.graphml``, node and edge attributes declared as keys.
* ``jsonl``: ``nodes.jsonl`` and ``relationships.jsonl``, one JSON object a line.

Every table is read through a server-side cursor in primary-key order, a batch at a
time, and written before the next batch is fetched: memory stays bounded whatever the
project's size, and two exports of the same rows are byte-identical.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final
from xml.sax.saxutils import quoteattr

import asyncpg  # type: ignore[import-untyped]

from accelerated import cli
from accelerated.cli import EXIT_OK, CliContext, setup_output
from accelerated.ids import validate_project
from accelerated.tooling import tool_clients, tool_settings

BATCH: Final = 5000
FORMATS: Final = ("neo4j", "graphml", "jsonl")


@dataclass(frozen=True)
class NodeKind:
    table: str
    label: str  # neo4j label ("Canonical" nodes also get their entity type)
    file: str
    columns: tuple[tuple[str, str], ...]  # (column, neo4j type)


NODES: Final = (
    NodeKind(
        "documents",
        "Document",
        "documents.csv",
        (
            ("source_key", "string"),
            ("source", "string"),
            ("sha256", "string"),
            ("format", "string"),
            ("status", "string"),
            ("error", "string"),
            ("category", "string"),
            ("page_count", "int"),
        ),
    ),
    NodeKind(
        "chunks",
        "Chunk",
        "chunks.csv",
        (
            ("document_id", "string"),
            ("idx", "int"),
            ("start_char", "int"),
            ("end_char", "int"),
            ("page_start", "int"),
            ("page_end", "int"),
        ),
    ),
    NodeKind(
        "entity_mentions",
        "Mention",
        "mentions.csv",
        (
            ("document_id", "string"),
            ("type", "string"),
            ("text", "string"),
            ("normalized", "string"),
            ("role", "string"),
            ("start_char", "int"),
            ("end_char", "int"),
        ),
    ),
    NodeKind(
        "canonical_entities",
        "Canonical",
        "canonical_entities.csv",
        (("type", "string"), ("key", "string"), ("name", "string")),
    ),
)
EDGE_COLUMNS: Final = (("id", "string"), ("document_id", "string"), ("weight", "double"))


@dataclass
class ExportReport:
    nodes: int = 0
    relationships: int = 0
    seconds: float = 0.0
    files: list[str] | None = None


def _cell(v: Any) -> Any:
    return "" if v is None else str(v) if not isinstance(v, int | float) else v


def _labels(kind: NodeKind, row: asyncpg.Record) -> str:
    """Neo4j label names: letters, digits, underscore (entity types already are)."""
    return f"{kind.label};{row['type']}" if kind.table == "canonical_entities" else kind.label


async def _rows(
    conn: asyncpg.Connection, sql: str, project: str
) -> AsyncIterator[list[asyncpg.Record]]:
    """Batches of a query's rows through a server-side cursor (inside a transaction)."""
    cur = await conn.cursor(sql, project)
    while rows := await cur.fetch(BATCH):
        yield rows


def _node_sql(kind: NodeKind) -> str:
    cols = ", ".join(c for c, _ in kind.columns)
    extra = "" if "type" in (c for c, _ in kind.columns) else ", NULL AS type"
    return f"SELECT id, {cols}{extra} FROM {kind.table} WHERE project = $1 ORDER BY id"


EDGE_SQL: Final = (
    "SELECT id, source_id, target_id, type, document_id, weight FROM relationships "
    "WHERE project = $1 ORDER BY id"
)


class _Writer:
    """One output format: open, node batches, edge batches, close (sync, off the loop)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.files: list[str] = []
        self._open: list[IO[str]] = []

    def open(self, name: str) -> IO[str]:
        fh = (self.out / name).open("w", encoding="utf-8", newline="")
        self._open.append(fh)
        self.files.append(name)
        return fh

    def begin_nodes(self, kind: NodeKind) -> None: ...
    def nodes(self, kind: NodeKind, rows: list[asyncpg.Record]) -> None: ...
    def begin_edges(self) -> None: ...
    def edges(self, rows: list[asyncpg.Record]) -> None: ...
    def finish(self) -> None: ...

    def close(self) -> None:
        for fh in self._open:
            fh.close()


class Neo4jWriter(_Writer):
    def begin_nodes(self, kind: NodeKind) -> None:
        self.fh = self.open(kind.file)
        self.csv = csv.writer(self.fh, lineterminator="\n")
        self.csv.writerow(["id:ID", ":LABEL", *(f"{c}:{t}" for c, t in kind.columns)])

    def nodes(self, kind: NodeKind, rows: list[asyncpg.Record]) -> None:
        self.csv.writerows(
            [str(r["id"]), _labels(kind, r), *(_cell(r[c]) for c, _ in kind.columns)] for r in rows
        )

    def begin_edges(self) -> None:
        self.fh = self.open("relationships.csv")
        self.csv = csv.writer(self.fh, lineterminator="\n")
        self.csv.writerow([":START_ID", ":END_ID", ":TYPE", *(f"{c}:{t}" for c, t in EDGE_COLUMNS)])

    def edges(self, rows: list[asyncpg.Record]) -> None:
        self.csv.writerows(
            [
                str(r["source_id"]),
                str(r["target_id"]),
                r["type"],
                *(_cell(r[c]) for c, _ in EDGE_COLUMNS),
            ]
            for r in rows
        )


class JsonlWriter(_Writer):
    def begin_nodes(self, kind: NodeKind) -> None:
        if not self.files:
            self.fh = self.open("nodes.jsonl")

    def nodes(self, kind: NodeKind, rows: list[asyncpg.Record]) -> None:
        buf = io.StringIO()
        for r in rows:
            props = {c: _json(r[c]) for c, _ in kind.columns}
            buf.write(
                json.dumps(
                    {
                        "id": str(r["id"]),
                        "labels": _labels(kind, r).split(";"),
                        "properties": props,
                    },
                    ensure_ascii=False,
                )
            )
            buf.write("\n")
        self.fh.write(buf.getvalue())

    def begin_edges(self) -> None:
        self.fh = self.open("relationships.jsonl")

    def edges(self, rows: list[asyncpg.Record]) -> None:
        buf = io.StringIO()
        for r in rows:
            buf.write(
                json.dumps(
                    {
                        "id": str(r["id"]),
                        "type": r["type"],
                        "start": str(r["source_id"]),
                        "end": str(r["target_id"]),
                        "document_id": str(r["document_id"]),
                        "weight": r["weight"],
                    }
                )
            )
            buf.write("\n")
        self.fh.write(buf.getvalue())


_GML_TYPES: Final = {"string": "string", "int": "long", "double": "double"}


class GraphmlWriter(_Writer):
    def begin_nodes(self, kind: NodeKind) -> None:
        if self.files:
            return
        self.fh = self.open("graph.graphml")
        self.fh.write(
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<graphml xmlns="http://graphml.graphdrawing.org/xmlns">\n'
            '  <key id="labels" for="node" attr.name="labels" attr.type="string"/>\n'
        )
        declared = set()
        for k in NODES:
            for c, t in k.columns:
                if c not in declared:
                    declared.add(c)
                    self.fh.write(
                        f'  <key id="n_{c}" for="node" attr.name="{c}" '
                        f'attr.type="{_GML_TYPES[t]}"/>\n'
                    )
        self.fh.write('  <key id="e_type" for="edge" attr.name="type" attr.type="string"/>\n')
        for c, t in EDGE_COLUMNS:
            self.fh.write(
                f'  <key id="e_{c}" for="edge" attr.name="{c}" attr.type="{_GML_TYPES[t]}"/>\n'
            )
        self.fh.write('  <graph id="G" edgedefault="directed">\n')

    def nodes(self, kind: NodeKind, rows: list[asyncpg.Record]) -> None:
        buf = io.StringIO()
        for r in rows:
            buf.write(f'    <node id="{r["id"]}"><data key="labels">{_x(_labels(kind, r))}</data>')
            for c, _t in kind.columns:
                if r[c] is not None:
                    buf.write(f'<data key="n_{c}">{_x(r[c])}</data>')
            buf.write("</node>\n")
        self.fh.write(buf.getvalue())

    def edges(self, rows: list[asyncpg.Record]) -> None:
        buf = io.StringIO()
        for r in rows:
            buf.write(
                f'    <edge id="{r["id"]}" source="{r["source_id"]}" target="{r["target_id"]}">'
                f'<data key="e_type">{_x(r["type"])}</data>'
            )
            for c, _t in EDGE_COLUMNS:
                buf.write(f'<data key="e_{c}">{_x(r[c])}</data>')
            buf.write("</edge>\n")
        self.fh.write(buf.getvalue())

    def finish(self) -> None:
        self.fh.write("  </graph>\n</graphml>\n")


def _x(v: Any) -> str:
    """Element text: XML-escaped, and characters XML 1.0 cannot hold dropped."""
    s = quoteattr(str(v))[1:-1]
    return "".join(ch for ch in s if ch in "\t\n\r" or ord(ch) >= 0x20)


def _json(v: Any) -> Any:
    return v if v is None or isinstance(v, int | float | str) else str(v)


WRITERS: Final[dict[str, Callable[[Path], _Writer]]] = {
    "neo4j": Neo4jWriter,
    "graphml": GraphmlWriter,
    "jsonl": JsonlWriter,
}


async def export(pool: asyncpg.Pool, project: str, fmt: str, out: Path) -> ExportReport:
    """Write the project's graph to ``out`` in ``fmt``; returns the counts written."""
    validate_project(project)
    if fmt not in WRITERS:
        raise ValueError(f"unknown format {fmt!r}")
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    writer = WRITERS[fmt](out)
    report = ExportReport()
    t0 = time.perf_counter()
    try:
        async with (
            pool.acquire() as conn,
            conn.transaction(readonly=True, isolation="repeatable_read"),
        ):
            # One snapshot for every table: the edges match the nodes written.
            for kind in NODES:
                await asyncio.to_thread(writer.begin_nodes, kind)
                async for rows in _rows(conn, _node_sql(kind), project):
                    await asyncio.to_thread(writer.nodes, kind, rows)
                    report.nodes += len(rows)
            await asyncio.to_thread(writer.begin_edges)
            async for rows in _rows(conn, EDGE_SQL, project):
                await asyncio.to_thread(writer.edges, rows)
                report.relationships += len(rows)
            await asyncio.to_thread(writer.finish)
    finally:
        await asyncio.to_thread(writer.close)
    report.seconds = time.perf_counter() - t0
    report.files = writer.files
    return report


async def amain(args: argparse.Namespace, ctx: CliContext) -> int:
    settings = tool_settings()
    async with tool_clients(settings, need_redis=False) as c:
        assert c.pool is not None
        rep = await export(c.pool, args.project, args.format, Path(args.out))
    rate = (rep.nodes + rep.relationships) / rep.seconds if rep.seconds else 0.0
    print(
        f"{rep.nodes} nodes, {rep.relationships} relationships to {args.out} "
        f"({', '.join(rep.files or [])}) in {rep.seconds:.1f}s, {rate:,.0f} rows/s"
    )
    if args.format == "neo4j":
        print(
            "import: neo4j-admin database import full --multiline-fields=true "
            + " ".join(f"--nodes={args.out}/{k.file}" for k in NODES)
            + f" --relationships={args.out}/relationships.csv"
        )
    return EXIT_OK


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m accelerated.export", description=__doc__)
    p.add_argument("--project", required=True)
    p.add_argument("--format", choices=FORMATS, required=True)
    p.add_argument("--out", required=True, help="directory to write into (created)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    setup_output(args.verbose)
    sys.exit(cli.run(lambda ctx: amain(args, ctx), first_signal="stopping"))


if __name__ == "__main__":
    main()
