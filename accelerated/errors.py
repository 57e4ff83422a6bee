"""One root error class; driver errors are translated at the boundary.

Modelled on dramatiq: callers catch ``PipelineError`` (or a subclass) and never need
to import redis-py or asyncpg exception types.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(PipelineError):
    """Settings are missing or inconsistent."""


class InvalidIdError(PipelineError, ValueError):
    """A project or document id failed validation; no key or row is built from it."""


class DocumentError(PipelineError):
    """The document itself is bad (corrupt, encrypted, empty, unsupported).

    Retrying cannot help, so the engine records the error against the document at
    once instead of redelivering the message.
    """

    def __init__(self, message: str, *, code: str = "bad_input") -> None:
        super().__init__(message)
        self.code = code

    def __str__(self) -> str:  # the code makes summaries greppable
        return f"{self.code}: {self.args[0]}"

    def __reduce__(self) -> tuple[object, ...]:
        # Raised inside process-pool workers: keep the code across pickling.
        return (_document_error, (self.args[0], self.code))


def _document_error(message: str, code: str) -> DocumentError:
    return DocumentError(message, code=code)


class CodecError(PipelineError):
    """A stored value is corrupt, from an unknown codec version or over a size cap."""


class BackendUnavailable(PipelineError):
    """Redis or Postgres cannot be reached (translated from the driver's error)."""


class BatchFailed(PipelineError):
    """Drain mode finished but some documents failed (as arq's burst mode raises)."""

    def __init__(self, failed: dict[str, str]) -> None:
        super().__init__(f"{len(failed)} document(s) failed")
        self.failed = failed
