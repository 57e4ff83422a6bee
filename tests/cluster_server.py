"""A three-master Redis Cluster of the tests' own, on loopback.

Three ``redis-server --cluster-enabled yes`` processes in a temp dir on free ports
(each port and its cluster bus port, +10000, checked free), joined by
``redis-cli --cluster create``, ready once every node reports ``cluster_state:ok``.
No persistence; stopped (and waited for) at the end. Missing binaries fail the
session's cluster tests with one clear line instead of a hang or a skip.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

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
