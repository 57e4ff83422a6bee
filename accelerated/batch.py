"""``python -m accelerated.batch``: ingest or bulk-reprocess a project, then exit.

Exit status: 0 when every document finished (done, or needs OCR), 1 when any
document failed (each listed with its error), 2 for usage or configuration errors.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from accelerated.batch_run import BatchOptions, BatchReport, raise_for_failures, run_batch
from accelerated.connect import open_clients
from accelerated.errors import BatchFailed, PipelineError
from accelerated.ids import validate_project
from accelerated.keys import STAGES
from accelerated.runtime import build_runtime, make_executor, tune_gc
from accelerated.settings import Settings

DEFAULT_INPUT = Path(__file__).resolve().parent.parent / "examples" / "documents"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m accelerated.batch", description=__doc__)
    p.add_argument("--project", required=True, help="project id (letters, digits, _ . -)")
    p.add_argument(
        "--input",
        action="append",
        type=Path,
        help=f"file or folder to ingest (repeatable; default {DEFAULT_INPUT} unless --reprocess)",
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
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.from_stage and not args.reprocess:
        p.error("--from needs --reprocess")
    if args.input is None and not args.reprocess:
        args.input = [DEFAULT_INPUT]
    missing = [str(p) for p in args.input or [] if not p.exists()]
    if missing:
        p.error(f"input not found: {', '.join(missing)}")
    return args


def summary_table(report: BatchReport) -> Table:
    """One row per figure: readable at any terminal width, and in CI logs."""
    t = Table(title=f"project {report.project} ({report.path} path)")
    t.add_column("")
    t.add_column("", justify="right")
    for label, value in (
        ("documents", report.total),
        ("done", report.done),
        ("needs OCR", report.needs_ocr),
        ("failed", len(report.failed)),
        ("chunks", report.chunks),
        ("entity mentions", report.mentions),
        ("canonical entities", report.canonicals),
        ("relationships", report.relationships),
        ("elapsed s", f"{report.elapsed_s:.2f}"),
        ("documents / s", f"{report.docs_per_s:.1f}"),
    ):
        t.add_row(label, str(value))
    return t


def summary_line(report: BatchReport) -> str:
    """The same numbers on one greppable line (logs are rarely as wide as a terminal)."""
    return (
        f"summary: path={report.path} documents={report.total} done={report.done} "
        f"needs_ocr={report.needs_ocr} failed={len(report.failed)} chunks={report.chunks} "
        f"mentions={report.mentions} canonical_entities={report.canonicals} "
        f"relationships={report.relationships} elapsed_s={report.elapsed_s:.2f} "
        f"docs_per_s={report.docs_per_s:.1f}"
    )


async def amain(args: argparse.Namespace, console: Console) -> int:
    settings = Settings()
    validate_project(args.project)
    async with open_clients(settings) as clients:
        for notice in clients.notices:
            console.print(f"[yellow]{notice}[/yellow]")
        rt = build_runtime(
            clients.settings, clients.pool, clients.redis, executor=make_executor(clients.settings)
        )
        opts = BatchOptions(
            project=args.project,
            inputs=list(args.input or []),
            reprocess=args.reprocess,
            from_stage=args.from_stage,
            exclude=args.exclude,
            consume=not args.no_consume,
            limit=args.limit,
        )
        try:
            with Progress(
                TextColumn(f"[bold]{args.project}[/bold] {rt.handoff.name}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            ) as bar:
                task = bar.add_task("documents", total=None)
                report = await run_batch(
                    rt, opts, progress=lambda n, total: bar.update(task, completed=n, total=total)
                )
        finally:
            rt.close()
    console.print(summary_table(report))
    console.print(summary_line(report), soft_wrap=True)
    if report.skipped_files:
        console.print(
            f"skipped {report.skipped_files} file(s) that are not a document type we take"
        )
    if report.unchanged:
        console.print(f"{report.unchanged} document(s) unchanged since they were done: not re-run")
    try:
        raise_for_failures(report)
    except BatchFailed as exc:
        fails = Table(title="failed documents", show_header=True)
        fails.add_column("document", overflow="fold")
        fails.add_column("error")
        for key, error in sorted(exc.failed.items()):
            fails.add_row(key, error)
        console.print(fails)
        return 1
    return 0


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    console = Console(stderr=False)
    tune_gc()
    try:
        code = asyncio.run(amain(args, console))
    except PipelineError as exc:
        console.print(f"[red]error:[/red] {exc}")
        code = 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: run the same command again to finish[/yellow]")
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
