"""Legacy word processor files: .doc by antiword, .wpd by wpd2text, .rtf by striprtf.

The corpus's three legacy files come out as text on both pipeline paths; damaged ones,
a converter that hangs or floods its output, and a converter missing at start-up each
give a clear error while the rest of the batch completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import asyncpg
import pytest
import redis as sync_redis
import redis.asyncio as aioredis

from accelerated.aio import wait_for
from accelerated.batch_run import BatchOptions, run_batch
from accelerated.cli import EXIT_FAILED, EXIT_USAGE, validate_startup
from accelerated.errors import ConfigError, DocumentError
from accelerated.extractors import LegacyTools, extract_bytes, sniff_format
from accelerated.extractors.legacy import legacy_tools
from accelerated.settings import Settings
from persistence.schema import migrate
from tests.conftest import EXAMPLES
from tests.support import PYTHON, make_runtime, subprocess_env

ROOT = Path(__file__).resolve().parents[1]
DOC = "courtlistener/opinions_word/opinion_doc.doc"
WPD = "courtlistener/opinions_word/opinion_wpd.wpd"
RTF = "doctor/opinions_word/MD1700012.rtf"
DOCX_OF_RTF = "doctor/opinions_word/word-docx.docx"  # the same order, saved as DOCX

# Phrases read from each converter's output (the corpus files' own text).
EXPECTED = {
    DOC: (
        "doc",
        "antiword",
        [
            "Indiana Supreme Court",
            "No. 49S00-0308-DP-392",
            # -w 0: a paragraph is one line, so a sentence is never cut by a line end.
            "The appellee/defendant Charles Barker seeks rehearing following our decision "
            "in State v. Barker, 809 N.E.2d 312 (Ind. 2004).",
            "Baker's Brief of Appellee also asserted",  # the footnote, at the end
        ],
    ),
    WPD: (
        "wpd",
        "wpd2text",
        [
            "SUPREME COURT OF INDIANA",
            "RICHARD J. JOHNSON",
            "Cause No. 20C01-9712-CF-00066",
            "Johnson\u2019s trial for the murder of Steven Strycker lasted four days.",
            "Brewer v. State, 455 N.E.2d 324, 327 (Ind. 1983)",
        ],
    ),
    RTF: (
        "rtf",
        "striprtf",
        [
            "Applicant\u2019s Request",
            "MARCORSEPMAN 6210.6 [COMMISSION OF A SERIOUS OFFENSE]",
            "Veterans Crisis Line at 1-800-273-8255",
        ],
    ),
}


def _bad_files(corpus: Path) -> dict[str, bytes]:
    doc = (corpus / DOC).read_bytes()
    wpd = (corpus / WPD).read_bytes()
    rtf = (corpus / RTF).read_bytes()
    return {
        "corrupt.doc": doc[:1536] + bytes(range(256)) * 16,  # OLE header, then garbage
        "truncated.wpd": wpd[: len(wpd) // 2],
        "bogus.rtf": b"{\\rtf1\\ansi " + bytes(range(256)) * 16,
        "truncated.rtf": rtf[: len(rtf) // 2],
    }


def words(text: str) -> Counter[str]:
    return Counter(re.findall(r"[a-z0-9]+", text.lower()))


def fake_tool(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def _gone(pid: int, wait_s: float = 10.0) -> bool:
    """Whether ``pid`` has exited (a zombie counts) within ``wait_s`` (its killer's
    SIGKILL is immediate, the reaping by whoever inherits it is not)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1]
        except FileNotFoundError:
            return True
        if state.startswith("Z"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


# --------------------------------------------------------------------- extraction


@pytest.mark.parametrize("rel", list(EXPECTED), ids=["doc", "wpd", "rtf"])
def test_corpus_file_extracts_to_text(corpus: Path, rel: str) -> None:
    fmt, method, phrases = EXPECTED[rel]
    data = (corpus / rel).read_bytes()
    result = extract_bytes(data, Path(rel).name)
    assert (result.format, result.method, result.needs_ocr) == (fmt, method, False)
    for phrase in phrases:
        assert phrase in result.text, phrase
    assert len(result.pages) == 1 and result.pages[0].end == len(result.text)
    assert "\r" not in result.text and "\x00" not in result.text
    # Magic bytes, not the name: the same bytes under a misleading name or none.
    for name in ("exhibit", "exhibit.txt"):
        again = extract_bytes(data, name)
        assert (again.format, again.text) == (fmt, result.text), name


def test_rtf_keeps_the_page_header_and_matches_its_docx_twin(corpus: Path) -> None:
    """striprtf drops page headers, where the docket number is; it leads the text once,
    as in the DOCX of the same order, and the two agree word for word."""
    rtf = extract_bytes((corpus / RTF).read_bytes(), "order.rtf").text
    docx = extract_bytes((corpus / DOCX_OF_RTF).read_bytes(), "order.docx").text
    assert rtf.startswith("Docket No. MD17-00012\n") and rtf.count("MD17-00012") == 1
    got, want = words(rtf), words(docx)
    overlap = sum((got & want).values())
    precision, recall = overlap / sum(got.values()), overlap / sum(want.values())
    assert 2 * precision * recall / (precision + recall) >= 0.99


def test_rtf_pictures_are_cut_out_before_conversion(corpus: Path) -> None:
    rtf = (corpus / RTF).read_bytes()
    end = rtf.rfind(b"}")
    picture = b"{\\*\\shppict{\\pict\\pngblip " + b"89504e47" * 250_000 + b"}}"
    with_picture = rtf[:end] + b"{\\par Exhibit follows.}" + picture + rtf[end:]
    text = extract_bytes(with_picture, "order.rtf").text
    assert "Exhibit follows." in text and "89504e47" not in text
    assert text.replace("Exhibit follows.", "").strip() == extract_bytes(rtf, "order.rtf").text


def test_detection_by_magic_bytes(corpus: Path) -> None:
    doc, wpd, rtf = ((corpus / r).read_bytes() for r in (DOC, WPD, RTF))
    assert sniff_format("brief.doc", doc[:4096]) == "doc"
    # OLE2 beats the name; which OLE2 file it is, its stream names say.
    assert extract_bytes(doc, "brief.rtf").method == "antiword"
    assert sniff_format("brief.doc", rtf[:4096]) == "rtf"  # Word saves RTF as .doc
    assert sniff_format("brief.txt", wpd[:4096]) == "wpd"
    assert sniff_format("brief.wp5", b"WordPerfect 4.2 has no header") == "wpd"
    # An OLE2 file that is not a Word document is not sent to antiword.
    workbook = doc[:512] + "Workbook".encode("utf-16-le") + b"\0" * 512
    with pytest.raises(DocumentError) as info:
        extract_bytes(workbook, "brief.doc")
    assert info.value.code == "unsupported_format" and "Excel" in str(info.value)


@pytest.mark.parametrize(
    ("name", "code", "says"),
    [
        ("corrupt.doc", "corrupt", "not really a Word document (antiword: "),
        ("truncated.wpd", "corrupt", "truncated"),
        ("bogus.rtf", "corrupt", "binary data"),
        ("truncated.rtf", "corrupt", "never closed"),
    ],
)
def test_damaged_files_are_clear_errors(corpus: Path, name: str, code: str, says: str) -> None:
    with pytest.raises(DocumentError) as info:
        extract_bytes(_bad_files(corpus)[name], name)
    assert info.value.code == code and says in str(info.value), str(info.value)
    assert "/tmp" not in str(info.value) and "legacy-" not in str(info.value)


def test_converter_gets_a_private_dir_and_no_secrets(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The converter parses untrusted bytes: it sees no credential of the pipeline's."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:Secret-123@db/x")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-Secret-456")
    tool = fake_tool(tmp_path / "wpd2text", 'env; echo "file=$1"; ls -ld "$(dirname "$1")"')
    text = extract_bytes((corpus / WPD).read_bytes(), "x.wpd", LegacyTools(wpd2text=tool)).text
    assert "Secret" not in text and "DATABASE_URL" not in text
    assert "file=" in text and "drwx------" in text  # mode 0700: no other user reads it
    home = re.search(r"^HOME=(.*)$", text, re.MULTILINE)
    assert home is not None and "legacy-" in home.group(1)


def test_a_flooding_converter_is_stopped_at_the_output_cap(corpus: Path, tmp_path: Path) -> None:
    tool = fake_tool(tmp_path / "antiword", "yes 'a line of text'")
    tools = LegacyTools(antiword=tool, max_output=100_000, timeout_s=30)
    with pytest.raises(DocumentError) as info:
        extract_bytes((corpus / DOC).read_bytes(), "x.doc", tools)
    assert info.value.code == "too_large" and "100,000 bytes" in str(info.value)


def test_a_converter_failing_to_start_is_a_per_document_error(corpus: Path, tmp_path: Path) -> None:
    tools = LegacyTools(antiword=str(tmp_path / "uninstalled-since-start-up"))
    with pytest.raises(DocumentError) as info:
        extract_bytes((corpus / DOC).read_bytes(), "x.doc", tools)
    assert info.value.code == "tool_failed" and "antiword" in str(info.value)


# ------------------------------------------------------------------- the pipeline


@pytest.mark.parametrize("accelerated", [True, False], ids=["accelerated", "traditional"])
async def test_both_paths_extract_legacy_files_and_bad_ones_fail_alone(
    accelerated: bool,
    corpus: Path,
    tmp_path: Path,
    settings: Settings,
    pg_pool: asyncpg.Pool,
    redis: aioredis.Redis,
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for rel in EXPECTED:
        (src / Path(rel).name).write_bytes((corpus / rel).read_bytes())
    bad = _bad_files(corpus)
    for name, data in bad.items():
        (src / name).write_bytes(data)
    await migrate(pg_pool, settings.pg_schema)
    rt = make_runtime(settings, pg_pool, redis, accelerated=accelerated)
    report = await wait_for(run_batch(rt, BatchOptions("legacy", [src])), 120)

    assert report.done == len(EXPECTED) and report.needs_ocr == 0
    assert set(report.failed) == set(bad)
    for name, error in report.failed.items():
        assert error.startswith("extract: corrupt:"), (name, error)
    rows = {
        r["source_key"]: r
        for r in await pg_pool.fetch(
            "SELECT source_key, status, format, method, text FROM documents"
        )
    }
    for rel, (fmt, method, phrases) in EXPECTED.items():
        row = rows[Path(rel).name]
        assert (row["status"], row["format"], row["method"]) == ("done", fmt, method)
        assert phrases[0] in row["text"]
    mentions = await pg_pool.fetchval(
        "SELECT count(*) FROM entity_mentions m JOIN documents d ON d.id = m.document_id "
        "WHERE d.format IN ('doc', 'wpd', 'rtf')"
    )
    assert mentions > 10  # the text went on through the later stages


async def test_a_hanging_converter_times_out_and_the_batch_completes(
    corpus: Path, tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    pidfile = tmp_path / "sleeper.pid"
    # A wrapper whose child hangs: the whole process group must go, not just the shell.
    tool = fake_tool(tmp_path / "wpd2text", f'sleep 300 &\necho $! > "{pidfile}"\nwait')
    hung = settings.model_copy(update={"wpd2text_cmd": tool, "legacy_timeout_s": 1.0})
    src = tmp_path / "in"
    src.mkdir()
    for rel in (WPD, DOC):
        (src / Path(rel).name).write_bytes((corpus / rel).read_bytes())
    await migrate(pg_pool, hung.pg_schema)
    rt = make_runtime(hung, pg_pool, redis, accelerated=True)
    report = await wait_for(run_batch(rt, BatchOptions("hang", [src])), 120)

    assert report.done == 1 and list(report.failed) == [Path(WPD).name]
    error = report.failed[Path(WPD).name]
    assert error.startswith("extract: timeout:") and "LEGACY_TIMEOUT_S" in error, error
    pid = int(pidfile.read_text())
    try:
        assert await asyncio.to_thread(_gone, pid), "the converter's child outlived the timeout"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # a failed run leaves no sleeper behind


# ----------------------------------------------------------------------- start-up


def test_a_missing_converter_is_a_startup_error_naming_its_package(
    settings: Settings, tmp_path: Path
) -> None:
    missing = settings.model_copy(update={"antiword_cmd": str(tmp_path / "antiword")})
    with pytest.raises(ConfigError) as info:
        validate_startup(missing)
    message = str(info.value)
    assert message.count("\n") == 0  # one problem, one line
    assert "antiword not found" in message and "apt-get install antiword" in message
    assert "LEGACY_FORMATS=auto" in message and "LEGACY_FORMATS=off" in message
    # auto: the run starts, says what it will refuse; off: nothing is looked for.
    auto = legacy_tools(missing.model_copy(update={"legacy_formats": "auto"}))
    assert auto.antiword is None and auto.wpd2text is not None
    assert len(auto.notices) == 1 and "apt-get install antiword" in auto.notices[0]
    off = legacy_tools(missing.model_copy(update={"legacy_formats": "off"}))
    assert (off.antiword, off.wpd2text, off.notices) == (None, None, ())
    # A converter must time out before its stage does (the stage recycles the pool).
    slow = settings.model_copy(
        update={"legacy_timeout_s": 90.0, "stage_time_limits": {"extract": 60.0}}
    )
    with pytest.raises(ConfigError, match="LEGACY_TIMEOUT_S=90 must be below"):
        validate_startup(slow)


def _batch(settings: Settings, src: Path, **env: str) -> tuple[int, str]:
    proc = subprocess.run(
        [PYTHON, "-m", "accelerated.batch", "--project", "legacy", "--input", str(src)],
        cwd=ROOT,
        env={**subprocess_env(settings), "COLUMNS": "200", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=120,
    )
    return proc.returncode, proc.stdout.decode(errors="replace")


async def test_without_the_programs_on_path_batch_stops_at_start_or_runs_in_auto(
    corpus: Path, tmp_path: Path, settings: Settings, pg_pool: asyncpg.Pool
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "opinion.doc").write_bytes((corpus / DOC).read_bytes())
    (src / "order.rtf").write_bytes((corpus / RTF).read_bytes())
    examples = sorted(p for p in EXAMPLES.iterdir() if p.suffix == ".txt")[:1]
    for p in examples:
        (src / p.name).write_bytes(p.read_bytes())
    empty = tmp_path / "bin"
    empty.mkdir()

    code, out = await asyncio.to_thread(_batch, settings, src, PATH=str(empty))
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert code == EXIT_USAGE, out
    assert len(lines) == 2 and "Traceback" not in out, out  # one line per program
    assert "apt-get install antiword (needed for .doc files)" in lines[0], out
    assert "apt-get install libwpd-tools (needed for .wpd files)" in lines[1], out
    client = sync_redis.Redis.from_url(str(settings.redis_url))
    try:  # stopped before the first connection: nothing queued
        assert list(client.scan_iter(match=f"{settings.redis_prefix}*")) == []
    finally:
        client.close()

    code, out = await asyncio.to_thread(
        _batch, settings, src, PATH=str(empty), LEGACY_FORMATS="auto"
    )
    assert code == EXIT_FAILED, out
    assert "LEGACY_FORMATS=auto: antiword not found" in out, out
    status = {
        r["source_key"]: (r["status"], r["error"] or "")
        for r in await pg_pool.fetch("SELECT source_key, status, error FROM documents")
    }
    assert status["order.rtf"][0] == "done"  # RTF needs no program
    assert all(status[p.name][0] == "done" for p in examples)
    assert status["opinion.doc"][0] == "failed"
    assert "unsupported_format" in status["opinion.doc"][1]
    assert "apt-get install antiword" in status["opinion.doc"][1]
