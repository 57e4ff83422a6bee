"""Run an external converter (antiword, wpd2text) on one file, bounded every way.

The converters are C programs fed hostile bytes, so each run gets: the file in a
private temporary directory (mode 0700, removed afterwards) under a fixed name, no
shell, stdin closed, a minimal environment (no ``DATABASE_URL`` or API key reaches a
program parsing untrusted input), a wall-clock limit and a cap on what it may print.
The program runs in a session of its own so that on a timeout or an over-long output
the whole process group is killed, including any child a wrapper script started.

This runs where the extractor runs: in a CPU-pool process or thread, never on the
event loop. Everything here is synchronous and uses no threads (``selectors`` reads
both pipes), so it is safe in either.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from accelerated.errors import DocumentError

STDERR_KEEP: Final = 4096  # bytes of stderr kept for the error message
_READ_BYTES: Final = 65536
_REAP_S: Final = 5.0  # after a kill, how long to wait for the exit status


@dataclass(frozen=True)
class ToolOutput:
    returncode: int
    stdout: bytes
    stderr: str  # the last STDERR_KEEP bytes, decoded leniently, temp paths removed


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


def _collect(
    proc: subprocess.Popen[bytes], deadline: float, max_output: int, what: str, timeout_s: float
) -> tuple[bytes, bytes]:
    """Read both pipes to EOF; kill the group past the deadline or the output cap."""
    assert proc.stdout is not None and proc.stderr is not None
    out, err = bytearray(), bytearray()
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                _kill_group(proc)
                raise DocumentError(
                    f"{what} did not finish within {timeout_s:g} s (LEGACY_TIMEOUT_S); "
                    "the file may be damaged or unusually large.",
                    code="timeout",
                )
            for key, _ in sel.select(left):
                chunk = os.read(key.fd, _READ_BYTES)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buf: bytearray = key.data
                buf += chunk
                if buf is err and len(err) > STDERR_KEEP:
                    del err[: len(err) - STDERR_KEEP]
                if len(out) > max_output:
                    _kill_group(proc)
                    raise DocumentError(
                        f"{what} printed more than {max_output:,} bytes of text; "
                        "refused (raise MAX_TEXT_CHARS for very long documents).",
                        code="too_large",
                    )
    return bytes(out), bytes(err)


def run_tool(
    argv_before_file: list[str],
    data: bytes,
    *,
    suffix: str,
    timeout_s: float,
    max_output: int,
    what: str,
) -> ToolOutput:
    """Run ``argv_before_file + [file]`` on ``data`` written to a private temp file.

    ``what`` names the program in messages ("antiword"). A timeout or an output over
    ``max_output`` bytes is a ``DocumentError`` (``timeout`` / ``too_large``); any exit
    status is returned for the caller to judge, with stderr.
    """
    with tempfile.TemporaryDirectory(prefix="legacy-") as tmp:
        path = Path(tmp) / f"input{suffix}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        env = {"PATH": os.defpath, "HOME": tmp, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        deadline = time.monotonic() + timeout_s
        try:
            proc = subprocess.Popen(
                [*argv_before_file, str(path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=tmp,
                env=env,
                close_fds=True,
                start_new_session=True,
            )
        except OSError as exc:  # removed or made non-executable since start-up
            raise DocumentError(
                f"{what} could not be started ({exc.strerror or exc}); "
                "check that it is still installed.",
                code="tool_failed",
            ) from None
        try:
            out, err = _collect(proc, deadline, max_output, what, timeout_s)
            try:
                returncode = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:  # closed its pipes but kept running
                _kill_group(proc)
                raise DocumentError(
                    f"{what} did not finish within {timeout_s:g} s (LEGACY_TIMEOUT_S).",
                    code="timeout",
                ) from None
        finally:
            if proc.returncode is None:
                _kill_group(proc)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=_REAP_S)
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        stderr = err.decode("utf-8", "replace").replace(str(path), "the file").replace(tmp, "")
        return ToolOutput(returncode, out, stderr.strip())
