"""Word 97-2003 (.doc) by antiword and WordPerfect (.wpd) by wpd2text, as Free Law
Project's doctor extracts them (doctor runs ``antiword`` and libwpd's converters).

Both are external programs (Debian packages ``antiword`` and ``libwpd-tools``), so
which ones this run may use is decided once at start-up (:func:`legacy_tools`, called
by ``backends.resolve_backends``): with ``LEGACY_FORMATS=on`` (the default) a missing
program stops the run before any document is read, naming the package to install;
``auto`` uses the programs found and refuses the files that need a missing one;
``off`` never runs them. The resulting :class:`LegacyTools` is a small picklable
record that travels with each extract call into the CPU pool. Each run is bounded
(time, output size; see :mod:`accelerated.extractors.external`), and a program's
complaint becomes a per-document error with a code, never a traceback.
"""

from __future__ import annotations

import shutil
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from accelerated.errors import ConfigError, DocumentError
from accelerated.extractors.base import ExtractResult, single_page
from accelerated.extractors.external import ToolOutput, run_tool

if TYPE_CHECKING:
    from accelerated.settings import Settings

# For each program: the format it reads, the Debian package, the file kind it serves.
PROGRAMS: Final[dict[str, tuple[str, str]]] = {
    "antiword": ("antiword", ".doc"),
    "wpd2text": ("libwpd-tools", ".wpd"),
}
DEFAULT_TIMEOUT_S: Final = 60.0
DEFAULT_MAX_OUTPUT: Final = 4 * 20_000_000  # 4 bytes per character of MAX_TEXT_CHARS

_WPD_MAGIC: Final = b"\xffWPC"
_WP6_MAJOR: Final = 2  # WordPerfect 6 and later keep the file's length in the header
# antiword: -m UTF-8.txt prints UTF-8 whatever the locale; -w 0 puts a paragraph on one
# line (no hard wrap at 76 columns splitting names and citations across lines).
_ANTIWORD_ARGS: Final = ("-m", "UTF-8.txt", "-w", "0")
_ENCRYPTED_HINTS: Final = ("encrypted", "password")
_CORRUPT_HINTS: Final = ("not a word document", "unsupported file format", "file exception")


@dataclass(frozen=True)
class LegacyTools:
    """Which converters this run uses (absolute paths; None: not available) and how
    each run is bounded. Built at start-up; picklable, so it crosses the CPU pool."""

    antiword: str | None = None
    wpd2text: str | None = None
    mode: str = "off"  # the LEGACY_FORMATS value, for the refusal message
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_output: int = DEFAULT_MAX_OUTPUT
    notices: tuple[str, ...] = ()  # start-up lines for the user (LEGACY_FORMATS=auto)

    def program(self, name: str) -> str | None:
        return self.antiword if name == "antiword" else self.wpd2text


def _missing(name: str, cmd: str) -> str:
    package, ext = PROGRAMS[name]
    return (
        f"{name} not found ({name.upper()}_CMD={cmd}): apt-get install {package} (needed for "
        f"{ext} files); or set LEGACY_FORMATS=auto to refuse {ext} files instead, "
        "or LEGACY_FORMATS=off"
    )


def legacy_tools(settings: Settings) -> LegacyTools:
    """Find the converters the settings ask for; in ``on`` mode a missing one is a
    :class:`ConfigError` naming its Debian package (the start-up check)."""
    from accelerated.pipeline import stage  # late: the registry imports the backends

    found: dict[str, str | None] = {"antiword": None, "wpd2text": None}
    problems: list[str] = []
    limit = settings.stage_time_limits.get("extract", stage("extract").time_limit_s)
    if settings.legacy_formats != "off" and settings.legacy_timeout_s >= limit:
        # The stage's limit recycles the CPU pool; a converter in a session of its own
        # would outlive the pool child that started it, so it must time out first.
        raise ConfigError(
            f"LEGACY_TIMEOUT_S={settings.legacy_timeout_s:g} must be below the extract "
            f"stage's time limit ({limit:g} s; STAGE_TIME_LIMITS)"
        )
    if settings.legacy_formats != "off":
        for name, cmd in (
            ("antiword", settings.antiword_cmd),
            ("wpd2text", settings.wpd2text_cmd),
        ):
            found[name] = shutil.which(cmd)
            if found[name] is None:
                problems.append(_missing(name, cmd))
    if problems and settings.legacy_formats == "on":
        raise ConfigError("\n".join(problems))
    return LegacyTools(
        antiword=found["antiword"],
        wpd2text=found["wpd2text"],
        mode=settings.legacy_formats,
        timeout_s=settings.legacy_timeout_s,
        max_output=4 * settings.max_text_chars,
        notices=tuple(
            f"LEGACY_FORMATS=auto: {p.split(';')[0]}; those files will fail as unsupported_format"
            for p in problems
        ),
    )


def discover() -> LegacyTools:
    """The converters on ``PATH`` with default bounds: what ``extract_bytes`` uses when
    its caller passes none (tests, tools); a run passes the start-up record instead."""
    return LegacyTools(
        antiword=shutil.which("antiword"), wpd2text=shutil.which("wpd2text"), mode="auto"
    )


def refuse(name: str, tools: LegacyTools, what: str) -> DocumentError:
    package, ext = PROGRAMS[name]
    if tools.mode == "off":
        why = f"LEGACY_FORMATS=off: {ext} files are not extracted"
    else:
        why = f"{name} is not installed (apt-get install {package})"
    return DocumentError(
        f"The file is {what}; {why}. Install it, or convert the file to PDF or DOCX.",
        code="unsupported_format",
    )


def _failure(out: ToolOutput, name: str, label: str) -> DocumentError | None:
    """The error a converter's exit status and complaint mean, or None (success)."""
    said = out.stderr.lower()
    if any(h in said for h in _ENCRYPTED_HINTS):
        return DocumentError(
            f"The {label} is password-protected; remove the password and re-submit it.",
            code="encrypted",
        )
    if out.returncode == 0 and not any(h in said for h in _CORRUPT_HINTS):
        return None
    detail = out.stderr.splitlines()[-1][:200] if out.stderr else f"exit status {out.returncode}"
    return DocumentError(
        f"The {label} is damaged or is not really a {label} ({name}: {detail}).",
        code="corrupt",
    )


def _convert(data: bytes, tools: LegacyTools, name: str, args: tuple[str, ...]) -> str:
    program = tools.program(name)
    assert program is not None
    out = run_tool(
        [program, *args],
        data,
        suffix=PROGRAMS[name][1],
        timeout_s=tools.timeout_s,
        max_output=tools.max_output,
        what=name,
    )
    label = "Word document" if name == "antiword" else "WordPerfect document"
    error = _failure(out, name, label)
    if error is not None:
        raise error
    return out.stdout.decode("utf-8", "replace")


def extract_doc(data: bytes, tools: LegacyTools) -> ExtractResult:
    if tools.antiword is None:
        raise refuse("antiword", tools, "a Word 97-2003 document (.doc)")
    text = _convert(data, tools, "antiword", _ANTIWORD_ARGS)
    return single_page("doc", "antiword", text)


def check_wpd_header(data: bytes) -> None:
    """Refuse a WordPerfect file cut short before wpd2text sees it: libwpd prints what
    it could read and exits 0, so a truncated filing would pass as a short one. The
    header says where the text starts and (WordPerfect 6+) how long the file is."""
    if not data.startswith(_WPD_MAGIC):
        return  # WordPerfect 4.2 and older have no header: wpd2text judges them
    if len(data) < 16:
        raise DocumentError("The WordPerfect document is truncated (no header).", code="corrupt")
    (text_at,) = struct.unpack_from("<I", data, 4)
    declared = struct.unpack_from("<I", data, 20)[0] if len(data) >= 24 else 0
    if data[10] != _WP6_MAJOR:
        declared = 0
    if text_at > len(data) or declared > len(data):
        size = max(text_at, declared)
        raise DocumentError(
            "The WordPerfect document is truncated or damaged: its header promises "
            f"at least {size:,} bytes, the file has {len(data):,}.",
            code="corrupt",
        )


def extract_wpd(data: bytes, tools: LegacyTools) -> ExtractResult:
    if tools.wpd2text is None:
        raise refuse("wpd2text", tools, "a WordPerfect document (.wpd)")
    check_wpd_header(data)
    text = _convert(data, tools, "wpd2text", ())
    return single_page("wpd", "wpd2text", text)
