"""Output of the harness: a table on stdout, JSON in issue 3's shape, a PNG plot.

The JSON is ``{"config": {...}, "runs": [...]}`` with exactly ``metrics.RUN_FIELDS``
per run, because a bar reads it; everything derived (ratios, overhead) is shown in the
table only and can be recomputed from the runs. With the limit (``--mode ...,limit``)
the JSON has a third key, ``"limit": {"runs": [...], "fractions": [...]}``: the stages
alone per latency, and each path's cold docs/s as a fraction of it (the CPU per
component of every run is in ``config.diagnostics[].cpu_ms_per_doc``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.metrics import RunMetrics

PATHS = ("accelerated", "traditional")


def to_json(
    config: dict[str, Any], runs: Sequence[RunMetrics], limit: dict[str, Any] | None = None
) -> dict[str, Any]:
    out = {"config": config, "runs": [r.as_json() for r in runs]}
    if limit is not None:
        out["limit"] = limit
    return out


def write_json(
    path: Path,
    config: dict[str, Any],
    runs: Sequence[RunMetrics],
    limit: dict[str, Any] | None = None,
) -> None:
    path.write_text(json.dumps(to_json(config, runs, limit), indent=2) + "\n")


def _find(runs: Sequence[RunMetrics], path: str, mode: str, latency: float) -> RunMetrics | None:
    for r in runs:
        if (r.path, r.mode, r.db_latency_ms) == (path, mode, latency):
            return r
    return None


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def ratios(runs: Sequence[RunMetrics]) -> list[tuple[str, float, RunMetrics, RunMetrics]]:
    """(mode, latency, accelerated, traditional) for every combination that has both."""
    out = []
    seen: set[tuple[str, float]] = set()
    for r in runs:
        combo = (r.mode, r.db_latency_ms)
        if combo in seen:
            continue
        seen.add(combo)
        acc = _find(runs, "accelerated", *combo)
        trad = _find(runs, "traditional", *combo)
        if acc is not None and trad is not None:
            out.append((r.mode, r.db_latency_ms, acc, trad))
    return out


def table(runs: Sequence[RunMetrics]) -> Table:
    t = Table(title="accelerated vs traditional", show_header=True, header_style="bold")
    for name in (
        "path",
        "mode",
        "DB ms",
        "docs",
        "failed",
        "elapsed s",
        "docs/s",
        "p50 ms",
        "p95 ms",
        "DB RT/doc",
        "Redis cmd/doc",
        "Redis B/doc",
        "JSON B/doc",
        "compute s",
        "overhead",
        "peak RSS MB",
    ):
        t.add_column(name, justify="left" if name in ("path", "mode") else "right")
    for r in sorted(runs, key=lambda r: (r.db_latency_ms, r.mode, r.path)):
        t.add_row(
            r.path,
            r.mode,
            f"{r.db_latency_ms:g}",
            str(r.docs),
            str(r.failed),
            f"{r.elapsed_s:.2f}",
            f"{r.docs_per_s:.2f}",
            f"{r.p50_doc_ms:.0f}",
            f"{r.p95_doc_ms:.0f}",
            f"{r.db_roundtrips_per_doc:.2f}",
            f"{r.redis_commands_per_doc:.1f}",
            f"{r.redis_bytes_per_doc:.0f}",
            f"{r.raw_json_bytes_per_doc:.0f}",
            f"{r.stage_compute_s:.2f}",
            f"{r.overhead_ratio:+.0%}",
            f"{r.peak_rss_mb:.0f}",
        )
    for mode, latency, acc, trad in ratios(runs):
        t.add_row(
            "[bold]ratio acc/trad[/bold]",
            mode,
            f"{latency:g}",
            "",
            "",
            _ratio(acc.elapsed_s, trad.elapsed_s),
            f"[bold]{_ratio(acc.docs_per_s, trad.docs_per_s)}[/bold]",
            _ratio(acc.p50_doc_ms, trad.p50_doc_ms),
            _ratio(acc.p95_doc_ms, trad.p95_doc_ms),
            _ratio(acc.db_roundtrips_per_doc, trad.db_roundtrips_per_doc),
            _ratio(acc.redis_commands_per_doc, trad.redis_commands_per_doc),
            "",
            "",
            "",
            "",
            "",
        )
    return t


def print_table(runs: Sequence[RunMetrics], console: Console | None = None) -> None:
    console = console or Console()
    if not console.is_terminal:  # piped output defaults to 80 columns: every cell truncated
        console = Console(file=console.file, width=200)
    console.print(table(runs))


CPU_COLUMNS = (
    "stage_code",
    "pool_other",
    "redis_client",
    "redis_server",
    "postgres_client",
    "postgres_server",
    "codec",
    "loop_engine",
    "other_threads",
    "total",
)


def limit_table(limit: dict[str, Any], diagnostics: Sequence[dict[str, Any]]) -> Table:
    """The limit beside each path's cold run: fraction, tails, CPU ms/doc by component."""
    t = Table(title="the limit: the stages alone", show_header=True, header_style="bold")
    for name in ("run", "DB ms", "docs/s", "fraction", "first done s", "last 5% s"):
        t.add_column(name, justify="left" if name == "run" else "right")
    for name in CPU_COLUMNS:
        t.add_column(name.replace("_", " "), justify="right")
    cpu = {d["run"]: d.get("cpu_ms_per_doc", {}) for d in diagnostics}

    def cpu_cells(c: dict[str, float]) -> list[str]:
        return [f"{c.get(k, 0.0):.2f}" for k in CPU_COLUMNS]

    for lim in limit["runs"]:
        lat = lim["db_latency_ms"]
        t.add_row(
            "[bold]limit[/bold]",
            f"{lat:g}",
            f"{lim['docs_per_s']:.2f}",
            "1.00",
            f"{lim['first_done_s']:.2f}",
            f"{lim['last5_s']:.2f}",
            *cpu_cells(lim["cpu_ms_per_doc"]),
        )
        for f in limit["fractions"]:
            if f["db_latency_ms"] != lat:
                continue
            t.add_row(
                f["path"],
                f"{lat:g}",
                f"{f['docs_per_s']:.2f}",
                f"[bold]{f['fraction']:.2f}[/bold]",
                f"{f['first_done_s']:.2f}" if f["first_done_s"] is not None else "-",
                f"{f['last5_s']:.2f}" if f["last5_s"] is not None else "-",
                *cpu_cells(cpu.get(f"{f['path']}/cold/{lat:g}ms", {})),
            )
    return t


def print_limit(
    limit: dict[str, Any], diagnostics: Sequence[dict[str, Any]], console: Console | None = None
) -> None:
    console = console or Console()
    if not console.is_terminal:
        console = Console(file=console.file, width=220)
    console.print(limit_table(limit, diagnostics))
    console.print("CPU columns: ms of CPU per document (benchmarks/cpu_ledger.py)")


def plot(path: Path, runs: Sequence[RunMetrics], title: str = "") -> None:
    """Documents per second against DB latency: one line per (path, mode)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    styles = {"accelerated": ("tab:red", "o"), "traditional": ("tab:blue", "s")}
    values: list[float] = []
    for p in PATHS:
        for mode in ("cold", "warm"):
            pts = sorted(
                (r.db_latency_ms, r.docs_per_s) for r in runs if (r.path, r.mode) == (p, mode)
            )
            if not pts:
                continue
            color, marker = styles[p]
            ax.plot(
                [x for x, _ in pts],
                [y for _, y in pts],
                color=color,
                marker=marker,
                linestyle="-" if mode == "cold" else "--",
                label=f"{p}, {mode}",
            )
            values += [y for _, y in pts if y > 0]
    if values and max(values) / min(values) > 20:
        ax.set_yscale("log")
    ax.set_xlabel("added DB round-trip latency (ms)")
    ax.set_ylabel("documents per second")
    ax.set_title(title or "accelerated vs traditional pipeline")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
