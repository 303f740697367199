"""A real Redis Cluster for the tests and ``keyfob bench``: N masters (+ replicas) on free loopback ports.

``RedisClusterProcesses.start()`` launches ``redis-server --cluster-enabled yes`` six times (no
persistence: ``--save "" --appendonly no``), joins them with ``redis-cli --cluster create
--cluster-replicas 1`` and waits until every node reports ``cluster_state:ok``. Every server runs
in its own process group and is killed at ``stop()``. The tests use one cluster (3 + 3) for the
whole session (``tests/conftest.py``'s ``redis_cluster`` fixture, through ``tests/_redis_cluster.py``);
the bench's ``cluster`` group starts 3 masters without replicas (``keyfob._bench.cluster``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

__all__ = ["RedisClusterProcesses", "cluster_available", "cluster_missing", "flush_cluster", "free_ports"]

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def cluster_available() -> bool:
    return cluster_missing() is None


def cluster_missing() -> str | None:
    """Why a cluster cannot be started here (``None`` when it can)."""
    missing = [p for p in (REDIS_SERVER, REDIS_CLI) if not os.access(p, os.X_OK)]
    if missing:
        return f"{' and '.join(missing)} not found (apt-get install redis-server)"
    return None


def free_ports(n: int) -> list[int]:
    """``n`` free loopback ports whose cluster-bus twins (port + 10000) are free too."""
    ports: list[int] = []
    socks: list[socket.socket] = []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if port + 10000 > 65535 or port in ports:
                s.close()
                continue
            bus = socket.socket()
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                s.close()
                continue
            finally:
                bus.close()
            socks.append(s)
            ports.append(port)
    finally:
        for s in socks:
            s.close()
    return ports


def _cli(port: int, *args: str, timeout: float = 10.0) -> str:
    out = subprocess.run([REDIS_CLI, "-h", "127.0.0.1", "-p", str(port), *args],
                         capture_output=True, text=True, timeout=timeout, check=False)
    return out.stdout


@dataclass
class RedisClusterProcesses:
    """``masters`` x (1 + ``replicas``) ``redis-server`` processes forming one cluster (3 + 3 by default)."""

    masters: int = 3
    replicas: int = 1
    ports: list[int] = field(default_factory=list)
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    workdir: str = ""

    @property
    def url(self) -> str:
        """``redis+cluster://`` URL with every master as a seed node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[: self.masters])

    def _spawn(self, port: int) -> None:
        d = os.path.join(self.workdir, str(port))
        os.makedirs(d, exist_ok=True)
        self.procs[port] = subprocess.Popen(
            [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", os.path.join(d, "nodes.conf"), "--cluster-node-timeout", "1000",
             "--save", "", "--appendonly", "no", "--dir", d, "--logfile", os.path.join(d, "log"),
             "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )

    def start(self) -> RedisClusterProcesses:
        self.workdir = tempfile.mkdtemp(prefix="kf-redis-cluster-")
        self.ports = free_ports(self.masters * (1 + self.replicas))
        for port in self.ports:
            self._spawn(port)
        deadline = time.monotonic() + 20
        for port in self.ports:
            while "PONG" not in _cli(port, "ping"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on {port} did not start")
                time.sleep(0.05)
        out = subprocess.run(
            [REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            capture_output=True, text=True, timeout=60, check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {out.stdout[-2000:]}{out.stderr[-2000:]}")
        self.wait_ok()
        return self

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every running node says ``cluster_state:ok`` and agrees on the slots."""
        deadline = time.monotonic() + timeout
        while True:
            running = [p for p in self.ports if self.procs[p].poll() is None]
            states = [_cli(p, "cluster", "info") for p in running]
            if all("cluster_state:ok" in s for s in states):
                check = subprocess.run([REDIS_CLI, "--cluster", "check", f"127.0.0.1:{running[0]}"],
                                       capture_output=True, text=True, timeout=20, check=False)
                if "[OK] All 16384 slots covered" in check.stdout and "[WARNING]" not in check.stdout:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError("Redis Cluster did not become ready")
            time.sleep(0.1)

    def node_ids(self) -> dict[int, tuple[str, str]]:
        """port → (node id, role) from CLUSTER NODES."""
        running = next(p for p in self.ports if self.procs[p].poll() is None)
        out: dict[int, tuple[str, str]] = {}
        for line in _cli(running, "cluster", "nodes").splitlines():
            parts = line.split()
            if len(parts) < 3:
                continue
            port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
            role = "master" if "master" in parts[2] else "replica"
            out[port] = (parts[0], role)
        return out

    def master_ports(self) -> list[int]:
        return [p for p, (_, role) in self.node_ids().items()
                if role == "master" and self.procs[p].poll() is None]

    def reshard(self, slots: int, src_port: int, dst_port: int) -> None:
        """Move ``slots`` slots from one master to another (``redis-cli --cluster reshard``)."""
        ids = self.node_ids()
        out = subprocess.run(
            [REDIS_CLI, "--cluster", "reshard", f"127.0.0.1:{src_port}", "--cluster-from", ids[src_port][0],
             "--cluster-to", ids[dst_port][0], "--cluster-slots", str(slots), "--cluster-yes",
             "--cluster-pipeline", "100"],
            capture_output=True, text=True, timeout=120, check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"reshard failed: {out.stdout[-2000:]} {out.stderr[-2000:]}")

    def kill(self, port: int) -> None:
        """SIGKILL one node (a crash: no shutdown, no save)."""
        proc = self.procs[port]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def restart(self, port: int) -> None:
        """Start a killed node again on its port (it rejoins from its nodes.conf)."""
        self._spawn(port)

    def stop(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in self.procs.values():
            with contextlib.suppress(Exception):
                proc.wait(10)
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


async def flush_cluster(url: str) -> None:
    """FLUSHALL every master of the tests' own cluster (never a shared server)."""
    from redis.asyncio.cluster import RedisCluster

    from keyfob.stores.redis._url import parse_redis_url

    target = parse_redis_url(url)
    host, port = target.seeds[0]
    client = RedisCluster(host=host, port=port)
    try:
        await client.flushall(target_nodes=RedisCluster.PRIMARIES)
    finally:
        await client.aclose()
