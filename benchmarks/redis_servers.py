"""Private Redis servers on loopback, for the tests and the benchmarks.

A single ``redis-server`` the caller may SIGKILL and restart on the same port
(:class:`RedisServer`), and a three-master Redis Cluster (:class:`RedisClusterServers`:
three ``redis-server --cluster-enabled yes`` on free ports, each port and its bus port
+10000 checked free, joined by ``redis-cli --cluster create``, ready once every node
reports ``cluster_state:ok``). Nothing here touches a shared server: each is our own
process in a temp dir. It lives in ``benchmarks`` because the benchmarks may not import
``tests``; the tests import it from here (``tests/faults.py``, ``tests/cluster_server.py``).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from accelerated.embedded import pid_exists as alive


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A redis-server of the test's own: start, SIGKILL, restart on the same port.

    ``appendonly`` with ``appendfsync always`` keeps every acknowledged write across a
    SIGKILL (a restart with data); without it a restart comes back empty.
    """

    def __init__(
        self, directory: Path, *, appendonly: bool = False, maxmemory: str | None = None
    ) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.appendonly = appendonly
        self.maxmemory = maxmemory
        self.proc: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []  # every process we started, to check none is left

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        args = [
            "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--save", "",
            "--daemonize", "no",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--maxmemory-policy", "noeviction",
        ]  # fmt: skip
        if self.maxmemory:
            args += ["--maxmemory", self.maxmemory]
        log = (self.dir / "redis.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.pids.append(self.proc.pid)
        deadline = time.monotonic() + timeout_s
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return self
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: see {self.dir / 'redis.log'}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL (no shutdown save): what the OOM killer or a crash does."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def left_behind(self) -> list[int]:
        return [p for p in self.pids if alive(p)]

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


NODES = 3
_BUS_OFFSET = 10_000


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports(n: int) -> list[int]:
    """``n`` ports whose cluster bus ports are free too."""
    out: list[int] = []
    while len(out) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + _BUS_OFFSET < 65536 and _bindable(port + _BUS_OFFSET) and port not in out:
            out.append(port)
    return out


def _command(port: int, *args: str, timeout: float = 5.0) -> str:
    out = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return out.stdout


class RedisClusterServers:
    def __init__(self, directory: Path) -> None:
        missing = [b for b in ("redis-server", "redis-cli") if shutil.which(b) is None]
        if missing:
            raise RuntimeError(
                f"the Redis Cluster tests need {' and '.join(missing)} on PATH "
                "(apt-get install redis-server / redis-tools)"
            )
        self.dir = directory
        self.ports = cluster_ports(NODES)
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self, timeout_s: float = 30.0) -> RedisClusterServers:
        for port in self.ports:
            node = self.dir / str(port)
            node.mkdir(parents=True, exist_ok=True)
            log = (node / "redis.log").open("ab")
            args = [
                "redis-server",
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--dir", str(node),
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "5000",
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--maxmemory-policy", "noeviction",
            ]  # fmt: skip
            self.procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT))
            log.close()
        deadline = time.monotonic() + timeout_s
        for port in self.ports:
            while "PONG" not in _command(port, "PING"):
                self._check(deadline, f"node {port} did not answer PING")
                time.sleep(0.05)
        nodes = [f"127.0.0.1:{p}" for p in self.ports]
        create = subprocess.run(
            ["redis-cli", "--cluster", "create", *nodes, "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if create.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {create.stdout[-500:]}")
        for port in self.ports:
            while "cluster_state:ok" not in _command(port, "CLUSTER", "INFO"):
                self._check(deadline, f"node {port} did not reach cluster_state:ok")
                time.sleep(0.1)
        return self

    def _check(self, deadline: float, what: str) -> None:
        dead = [p.args for p in self.procs if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            self.stop()
            raise RuntimeError(f"Redis Cluster for the tests: {what} (logs under {self.dir})")

    def crossslot_errors(self) -> int:
        """CROSSSLOT replies the nodes have sent so far (``INFO errorstats``)."""
        total = 0
        for port in self.ports:
            m = re.search(r"errorstat_CROSSSLOT:count=(\d+)", _command(port, "INFO", "errorstats"))
            total += int(m.group(1)) if m else 0
        return total

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        self.procs = []


@contextlib.contextmanager
def private_redis(kind: Literal["single", "cluster"]) -> Iterator[str]:
    """A server (or cluster) of its own for the block; its URL."""
    with tempfile.TemporaryDirectory(prefix=f"redis-{kind}-") as tmp:
        server: RedisServer | RedisClusterServers = (
            RedisServer(Path(tmp)) if kind == "single" else RedisClusterServers(Path(tmp))
        )
        server.start()
        try:
            yield server.url
        finally:
            server.stop()
