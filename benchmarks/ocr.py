"""``python -m benchmarks.ocr``: pages per second of OCR through the pipeline, against
tesseract called directly on the same pages, in the same run, on the same processes.

The corpus's scans (the PDFs that ``extract`` finds no text layer in), as many whole
documents as fit in ``--pages``, are read in these modes, in this order (the two the
target compares back to back), on one ``CpuPool`` of ``--workers`` processes (one
tesseract thread each, as in production):

* ``direct``: the pages, drawn at 300 dpi beforehand, handed to tesseract in the pool,
  one call per page: the engine alone, nothing else (the upper bound);
* ``direct+render``: drawing and reading each page in the pool, as a minimal script
  would do it;
* ``pipeline cold``: ``run_batch`` on a fresh prefix and schema: intake, extract, the
  ``ocr`` stage (OCR cache empty), clean, chunk, entities, resolve, relate and the
  write-behind into Postgres;
* ``pipeline renamed``: the same files under other names in another project (every
  page from the OCR cache), and ``pipeline reprocess``: ``--reprocess --from chunk``
  of the first project; both must make no OCR call (the exit status says).

The target is the pipeline's cold rate at least 90% of ``direct``'s, in pages per
wall-clock second. Each mode also reports the CPU seconds of this process and the
pool's children, and pages per CPU second: on a machine other jobs share, wall time
drifts with their load from one mode to the next; CPU per page much less. (The CPU of
Redis and Postgres themselves is not counted.) Every process is warmed first (the
pool's: tessdata loaded, entity tables built; this one: a batch of the bundled
examples), so no mode pays a start-up the others do not. Needs Redis and Postgres
(``--redis-url``, ``--database-url``); the prefix and schema it makes are removed
afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from rich.console import Console
from rich.table import Table

from accelerated.backends import OcrEngine, OcrText, PageImage
from accelerated.batch_run import BatchOptions, BatchReport, run_batch
from accelerated.cpu import CpuPool
from accelerated.extractors import extract_bytes
from accelerated.ocr.render import render_pdf_page
from accelerated.ocr.tesseract import TesseractEngine
from accelerated.runtime import build_runtime, tune_gc
from accelerated.settings import Settings
from accelerated.stages.ocr import OCR_DPI, OCR_PAGES
from persistence.pg import create_pool
from persistence.schema import migrate

REPO = Path(__file__).resolve().parent.parent
DEFAULT_INPUT = Path(os.environ.get("CORPUS_DIR") or REPO.parent / "shared" / "corpus")
WARMUP_INPUT = REPO / "examples" / "documents"
# A PACER docket header: the entities stage's document context (on the event loop)
# then builds courts-db's federal court regexes, once per process.
WARM_COURT = (
    "U.S. District Court\nEastern District of Pennsylvania (Philadelphia)\n"
    "CIVIL DOCKET FOR CASE #: 2:19-cv-00932-JDW\n"
    "Acme Corp. v. Widget LLC, 347 U.S. 483 (1954).\n"
)
TARGET = 0.90


@dataclass
class Mode:
    name: str
    pages: int
    seconds: float
    engine_calls: int  # pages an OCR engine read in this mode
    cached_pages: int = 0
    cpu_s: float = 0.0  # CPU of this process and the pool's children in this mode
    main_cpu_s: float = 0.0  # of which this process's

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.seconds if self.seconds else 0.0

    @property
    def pages_per_cpu_s(self) -> float:
        return self.pages / self.cpu_s if self.cpu_s else 0.0


@dataclass
class Result:
    workers: int
    documents: list[str]
    pages: int
    modes: list[Mode] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)

    def mode(self, name: str) -> Mode:
        return next(m for m in self.modes if m.name == name)

    @property
    def ratio(self) -> float:
        """Pipeline cold over direct, pages per wall second (the target's figure)."""
        direct = self.mode("direct").pages_per_s
        return self.mode("pipeline cold").pages_per_s / direct if direct else 0.0

    @property
    def cpu_ratio(self) -> float:
        """The same per CPU second: what a busy machine's drift does not move."""
        direct = self.mode("direct").pages_per_cpu_s
        return self.mode("pipeline cold").pages_per_cpu_s / direct if direct else 0.0


def pick_scans(corpus: Path, max_pages: int) -> list[tuple[str, int]]:
    """Whole scanned documents (path, pages), in name order, up to ``max_pages`` pages."""
    picked: list[tuple[str, int]] = []
    total = 0
    for path in sorted(corpus.rglob("*.pdf")):
        if "truth" in path.relative_to(corpus).parts:
            continue
        try:
            result = extract_bytes(path.read_bytes(), path.name)
        except Exception:  # the corpus's deliberately broken PDFs
            continue
        n = len(result.pages)
        if result.needs_ocr and total + n <= max_pages:
            picked.append((str(path.relative_to(corpus)), n))
            total += n
    return picked


# In the pool processes ---------------------------------------------------------------
def _warm(engine: OcrEngine, pause_s: float) -> int:
    """Load tessdata and build the entity tables in this process, then hold it a moment
    so the next warm-up call lands on another process."""
    from accelerated.entities.rules import RulesBackend

    engine.recognize(PageImage(number=1, width=64, height=64, dpi=300, pixels=b"\xff" * 4096))
    RulesBackend().extract(["Acme Corp. v. Widget LLC, 347 U.S. 483 (1954), D. Del."])
    time.sleep(pause_s)
    return os.getpid()


def _recognize(engine: OcrEngine, page: PageImage) -> OcrText:
    return engine.recognize(page)


def _render_and_recognize(engine: OcrEngine, path: str, number: int) -> OcrText:
    return engine.recognize(render_pdf_page(path, number, OCR_DPI, 50_000_000))


class CpuMeter:
    """CPU seconds used by this process and by the pool's children since ``start``:
    on a machine other jobs share, wall time drifts with their load; CPU per page
    much less. (Redis's and Postgres's own CPU is not counted.)"""

    def __init__(self, pool: CpuPool) -> None:
        self.pool = pool
        self._start = self._read()

    def _read(self) -> dict[int, float]:
        import psutil  # type: ignore[import-untyped]  # the bench extra

        out = {0: time.process_time()}
        for pid in self.pool.pids():
            try:
                t = psutil.Process(pid).cpu_times()
            except psutil.Error:
                continue
            out[pid] = t.user + t.system
        return out

    def seconds(self) -> float:
        end = self._read()
        return sum(max(0.0, v - self._start.get(k, 0.0)) for k, v in end.items())

    def main_seconds(self) -> float:
        """This process's share (the event loop, the clients, the writer)."""
        return time.process_time() - self._start[0]


def _direct(name: str, pool: CpuPool, calls: Sequence[Callable[[], OcrText]], pages: int) -> Mode:
    """Every call in the pool at once; wall seconds until the last one is back."""
    meter = CpuMeter(pool)
    t0 = time.perf_counter()
    futures: list[Future[OcrText]] = [pool.submit(call) for call in calls]
    for f in futures:
        f.result()
    wall = time.perf_counter() - t0
    return Mode(name, pages, wall, pages, cpu_s=meter.seconds(), main_cpu_s=meter.main_seconds())


def _engine_pages() -> int:
    return int(
        sum(
            s.value
            for m in OCR_PAGES.collect()
            for s in m.samples
            if s.name.endswith("_total") and s.labels["source"] == "engine"
        )
    )


async def all_modes(
    args: argparse.Namespace,
    pool: CpuPool,
    engine: OcrEngine,
    files: list[tuple[Path, int]],
    src: Path,
    again: Path,
) -> list[Mode]:
    """direct, pipeline cold, direct+render, then the re-runs: the two figures the
    target compares run back to back, so load from other jobs hits them alike."""
    pages = [(str(p), n) for p, count in files for n in range(1, count + 1)]
    rendered = [render_pdf_page(p, n, OCR_DPI, 50_000_000) for p, n in pages]
    tag = uuid.uuid4().hex[:10]
    settings = Settings.from_dsn(
        args.redis_url,
        args.database_url,
        redis_prefix=f"bench-ocr-{tag}",
        pg_schema=f"bench_ocr_{tag}",
        ocr_backend="tesseract",
        cpu_workers=args.workers,
        concurrency=args.concurrency,
        _env_file=None,
    )
    redis = aioredis.Redis.from_url(args.redis_url)
    db = await create_pool(settings)
    modes: list[Mode] = []
    try:
        await migrate(db, settings.pg_schema)
        rt = build_runtime(settings, db, redis, executor=pool)

        async def run(name: str, opts: BatchOptions) -> BatchReport:
            calls, meter = _engine_pages(), CpuMeter(pool)
            report = await run_batch(rt, opts)
            if report.failed:
                raise SystemExit(f"{name}: documents failed: {report.failed}")
            modes.append(
                Mode(
                    name,
                    report.ocr_pages + report.ocr_cached_pages,
                    report.elapsed_s,
                    _engine_pages() - calls,
                    report.ocr_cached_pages,
                    cpu_s=meter.seconds(),
                    main_cpu_s=meter.main_seconds(),
                )
            )
            return report

        # This process warms up too: the first docket header builds courts-db's ~1,800
        # federal court regexes here (seconds of CPU, once in a worker's life).
        warm = src.parent / "warm-up"
        shutil.copytree(WARMUP_INPUT, warm)
        (warm / "court.txt").write_text(WARM_COURT)
        await run_batch(rt, BatchOptions("warm-up", [warm]))
        calls = [functools.partial(_recognize, engine, r) for r in rendered]
        modes.append(_direct("direct", pool, calls, len(pages)))
        del calls, rendered
        cold = await run("pipeline cold", BatchOptions("scans", [src]))
        if cold.ocr_pages != len(pages):
            raise SystemExit(f"the pipeline OCRed {cold.ocr_pages} pages, expected {len(pages)}")
        calls = [functools.partial(_render_and_recognize, engine, p, n) for p, n in pages]
        modes.append(_direct("direct+render", pool, calls, len(pages)))
        await run("pipeline renamed", BatchOptions("scans-again", [again]))
        await run("pipeline reprocess", BatchOptions("scans", reprocess=True, from_stage="chunk"))
    finally:
        await db.close()
        conn = await asyncpg.connect(args.database_url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{settings.pg_schema}" CASCADE')
        finally:
            await conn.close()
        keys = [k async for k in redis.scan_iter(match=f"{settings.redis_prefix}:*", count=1000)]
        for i in range(0, len(keys), 500):
            await redis.delete(*keys[i : i + 500])
        await redis.aclose()
    return modes


def run_benchmark(args: argparse.Namespace, console: Console) -> Result:
    if not args.input.is_dir():
        raise SystemExit(f"corpus not found at {args.input}: give --input or set CORPUS_DIR")
    picked = pick_scans(args.input, args.pages)
    if not picked:
        raise SystemExit(f"no scanned PDFs under {args.input}")
    pages = sum(n for _r, n in picked)
    result = Result(
        workers=args.workers,
        documents=[r for r, _n in picked],
        pages=pages,
        machine={"cpus": os.cpu_count(), "python": sys.version.split()[0], **_uname()},
    )
    console.print(f"{len(picked)} scanned documents, {pages} pages, {args.workers} processes")
    engine = TesseractEngine()
    pool = CpuPool(args.workers, initializer=tune_gc)
    tmp = Path(tempfile.mkdtemp(prefix="bench-ocr-"))
    try:
        src, again = tmp / "in", tmp / "again"
        src.mkdir()
        again.mkdir()
        files: list[tuple[Path, int]] = []
        for rel, n in picked:
            name = rel.replace("/", "__")
            shutil.copyfile(args.input / rel, src / name)
            shutil.copyfile(args.input / rel, again / f"copy-of-{name}")
            files.append((src / name, n))
        for f in [pool.submit(_warm, engine, 1.0) for _ in range(args.workers)]:
            f.result()
        result.modes = asyncio.run(all_modes(args, pool, engine, files, src, again))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def _uname() -> dict[str, str]:
    u = platform.uname()
    return {"system": u.system, "machine": u.machine, "processor": u.processor or ""}


def table(result: Result) -> Table:
    t = Table(title=f"OCR: {result.pages} pages, {result.workers} processes")
    cols = ("mode", "pages", "wall s", "pages/s", "vs direct", "CPU s", "of which here",
            "pages/CPU-s", "vs direct", "engine calls", "from cache")  # fmt: skip
    for col in cols:
        t.add_column(col, justify="left" if col == "mode" else "right")
    direct = result.mode("direct")
    for m in result.modes:
        t.add_row(
            m.name,
            str(m.pages),
            f"{m.seconds:.2f}",
            f"{m.pages_per_s:.3f}",
            f"{m.pages_per_s / direct.pages_per_s:.0%}" if m.pages else "-",
            f"{m.cpu_s:.1f}",
            f"{m.main_cpu_s:.1f}",
            f"{m.pages_per_cpu_s:.3f}",
            f"{m.pages_per_cpu_s / direct.pages_per_cpu_s:.0%}" if m.pages else "-",
            str(m.engine_calls),
            str(m.cached_pages),
        )
    return t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ocr", description=__doc__)
    p.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="corpus folder")
    p.add_argument("--pages", type=int, default=30, help="at most this many scanned pages")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="pool processes")
    p.add_argument("--concurrency", type=int, default=16, help="documents in flight per stage")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    console = Console(width=140)
    result = run_benchmark(args, console)
    console.print(table(result))
    rerun = [m for m in result.modes if m.name.startswith("pipeline") and m.name != "pipeline cold"]
    no_calls = all(m.engine_calls == 0 for m in rerun)
    console.print(
        f"pipeline cold / direct = {result.ratio:.1%} in pages per second, "
        f"{result.cpu_ratio:.1%} per CPU second (target >= {TARGET:.0%}); "
        f"re-runs made {'no' if no_calls else 'SOME'} OCR calls"
    )
    if args.json is not None:
        out = asdict(result) | {
            "ratio": result.ratio,
            "cpu_ratio": result.cpu_ratio,
            "target": TARGET,
        }
        for m, raw in zip(result.modes, out["modes"], strict=True):
            raw["pages_per_s"], raw["pages_per_cpu_s"] = m.pages_per_s, m.pages_per_cpu_s
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0 if no_calls else 1


if __name__ == "__main__":
    sys.exit(main())
