"""One root error class; driver errors are translated at one boundary.

Callers catch ``PipelineError`` (or a subclass) and never import redis-py, asyncpg,
aioboto3 or openai exception types: :func:`accelerated.boundary.map_driver_errors`
turns those into the classes below, as httpx's ``map_httpcore_exceptions`` does.

The hierarchy, and what the engine and the CLIs do with each::

    PipelineError                    root of every error this package raises on purpose
    ├── ConfigError                  settings, backends, usage: exit 2 at start-up
    ├── InvalidIdError               a project or document id failed validation
    ├── DocumentError                the document itself is bad: recorded at once, never retried
    ├── CodecError                   a stored value is corrupt or from an unknown version
    │   └── ValueTooLarge            over a size cap: deterministic, never retried
    ├── StageTimeout                 a stage ran past its time limit: retried, then dead-lettered
    ├── BackendError                 a server or service failed a call
    │   ├── BackendUnavailable       cannot be reached (refused, reset, timed out): retried
    │   │   ├── BackendFull          Redis is at ``maxmemory``: backed off, retried
    │   │   └── StreamsMissing       Redis restarted empty: groups recreated, work re-queued
    │   └── BackendRejected          the server refused this call or its data: not retried
    │       ├── BudgetExhausted      LLM_BUDGET_TOKENS spent: the document ends budget_exhausted
    │       └── InvalidOutput        a model's reply does not match its schema (after a repair)
    └── BatchFailed                  drain mode finished but some documents failed (exit 1)

``retryable`` says whether running the same attempt again can help; the engine retries
only those (with backoff, up to ``MAX_DELIVERIES``) and fails the rest at once.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Root of every error this package raises on purpose."""

    retryable: bool = False


class ConfigError(PipelineError):
    """Settings are missing or inconsistent, or a named backend cannot be built."""


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


class ValueTooLarge(CodecError):
    """A value is over a size cap: the same input gives the same size, so never retried."""


class StageTimeout(PipelineError):
    """A stage attempt ran past its time limit (a hung parser, a stuck network call)."""

    retryable = True


class BackendError(PipelineError):
    """A server or service (Redis, Postgres, S3, an LLM API) failed a call."""

    def __init__(self, message: str, *, backend: str = "") -> None:
        super().__init__(message)
        self.backend = backend


class BackendUnavailable(BackendError):
    """Cannot be reached right now (refused, reset, timed out): worth retrying."""

    retryable = True


class BackendFull(BackendUnavailable):
    """Redis refused a write at ``maxmemory``: back off until memory frees."""


class StreamsMissing(BackendUnavailable):
    """Redis lost the stage streams or groups (restarted without persistence)."""


class BackendRejected(BackendError):
    """The server refused this call or its data (a bad row, a wrong type): not retried."""


class BudgetExhausted(BackendRejected):
    """The run's LLM token budget (``LLM_BUDGET_TOKENS``) is spent: no new call is made.

    Not retried within the run; a re-run with a larger budget picks the work up."""


class InvalidOutput(BackendRejected):
    """A model's output does not match its schema, after the one repair attempt.

    Stages catch this class (not the LLM package's subclass) when an invalid answer
    should be recorded rather than fail the document (structured extraction)."""


class BatchFailed(PipelineError):
    """Drain mode finished but some documents failed (as arq's burst mode raises)."""

    def __init__(self, failed: dict[str, str]) -> None:
        super().__init__(f"{len(failed)} document(s) failed")
        self.failed = failed


def is_retryable(exc: BaseException) -> bool:
    """Whether another attempt may succeed: unknown errors (bugs, library faults) are
    given the benefit of the doubt, since a retry is bounded by ``MAX_DELIVERIES``."""
    if isinstance(exc, PipelineError):
        return exc.retryable
    return not isinstance(exc, MemoryError | RecursionError)
