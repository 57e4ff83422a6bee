"""``python -m accelerated.batch``: ingest or bulk-reprocess a project, then exit.

Exit status: 0 when every document finished (done, or needs OCR), 1 when any
document failed (each listed with its error), 2 for usage or configuration errors,
3 when Redis or Postgres is unavailable, 4 when the LLM token budget
(``LLM_BUDGET_TOKENS``) ran out before some documents' calls (each listed as
``budget_exhausted``; run again with a larger budget: no answered call is repeated),
130 when interrupted (Ctrl-C: the documents in flight finish or go back to their
streams; run the same command again).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from accelerated import cli, state
from accelerated.batch_run import (
    BatchOptions,
    BatchProgress,
    BatchReport,
    progress_line,
    run_batch,
)
from accelerated.cli import (
    EXIT_BUDGET,
    EXIT_FAILED,
    EXIT_OK,
    CliContext,
    apply_settings_logging,
    load_settings,
    setup_output,
    validate_startup,
)
from accelerated.connect import open_clients
from accelerated.errors import ConfigError
from accelerated.ids import validate_project
from accelerated.intake import NOT_A_DOCUMENT, discover
from accelerated.keys import STAGES
from accelerated.redact import redact
from accelerated.runtime import build_runtime, make_executor, tune_gc
from accelerated.s3 import is_s3, parse_s3_uri

DEFAULT_INPUT = Path(__file__).resolve().parent.parent / "examples" / "documents"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m accelerated.batch", description=__doc__)
    p.add_argument("--project", help="project id (letters, digits, _ . -); required")
    p.add_argument(
        "--input",
        action="append",
        type=_input,
        help=(
            "file, folder or s3://bucket/prefix to ingest (repeatable; default "
            f"{DEFAULT_INPUT} unless --reprocess)"
        ),
    )
    p.add_argument("--reprocess", action="store_true", help="re-run every document of the project")
    p.add_argument(
        "--from",
        dest="from_stage",
        choices=STAGES,
        help="with --reprocess: drop cached outputs from this stage on",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        help="glob of input-relative paths to skip (repeatable)",
    )
    p.add_argument("--limit", type=int, help="take at most this many documents")
    p.add_argument(
        "--no-consume", action="store_true", help="only queue; workers elsewhere do the work"
    )
    p.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="follow symlinks that lead outside the input folder (skipped by default)",
    )
    p.add_argument(
        "--show-config",
        action="store_true",
        help="print every setting, its resolved value and its source, then exit",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.show_config:
        return args
    if not args.project:
        p.error("the following arguments are required: --project")
    if args.from_stage and not args.reprocess:
        p.error("--from needs --reprocess")
    if args.input is None and not args.reprocess:
        args.input = [DEFAULT_INPUT]
    missing = [str(p) for p in _local(args.input) if not p.exists()]
    if missing:
        p.error(f"input not found: {', '.join(missing)}")
    return args


def _input(value: str) -> Path | str:
    """A local path, or an ``s3://`` URI kept as text (a Path would fold its ``//``)."""
    if is_s3(value):
        try:
            parse_s3_uri(value)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value
    return Path(value)


def _local(inputs: list[Path | str] | None) -> list[Path]:
    return [i for i in inputs or [] if isinstance(i, Path)]


def _s3(inputs: list[Path | str] | None) -> list[str]:
    return [i for i in inputs or [] if isinstance(i, str)]


def summary_rows(report: BatchReport) -> list[tuple[str, str, str]]:
    """(label, key, value) per figure: the table and the line print the same numbers.

    The LLM figures are the run's, from the project's counters in Redis, which every
    worker adds to (so they are right however many processes made the calls)."""
    out = [
        ("documents", "documents", str(report.total)),
        ("done", "done", str(report.done)),
        ("needs OCR", "needs_ocr", str(report.needs_ocr)),
        ("budget exhausted", "budget_exhausted", str(len(report.budget_exhausted))),
        ("failed", "failed", str(len(report.failed))),
        ("skipped files", "skipped", str(report.skipped_files)),
        ("chunks", "chunks", str(report.chunks)),
        ("entity mentions", "mentions", str(report.mentions)),
        ("canonical entities", "canonical_entities", str(report.canonicals)),
        ("relationships", "relationships", str(report.relationships)),
        ("pages OCRed", "ocr_pages", str(report.ocr_pages)),
        ("pages from OCR cache", "ocr_cached_pages", str(report.ocr_cached_pages)),
    ]
    if report.fallback:
        out.append(("on the traditional path (Redis outage)", "fallback", str(report.fallback)))
    if report.structured or report.structured_errors:
        out += [
            ("document fields", "structured", str(report.structured)),
            ("document fields failed", "structured_errors", str(report.structured_errors)),
        ]
    if report.resolution is not None:
        r = report.resolution
        out += [
            ("merge candidates", "merge_candidates", str(r.candidates)),
            ("merge pairs asked", "merge_asked", str(r.asked)),
            ("merge pairs undecided", "merge_undecided", str(r.undecided)),
            ("canonical aliases", "aliases", str(report.aliases)),
        ]
    if report.llm is not None:
        u = report.llm
        out += [
            ("LLM calls", "llm_calls", str(u.calls)),
            ("LLM cache hits", "llm_cache_hits", str(u.cache_hits)),
            ("LLM tokens in", "llm_tokens_in", str(u.tokens_in)),
            ("LLM tokens out", "llm_tokens_out", str(u.tokens_out)),
            ("LLM cost USD (est.)", "llm_cost_usd", f"{u.cost_usd:.4f}"),
            ("LLM limiter wait s", "llm_wait_s", f"{u.wait_s:.2f}"),
            ("LLM 429s", "llm_429s", str(u.rate_limited)),
        ]
    out += [
        ("elapsed s", "elapsed_s", f"{report.elapsed_s:.2f}"),
        ("documents / s", "docs_per_s", f"{report.docs_per_s:.1f}"),
    ]
    return out


def summary_table(report: BatchReport) -> Table:
    """One row per figure: readable at any terminal width, and in CI logs."""
    t = Table(title=f"project {report.project} ({report.path} path)")
    t.add_column("")
    t.add_column("", justify="right")
    for label, _key, value in summary_rows(report):
        t.add_row(label, value)
    return t


def summary_line(report: BatchReport) -> str:
    """The same numbers on one greppable line (logs are rarely as wide as a terminal)."""
    return f"summary: path={report.path} " + " ".join(
        f"{key}={value}" for _label, key, value in summary_rows(report)
    )


class _TwoLineProgress(Progress):
    """The bar on one line, its detail (stage counts, rate, ETA) on the next: in one
    row, a console of 80 columns (a log file, CI) cut the detail and the count off."""

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        for task in self.tasks:
            detail = task.fields.get("detail", "")
            if detail:
                yield Text(f"  {detail}", overflow="fold")


def progress_bar(console: Console, project: str, path: str) -> Progress:
    """The live bar: documents finished of the run, then per stage the messages there
    (and the writer's backlog, the failed count), the rate and the ETA."""
    return _TwoLineProgress(
        TextColumn(f"[bold]{escape(project)}[/bold] {path}"),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def show_progress(bar: Progress, task: TaskID, p: BatchProgress) -> None:
    bar.update(task, completed=p.finished, total=p.total, detail=progress_line(p))


def _batch_options(args: argparse.Namespace) -> BatchOptions:
    return BatchOptions(
        project=args.project,
        inputs=_local(args.input),
        s3_inputs=_s3(args.input),
        reprocess=args.reprocess,
        from_stage=args.from_stage,
        exclude=args.exclude,
        consume=not args.no_consume,
        limit=args.limit,
        follow_symlinks=args.follow_symlinks,
    )


@dataclass
class Attention:
    """The documents a person must look at after a run, each with the reason."""

    needs_ocr: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


async def attention(pool: asyncpg.Pool, args: argparse.Namespace, report: BatchReport) -> Attention:
    """Needs-OCR documents from Postgres, failures from the report, skipped files from
    the same walk intake made (it is cheap, and it knows why each file was left out)."""
    out = Attention(failed=dict(report.failed))
    keys: list[str] | None = None
    if _local(args.input):
        disc = await asyncio.to_thread(
            discover, _local(args.input), args.exclude, follow_symlinks=args.follow_symlinks
        )
        out.skipped = {k: disc.reasons.get(k, NOT_A_DOCUMENT) for k in disc.skipped}
        if not args.reprocess:
            keys = [k for _p, k in disc.files][: args.limit]
    out.skipped.update(report.s3_skipped)  # the listing is not repeated: intake kept them
    if _s3(args.input) and not args.reprocess:
        keys = (keys or []) + report.s3_keys
    if report.needs_ocr:
        rows = await pool.fetch(
            "SELECT source_key, error FROM documents WHERE project = $1 AND status = $2 "
            "AND ($3::text[] IS NULL OR source_key = ANY($3::text[])) ORDER BY source_key",
            args.project,
            state.NEEDS_OCR,
            keys,
        )
        out.needs_ocr = {r["source_key"]: r["error"] or _NO_TEXT_LAYER for r in rows}
    return out


_NO_TEXT_LAYER = "no text layer (a scanned document): waiting for OCR"
_LIST_MAX = 200  # rows shown per list; the documents table holds them all


def _listing(title: str, items: dict[str, str], why: str = "reason") -> Table:
    t = Table(title=f"{title} ({len(items)})", show_header=True)
    t.add_column("document", overflow="fold")
    t.add_column(why, overflow="fold")
    for key, reason in sorted(items.items())[:_LIST_MAX]:
        t.add_row(redact(key), redact(reason))
    if len(items) > _LIST_MAX:
        t.add_row(f"... and {len(items) - _LIST_MAX} more", "see the documents table")
    return t


async def amain(args: argparse.Namespace, console: Console, ctx: CliContext) -> int:
    settings = load_settings()
    apply_settings_logging(settings)
    backends = validate_startup(settings)
    validate_project(args.project)
    opts = _batch_options(args)
    async with open_clients(settings) as clients:
        for notice in (*backends.notices, *clients.notices):
            console.print(
                redact(notice), style="yellow", markup=False, highlight=False, soft_wrap=True
            )
        rt = build_runtime(
            clients.settings,
            clients.pool,
            clients.redis,
            executor=make_executor(clients.settings),
            backends=backends,
        )
        try:
            with progress_bar(console, args.project, rt.handoff.name) as bar:
                task = bar.add_task("documents", total=None, detail="")
                report = await run_batch(
                    rt,
                    opts,
                    progress=lambda p: show_progress(bar, task, p),
                    notice=lambda line: bar.console.print(
                        redact(line), style="yellow", markup=False, highlight=False
                    ),
                )
        finally:
            await rt.aclose()
        todo = await attention(clients.pool, args, report)
    console.print(summary_table(report))
    console.print(summary_line(report), soft_wrap=True)
    if report.s3_listed:
        console.print(
            f"S3: {report.s3_listed} object(s) listed, {report.s3_downloaded} downloaded to "
            f"hash (new or changed), {report.s3_unchanged} unchanged by ETag and size"
        )
    if report.unchanged:
        console.print(f"{report.unchanged} document(s) unchanged since they were done: not re-run")
    if todo.skipped:
        console.print(_listing("skipped files", todo.skipped))
    if todo.needs_ocr:
        console.print(_listing("needs OCR", todo.needs_ocr))
    if report.resolution is not None and not report.resolution.complete:
        console.print(
            f"resolution incomplete: {report.resolution.undecided} pair(s) undecided "
            f"({report.resolution.note or 'see the log'}); the next run asks them"
        )
    if report.budget_exhausted:
        console.print(_listing("LLM budget exhausted", report.budget_exhausted))
    if todo.failed:
        console.print(_listing("failed documents", todo.failed, "error"))
        return EXIT_FAILED
    if report.budget_exhausted:
        console.print(
            f"{len(report.budget_exhausted)} document(s) wait for a re-run with a larger "
            "LLM_BUDGET_TOKENS (answered calls come from the cache)"
        )
        return EXIT_BUDGET
    return EXIT_OK


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_output(args.verbose)
    if args.show_config:
        sys.exit(_show_config())
    console = Console(stderr=False)
    tune_gc()

    def say(line: str) -> None:
        for part in line.splitlines():
            console.print(part, style="yellow", markup=False, highlight=False, soft_wrap=True)

    sys.exit(cli.run(lambda ctx: amain(args, console, ctx), say=say))


def _show_config() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"configuration error: {line}", file=sys.stderr)
        return cli.EXIT_USAGE
    return cli.show_config(settings, print)


if __name__ == "__main__":
    main()
