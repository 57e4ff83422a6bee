"""Log lines: text or JSON (``LOG_FORMAT``), and the one line per finished document.

``LOG_FORMAT=text`` (the default) keeps ``time level logger: message``;
``LOG_FORMAT=json`` writes one JSON object per line for log shippers::

    {"ts": "2026-12-01T18:53:36.123Z", "level": "INFO", "logger": "accelerated.documents",
     "message": "document done: /data/a.pdf (412 ms)", "document_id": "…", "project": "p",
     "source": "/data/a.pdf", "status": "done", "stage": "relate", "elapsed_ms": 412.3}

Every field a record carries beyond logging's own (``extra=``) becomes a key; the
traceback, when there is one, is ``exc``. The root handlers' redaction filter
(:mod:`accelerated.redact`) has masked the message and traceback before the formatter
runs; the formatter masks the extra fields itself (an ``error`` field holds a driver's
message, which may echo a DSN).

:func:`document_finished` is the line per document that reaches a terminal status
(``done``, ``needs_ocr``, ``budget_exhausted``, ``failed``), logged at INFO on the
``accelerated.documents`` logger by whichever component makes the status final: the
write-behind writer once the rows are committed (accelerated path), the traditional
handoff at the document's last transition. The worker shows that logger at INFO; the
batch command (whose terminal holds a progress bar) shows it with ``-v``.
"""

from __future__ import annotations

import json
import logging
import sys
import uuid
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from accelerated.redact import redact

DOCUMENTS: Final = "accelerated.documents"
doc_log = logging.getLogger(DOCUMENTS)

# Attributes every LogRecord has: anything else on a record came from ``extra=``.
_STANDARD: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)


def _field(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(value if isinstance(value, str) else str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside values are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in out:
                out[key] = _field(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = redact(record.exc_text)
        if record.stack_info:
            out["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(out, ensure_ascii=False, default=str)


TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def apply_log_format(log_format: str, handlers: list[logging.Handler] | None = None) -> None:
    """Give ``handlers`` (the root's) the formatter of ``LOG_FORMAT``; the filters on
    them (redaction) stay as they are."""
    for handler in logging.getLogger().handlers if handlers is None else handlers:
        handler.setFormatter(formatter(log_format))


class FollowStderr:
    """A stream that writes to whatever ``sys.stderr`` is at the moment.

    A progress bar on a terminal (rich's ``Live``) swaps ``sys.stderr`` for a proxy
    that prints above the bar; a handler holding the original stream would scribble
    over the bar instead. Used only when stderr is a terminal (when it is a file, the
    lines must go to the file, not to the bar's terminal)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def log_stream() -> TextIO | FollowStderr:
    return FollowStderr() if sys.stderr.isatty() else sys.stderr


def document_finished(
    *,
    document_id: uuid.UUID | str,
    project: str,
    source: str,
    status: str,
    stage: str | None = None,
    error: str | None = None,
    elapsed_ms: float | None = None,
) -> None:
    """The INFO line of a document that reached ``status`` (a terminal one)."""
    if not doc_log.isEnabledFor(logging.INFO):
        return  # batch without -v: not even the message is built
    text = f"document {status}: {source or document_id}"
    if stage and status != "done":
        text += f" at {stage}"
    if error:
        text += f": {error}"
    if elapsed_ms is not None:
        text += f" ({elapsed_ms:.0f} ms)"
    fields: dict[str, Any] = {
        "document_id": str(document_id),
        "project": project,
        "source": source,
        "status": status,
    }
    if stage:
        fields["stage"] = stage
    if error:
        fields["error"] = error
    if elapsed_ms is not None:
        fields["elapsed_ms"] = round(elapsed_ms, 1)
    doc_log.info("%s", text, extra=fields)


def elapsed_since(intake_at: bytes | str | float | None, now: float) -> float | None:
    """Milliseconds from a state hash's ``intake_at`` (epoch seconds) to ``now``."""
    if isinstance(intake_at, bytes):
        intake_at = intake_at.decode()
    if intake_at is None or intake_at == "":
        return None
    try:
        start = float(intake_at)
    except ValueError:
        return None
    return max(0.0, (now - start) * 1000)
