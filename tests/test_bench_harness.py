"""The benchmark harness on a tiny run: both paths, both modes, two latencies."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from rich.console import Console

from accelerated.intake import discover
from accelerated.settings import Settings
from benchmarks.inputs import stage_inputs
from benchmarks.metrics import RUN_FIELDS
from benchmarks.run import BenchConfig, parse_args, run_benchmark
from tests.conftest import EXAMPLES


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_tiny_run_reports_every_field_for_every_run(
    settings: Settings, tmp_path: Path
) -> None:
    assert settings.redis_url is not None and settings.database_url is not None
    originals = len(discover([EXAMPLES]).files)
    docs = originals + 2  # two unique copies on top of every example document
    cfg = BenchConfig(
        input=EXAMPLES,
        exclude=[],
        docs=docs,
        latencies_ms=[0.0, 5.0],
        modes=["cold", "warm"],
        concurrency=8,
        redis_url=settings.redis_url,
        database_url=settings.database_url,
        warmup=False,
        json_path=tmp_path / "bench.json",
        plot_path=tmp_path / "bench.png",
    )
    console = Console(file=(tmp_path / "out.txt").open("w"), width=200)
    await run_benchmark(cfg, console)

    data = json.loads((tmp_path / "bench.json").read_text())
    assert set(data) == {"config", "runs"}
    assert data["config"]["docs_original"] == originals and data["config"]["docs_copies"] == 2
    runs = data["runs"]
    combos = {(r["path"], r["mode"], r["db_latency_ms"]) for r in runs}
    assert combos == {
        (p, m, lat)
        for p in ("accelerated", "traditional")
        for m in ("cold", "warm")
        for lat in (0, 5)
    }
    for r in runs:
        assert tuple(r) == RUN_FIELDS, r
        assert r["docs"] == docs and r["failed"] == 0 and r["workers"] == 1, r
        assert r["elapsed_s"] > 0 and r["docs_per_s"] == pytest.approx(docs / r["elapsed_s"], 0.01)
        assert 0 <= r["p50_doc_ms"] <= r["p95_doc_ms"], r
        assert r["db_roundtrips_per_doc"] > 0 and r["redis_commands_per_doc"] > 0, r
        assert r["peak_rss_mb"] > 0, r
        # A warm accelerated run may find nothing changed and run no stage code at all.
        if (r["path"], r["mode"]) != ("accelerated", "warm"):
            assert r["p50_doc_ms"] > 0 and r["stage_compute_s"] > 0, r
        if r["path"] == "traditional":
            assert r["redis_bytes_per_doc"] == r["raw_json_bytes_per_doc"] == 0, r
        else:  # compressed stage outputs really are in Redis, smaller than their JSON
            assert 0 < r["redis_bytes_per_doc"] < r["raw_json_bytes_per_doc"], r
    # The two paths alternate which goes first.
    firsts = [o.split("/")[0] for o in data["config"]["run_order"][::2]]
    assert set(firsts) == {"accelerated", "traditional"}
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (tmp_path / "out.txt").read_text()
    assert "ratio acc/trad" in table


def test_copies_are_unique_and_only_of_text_formats(corpus: Path, tmp_path: Path) -> None:
    found = discover([corpus], ["truth/*"]).files
    staged = stage_inputs(corpus, ["truth/*"], len(found) + 25, tmp_path / "docs")
    assert (staged.originals, staged.copies) == (len(found), 25)
    copies = [p for p in (tmp_path / "docs").glob("_copy*/**/*") if p.is_file()]
    assert len(copies) == 25
    assert {p.suffix.lower() for p in copies} <= {".txt", ".html", ".htm", ".eml"}
    originals = {_sha(p) for p, _ in found}
    assert not originals & {_sha(p) for p in copies}  # no extraction-cache hit in cold runs
    for p in copies:
        assert b"benchmark copy 1" in p.read_bytes()
    # Fewer than available: an even spread, no copies.
    few = stage_inputs(corpus, ["truth/*"], 10, tmp_path / "few")
    assert (few.originals, few.copies) == (10, 0)
    assert (
        len({p.parts[len((tmp_path / "few").parts)] for p in (tmp_path / "few").rglob("*.*")}) > 1
    )


def test_cli_arguments() -> None:
    cfg = parse_args(
        ["--docs", "5", "--db-latency-ms", "0,20,50", "--mode", "warm", "--workers", "2"]
    )
    assert cfg.docs == 5 and cfg.latencies_ms == [0, 20, 50] and cfg.modes == ["warm"]
    assert cfg.exclude == ["truth/*"] and cfg.subprocess_workers
    llm = parse_args(
        ["--entity-backend", "rules+llm", "--llm-latency-ms", "300", "--llm-rpm", "600"]
    )
    assert (llm.entity_backend, llm.llm_latency_ms, llm.llm_rpm) == ("rules+llm", 300, 600)
    assert llm.uses_llm and not cfg.uses_llm and parse_args(["--mode", "rerun"]).modes == ["rerun"]
    with pytest.raises(SystemExit):
        parse_args(["--llm-rpm", "0"])
    with pytest.raises(SystemExit):
        parse_args(["--mode", "hot"])
    with pytest.raises(SystemExit):
        parse_args(["--db-latency-ms", "-3"])


async def test_llm_run_counts_calls_and_the_rerun_asks_nothing_on_the_accelerated_path(
    settings: Settings, tmp_path: Path
) -> None:
    """rules+llm against the harness's own LLM servers: a re-run after the entity
    backend's version changed makes no call on the accelerated path (its response cache)
    and every call again on the traditional one; nothing went past the server's limit."""
    assert settings.redis_url is not None and settings.database_url is not None
    cfg = BenchConfig(
        input=EXAMPLES,
        exclude=[],
        docs=len(discover([EXAMPLES]).files),
        latencies_ms=[0.0],
        modes=["cold", "rerun"],
        concurrency=8,
        cpu_pool="thread",
        redis_url=settings.redis_url,
        database_url=settings.database_url,
        warmup=False,
        json_path=tmp_path / "bench.json",
        entity_backend="rules+llm",
        llm_latency_ms=20.0,
        llm_rpm=600,
    )
    console = Console(file=(tmp_path / "out.txt").open("w"), width=200)
    await run_benchmark(cfg, console)
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["config"]["entity_backend"] == "rules+llm"
    assert data["config"]["llm"]["rpm_limit"] == 600
    llm = {d["run"]: d["llm"] for d in data["config"]["diagnostics"]}
    assert set(llm) == {
        f"{p}/{m}/0ms" for p in ("accelerated", "traditional") for m in ("cold", "rerun")
    }
    cold = llm["accelerated/cold/0ms"]["server_calls"]
    assert cold > 0 and llm["traditional/cold/0ms"]["server_calls"] == cold
    assert llm["accelerated/rerun/0ms"]["server_calls"] == 0
    assert llm["accelerated/rerun/0ms"]["cache_hits"] == cold
    assert llm["traditional/rerun/0ms"]["server_calls"] == cold  # no LLM cache there
    for seen in llm.values():
        assert seen["server_429s"] == 0 and seen["counted_calls"] == seen["server_calls"]
        assert seen["busiest_60s_window"] <= 600
    assert {r["failed"] for r in data["runs"]} == {0}


async def test_limit_mode_reports_the_stages_alone_and_each_paths_fraction(
    settings: Settings, tmp_path: Path
) -> None:
    """``--mode cold,limit``: the limit beside the cold runs, each path's fraction of it,
    the tails, and CPU per document per component (no timing thresholds)."""
    assert settings.redis_url is not None and settings.database_url is not None
    docs = len(discover([EXAMPLES]).files) + 2
    cfg = BenchConfig(
        input=EXAMPLES,
        exclude=[],
        docs=docs,
        latencies_ms=[0.0],
        modes=["cold", "limit"],
        concurrency=4,
        cpu_pool="thread",
        redis_url=settings.redis_url,
        database_url=settings.database_url,
        warmup=False,
        json_path=tmp_path / "bench.json",
    )
    console = Console(file=(tmp_path / "out.txt").open("w"), width=200)
    await run_benchmark(cfg, console)
    data = json.loads((tmp_path / "bench.json").read_text())
    assert set(data) == {"config", "runs", "limit"}
    assert {(r["path"], r["mode"]) for r in data["runs"]} == {
        ("accelerated", "cold"),
        ("traditional", "cold"),
    }
    for r in data["runs"]:
        assert tuple(r) == RUN_FIELDS, r  # the runs keep issue 3's shape
    (lim,) = data["limit"]["runs"]
    assert lim["docs"] == docs and lim["failed"] == 0
    assert lim["docs_per_s"] > 0 and lim["stage_compute_s"] > 0
    assert 0 < lim["first_done_s"] <= lim["elapsed_s"] and lim["last5_s"] >= 0
    fractions = {f["path"]: f for f in data["limit"]["fractions"]}
    assert set(fractions) == {"accelerated", "traditional"}
    for f in fractions.values():
        assert f["limit_docs_per_s"] == lim["docs_per_s"] and f["fraction"] > 0
        assert f["fraction"] == pytest.approx(f["docs_per_s"] / lim["docs_per_s"], abs=0.002)
        assert f["first_done_s"] > 0 and f["last5_s"] >= 0
    cpu = {d["run"]: d["cpu_ms_per_doc"] for d in data["config"]["diagnostics"]}
    cpu["limit"] = lim["cpu_ms_per_doc"]
    for run, c in cpu.items():
        assert c["stage_code"] > 0 and c["total"] >= c["stage_code"], (run, c)
        assert all(v >= 0 for v in c.values()), (run, c)
    # Only the paths talk to the databases; the limit has no client of either.
    assert cpu["limit"]["redis_client"] == cpu["limit"]["postgres_client"] == 0
    assert cpu["limit"]["postgres_server"] == 0 and cpu["limit"]["codec"] == 0
    for path in ("accelerated", "traditional"):
        c = cpu[f"{path}/cold/0ms"]
        assert c["redis_client"] > 0 and c["postgres_client"] > 0, c
    assert cpu["accelerated/cold/0ms"]["codec"] > 0
    # The limit runs first or last, beside the cold runs.
    assert data["config"]["run_order"][0] == "limit/cold/0ms"
    assert "the limit: the stages alone" in (tmp_path / "out.txt").read_text()
    assert parse_args(["--mode", "cold,limit"]).modes == ["cold", "limit"]
