"""What ``batch`` and ``worker`` share at the CLI edge: settings, exit codes, signals.

Everything here is about the boundary between the program and the person (or the
orchestrator) running it:

* :func:`load_settings` turns pydantic's validation report into one line per bad
  variable, named as the user typed it (``ENABLE_REDIS_ACCELERATION``), with what it
  accepts; :func:`validate_startup` is the hook where every start-up check goes
  before the first connection (backend resolution joins it later).
* :func:`exit_code` maps an exception to the documented exit status and one line:
  0 all done, 1 documents failed, 2 usage or configuration, 3 infrastructure
  unavailable, 130 interrupted. None of them prints a traceback.
* :func:`run` runs a CLI's async body with SIGINT/SIGTERM handled: the first signal
  prints one line and lets in-flight work finish or go back to its stream; a second
  one exits at once.
* every line shown goes through :func:`accelerated.redact.redact`, and so do log
  records and the traceback of a genuine bug (:func:`setup_output`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

import asyncpg  # type: ignore[import-untyped]
import redis.exceptions as redis_errors
from pydantic import SecretStr, ValidationError

from accelerated.backends import Backends, resolve_backends
from accelerated.cluster import is_cluster_url, parse_cluster_url
from accelerated.errors import (
    BackendUnavailable,
    BatchFailed,
    ConfigError,
    InvalidIdError,
    PipelineError,
)
from accelerated.logs import TEXT_FORMAT, apply_log_format, log_stream
from accelerated.redact import install_log_redaction, redact
from accelerated.settings import MIN_VALUES, Settings, url_scheme

EXIT_OK = 0
EXIT_FAILED = 1  # some documents failed (each listed)
EXIT_USAGE = 2  # usage or configuration error
EXIT_UNAVAILABLE = 3  # Redis or Postgres unavailable past the limit
EXIT_BUDGET = 4  # LLM_BUDGET_TOKENS spent: some documents wait for a re-run (each listed)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell convention
EXIT_GRACE_S = 10.0  # how long tasks left over at exit may take to end once cancelled

Say = Callable[[str], None]

_NETWORK_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EHOSTUNREACH,
        errno.EHOSTDOWN,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.ETIMEDOUT,
        errno.EPIPE,
    }
)


def _stderr(line: str) -> None:
    print(redact(line), file=sys.stderr, flush=True)


# --- settings -------------------------------------------------------------------


def env_name(field_name: str) -> str:
    """The environment variable a settings field is read from (no prefix, any case)."""
    return field_name.upper()


def _accepts(field_name: str) -> str | None:
    """What a field accepts, in words, from its annotation and bounds."""
    info = Settings.model_fields.get(field_name)
    if info is None:
        return None
    ann = info.annotation
    if field_name in ("redis_url", "database_url"):
        return None  # the validator's own message says it
    args = [a for a in get_args(ann) if a is not type(None)]
    if ann is bool or bool in args:
        return "true or false (also 1/0, yes/no, on/off)"
    if get_origin(ann) is Literal:
        return "one of " + ", ".join(str(a) for a in get_args(ann))
    low = high = None
    for meta in info.metadata:
        low = getattr(meta, "ge", low)
        high = getattr(meta, "le", high)
    low = MIN_VALUES.get(field_name, low)
    base = args[0] if len(args) == 1 else ann  # int | None reads as int
    kind = "an integer" if base is int else "a number" if base is float else None
    if kind is None:
        return None
    if low is not None and high is not None:
        return f"{kind} from {_bound(low)} to {_bound(high)}"
    if low is not None:
        return f"{kind} >= {_bound(low)}"
    return kind


def _bound(value: float) -> str:
    """``178,956,970`` rather than ``1.78957e+08``; ``0.001`` as it is."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def format_validation_error(exc: ValidationError) -> list[str]:
    """One line per bad variable: name, the value given (redacted), what it accepts."""
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err.get("loc", ())]
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if not loc:
            lines.append(redact(msg))
            continue
        name = loc[0]
        var = env_name(name)
        secret = Settings.model_fields.get(name) is not None and (
            SecretStr in get_args(Settings.model_fields[name].annotation)
        )
        given = "" if secret else f"={redact(str(err.get('input', '')))!s}"
        accepts = _accepts(name)
        reason = f"accepts {accepts}" if accepts else msg
        lines.append(f"{var}{given} is not valid: {reason}")
    return lines


def load_settings(**overrides: Any) -> Settings:
    """The settings from the environment and ``.env``, or a ConfigError saying what is wrong."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError("\n".join(format_validation_error(exc))) from None


def validate_startup(settings: Settings) -> Backends:
    """Every check that must pass before the first connection or document: the settings
    that pydantic cannot judge alone (URLs that parse, schemes this build can connect
    to), then every backend the settings name, built (entity backends, OCR engines, model
    paths, tools on PATH), so a wrong setting never fails document after document.
    Returns the built backends for the runtime."""
    problems: list[str] = []
    if settings.redis_url is not None:
        problems += _url_problems("REDIS_URL", settings.redis_url)
    if settings.database_url is not None:
        problems += _url_problems("DATABASE_URL", settings.database_url)
    if problems:
        raise ConfigError("\n".join(problems))
    check_deployment(settings)
    backends = resolve_backends(settings)
    if settings.spill and settings.spill_url:
        _check_spill_bucket(settings, settings.spill_url)
    return backends


def _check_spill_bucket(settings: Settings, url: str) -> None:
    """``SPILL_URL``'s bucket reachable with these credentials (one HeadBucket): found
    at start-up, not when the first value too large for Redis is written."""
    from accelerated.spill import S3Spill

    try:
        S3Spill(settings, url).check()
    except ConfigError as exc:
        text = str(exc)
        raise ConfigError(text if text.startswith("SPILL_URL") else f"SPILL_URL: {text}") from None


def check_deployment(settings: Settings) -> None:
    """Combinations no backend can catch on its own: stage 3 is the GPU host, and a
    GPU host without a GPU would run for hours at CPU speed before anyone noticed."""
    if settings.deployment_stage == 3 and not settings.allow_cpu:
        from accelerated.devices import gpu_available

        if not gpu_available():
            raise ConfigError(
                "DEPLOYMENT_STAGE=3 (the GPU host) but no CUDA device is visible "
                "(torch.cuda.is_available() is False); run on a GPU host, choose stage 2, "
                "or set ALLOW_CPU=1 to run on the CPU"
            )


def show_config(settings: Settings, out: Say) -> int:
    """``--show-config``: the resolved settings and their sources, then the start-up
    checks that need no connection; exit 2 when they fail."""
    from accelerated.config_report import explain, render

    out(render(explain(settings)))
    try:
        check_deployment(settings)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            out(f"configuration error: {line}")
        return EXIT_USAGE
    return EXIT_OK


def _url_problems(var: str, url: str) -> list[str]:
    if is_cluster_url(url):
        try:
            parse_cluster_url(url)
        except ValueError as exc:
            return [f"{var}={redact(url)} is not a valid cluster URL: {exc}"]
        return []
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a port that is not a number
    except ValueError as exc:
        return [f"{var}={redact(url)} is not a valid URL: {exc}"]
    if url_scheme(url) != "unix" and not parts.hostname and "host=" not in parts.query:
        if url_scheme(url) in ("postgresql", "postgres"):
            return []  # libpq-style: no host means the local socket, as psql does
        return [f"{var}={redact(url)} names no host"]
    return []


# --- exit codes -------------------------------------------------------------------


def _is_network_oserror(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror):
        return True
    return isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS


def exit_code(exc: BaseException) -> tuple[int, str] | None:
    """The exit status and the one line for an error the CLI expects; None for a bug."""
    if isinstance(exc, BatchFailed):
        return EXIT_FAILED, str(exc)
    if isinstance(exc, ConfigError | InvalidIdError):
        # One line per problem (load_settings reports every bad variable at once).
        return EXIT_USAGE, "\n".join(f"configuration error: {p}" for p in str(exc).splitlines())
    if isinstance(exc, BackendUnavailable):
        return EXIT_UNAVAILABLE, f"unavailable: {exc}"
    if isinstance(exc, redis_errors.AuthenticationError):
        return (
            EXIT_USAGE,
            f"configuration error: Redis refused the credentials in REDIS_URL ({exc})",
        )
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        return EXIT_USAGE, f"configuration error: Postgres refused DATABASE_URL ({exc})"
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return EXIT_USAGE, f"configuration error: DATABASE_URL names no such database ({exc})"
    if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError):
        return EXIT_UNAVAILABLE, f"unavailable: Redis: {exc}"
    if isinstance(exc, redis_errors.RedisClusterException) and "cannot be connected" in str(exc):
        return EXIT_UNAVAILABLE, f"unavailable: Redis Cluster: {exc}"
    if isinstance(
        exc,
        asyncpg.PostgresConnectionError  # also: the connection does not exist (any more)
        | asyncpg.exceptions.OperatorInterventionError  # shut down, terminated, starting up
        | asyncpg.TooManyConnectionsError,
    ):
        return EXIT_UNAVAILABLE, f"unavailable: Postgres: {type(exc).__name__}: {exc}"
    if _is_network_oserror(exc):
        return EXIT_UNAVAILABLE, f"unavailable: {type(exc).__name__}: {exc}"
    if isinstance(exc, PipelineError):
        return EXIT_FAILED, f"error: {exc}"
    return None


# --- output -------------------------------------------------------------------------


def _redacting_excepthook(
    kind: type[BaseException], value: BaseException, tb: TracebackType | None
) -> None:
    """A genuine bug still shows its traceback, with every DSN in it masked."""
    sys.stderr.write(redact("".join(traceback.format_exception(kind, value, tb))))


def setup_output(verbose: bool, *, info_loggers: tuple[str, ...] = ()) -> None:
    """Logging at WARNING (INFO with ``-v``; ``info_loggers`` always at INFO), redacted.

    Also the excepthook, so even an unexpected traceback never shows a password.
    ``LOG_FORMAT`` is applied once the settings are read (:func:`apply_settings_logging`):
    until then (a bad setting's one line included) lines are text.
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format=TEXT_FORMAT,
        stream=log_stream(),  # type: ignore[arg-type]
    )
    for name in info_loggers:
        logging.getLogger(name).setLevel(logging.INFO)
    logging.captureWarnings(True)  # warnings go through the same redacting handlers
    install_log_redaction()
    sys.excepthook = _redacting_excepthook


def apply_settings_logging(settings: Settings) -> None:
    """The root handlers in ``settings.log_format`` (text or json)."""
    apply_log_format(settings.log_format)


# --- running --------------------------------------------------------------------------


@dataclass
class CliContext:
    """Handed to a CLI body: the stop event, and whether the body drains by itself.

    Until ``graceful`` is set (by a body that watches ``stop``, as the worker does
    around its engine), the first signal cancels the body: its ``finally`` blocks and
    context managers run, so in-flight work is given back or finished there.
    """

    stop: asyncio.Event = field(default_factory=asyncio.Event)
    graceful: bool = False
    interrupted: bool = False


def run(
    body: Callable[[CliContext], Coroutine[Any, Any, int]],
    *,
    say: Say = _stderr,
    error: Say | None = None,
    first_signal: str = "finishing the work in flight; Ctrl-C again quits at once",
) -> int:
    """Run ``body`` to its exit status; every expected error becomes one line and a code.

    ``say`` shows the signal lines, ``error`` (default: ``say``) the error line. A
    bug (an exception no exit code covers) prints its traceback, redacted, and gives 1.
    """
    runner = asyncio.Runner()
    ctx = CliContext()
    try:
        code = runner.run(_supervise(ctx, body, say, first_signal))
    except KeyboardInterrupt:
        # Not from our handler: a process-pool child hit by the same Ctrl-C (a terminal
        # signals the whole process group) hands its KeyboardInterrupt back as a
        # task's result, and asyncio re-raises that out of the loop.
        if not ctx.interrupted:
            say("interrupted")
        code = EXIT_INTERRUPTED
    except Exception as exc:
        mapped = exit_code(exc)
        if mapped is None:  # a bug: its traceback, passwords masked, then exit 1
            _redacting_excepthook(type(exc), exc, exc.__traceback__)
            code = EXIT_FAILED
        else:
            code, line = mapped
            (error or say)(redact(line))
    _shutdown(runner, say, code)
    return code


def _shutdown(runner: asyncio.Runner, say: Say, code: int) -> None:
    """Close the loop, giving the tasks still running ``EXIT_GRACE_S`` to end.

    ``asyncio.run`` would wait for ever; a task that ignores its cancellation (or a
    pool future that never resolves) must not keep a finished CLI alive.
    """
    try:
        loop = runner.get_loop()
    except RuntimeError:  # closed already
        return
    deadline = time.monotonic() + EXIT_GRACE_S
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    while tasks and (remaining := deadline - time.monotonic()) > 0:
        with contextlib.suppress(KeyboardInterrupt):  # another child's, see run()
            loop.run_until_complete(asyncio.wait(tasks, timeout=remaining))
        tasks = [t for t in tasks if not t.done()]
    if tasks:
        _exit_now(say, code, tasks)
    with contextlib.suppress(KeyboardInterrupt):
        runner.close()


def _exit_now(say: Say, code: int, tasks: list[asyncio.Task[Any]]) -> None:
    names = ", ".join(sorted({getattr(t.get_coro(), "__qualname__", "?") for t in tasks}))
    say(f"{len(tasks)} task(s) did not stop within {EXIT_GRACE_S:g}s ({names[:200]}): exiting")
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


async def _supervise(
    ctx: CliContext,
    body: Callable[[CliContext], Coroutine[Any, Any, int]],
    say: Say,
    first_signal: str,
) -> int:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    main = asyncio.create_task(body(ctx))

    def on_signal(signum: int) -> None:
        if ctx.interrupted:
            say("interrupted again: exiting now")
            with contextlib.suppress(Exception):
                sys.stdout.flush()
            os._exit(EXIT_INTERRUPTED)
        ctx.interrupted = True
        say(f"{'interrupted' if signum == signal.SIGINT else 'SIGTERM'}: {first_signal}")
        ctx.stop.set()
        if not ctx.graceful:
            main.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        try:
            code = await main
        except asyncio.CancelledError:
            if not (ctx.interrupted and task.cancelling() == 0):
                raise
            code = EXIT_INTERRUPTED
        # (An error propagates: run() prints its line first, then _shutdown reaps.)
        await _reap_leftovers(say, code)
        return code
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _reap_leftovers(say: Say, code: int) -> None:
    """Cancel the tasks the body left behind, and wait for them a bounded time.

    ``asyncio.run`` would wait for ever for a task that does not end when cancelled
    (a retry loop that treats the cancellation as one more error, a future of a broken
    process pool): the process then hangs after its work is over. Past the grace
    period we say so and exit with the code we already have.
    """
    me = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
    if not left:
        return
    for t in left:
        t.cancel()
    _done, pending = await asyncio.wait(left, timeout=EXIT_GRACE_S)
    if pending:
        _exit_now(say, code, list(pending))
