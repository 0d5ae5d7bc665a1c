"""A real etcd cluster of ``etcd`` processes on loopback, for tests and benchmarks.

Each member gets its own data dir under ``root``, a client and a peer port found free on
127.0.0.1, and the one shared ``--initial-cluster`` string. Heartbeat and election timeouts are
etcd's defaults (100 ms / 1000 ms), so the smallest lease etcd grants is 2 s
(``3/2 x election timeout``, rounded up): tests use 2 s leases and stay quick.

A member can be killed (SIGKILL) and started again on the same data dir, which rejoins the
cluster as the same member; that is how tests lose and restore one member.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

HEALTH_TIMEOUT_S = 20.0


class EtcdMissing(RuntimeError):
    """The ``etcd`` binary is not installed (Debian: ``apt-get install etcd-server``)."""


def etcd_binary() -> str:
    found = shutil.which("etcd")
    if found is None:
        raise EtcdMissing(
            "the etcd binary is missing: install Debian's etcd-server "
            "(apt-get install etcd-server; `make test` does this when run as root)"
        )
    return found


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (all held open while choosing, so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class EtcdCluster:
    """``size`` members under ``root``; a context manager that always kills every member."""

    root: Path
    size: int = 3
    members: list[Member] = field(default_factory=list)

    def __post_init__(self) -> None:
        ports = _free_ports(2 * self.size)
        for i in range(self.size):
            name = f"m{i}"
            self.members.append(
                Member(
                    name,
                    ports[2 * i],
                    ports[2 * i + 1],
                    self.root / name,
                    self.root / f"{name}.log",
                )
            )

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    @property
    def url(self) -> str:
        """The ``LLM_CONTROL_STORE`` value naming every member."""
        return "etcd://" + ",".join(self.endpoints)

    def _initial_cluster(self) -> str:
        return ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in self.members)

    def _spawn(self, m: Member) -> None:
        binary = etcd_binary()
        m.data_dir.parent.mkdir(parents=True, exist_ok=True)
        log = m.log_path.open("ab")
        try:
            m.proc = subprocess.Popen(
                [
                    binary,
                    f"--name={m.name}",
                    f"--data-dir={m.data_dir}",
                    f"--listen-client-urls=http://127.0.0.1:{m.client_port}",
                    f"--advertise-client-urls=http://127.0.0.1:{m.client_port}",
                    f"--listen-peer-urls=http://127.0.0.1:{m.peer_port}",
                    f"--initial-advertise-peer-urls=http://127.0.0.1:{m.peer_port}",
                    f"--initial-cluster={self._initial_cluster()}",
                    "--initial-cluster-state=new",
                    "--initial-cluster-token=llmgateway-test",
                    # No metrics listener and no v2 API: only what the store uses.
                    "--enable-v2=false",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()

    def start(self) -> EtcdCluster:
        for m in self.members:
            self._spawn(m)
        self.wait_healthy()
        return self

    def healthy(self, m: Member) -> bool:
        """The member answers /health with a leader (it is part of a working quorum)."""
        try:
            with urllib.request.urlopen(f"http://{m.endpoint}/health", timeout=1) as resp:
                return resp.status == 200 and b'"health":"true"' in resp.read()
        except (OSError, urllib.error.URLError):
            return False

    def wait_healthy(self, timeout_s: float = HEALTH_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            dead = [m.name for m in self.members if m.proc is not None and not m.alive]
            if dead:
                raise RuntimeError(f"etcd members exited: {dead}; see {self.root}/*.log")
            if all(self.healthy(m) for m in self.members if m.alive):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"etcd cluster not healthy in {timeout_s:g}s; {self.root}")
            time.sleep(0.05)

    def kill(self, index: int) -> None:
        """SIGKILL one member (its data dir stays, so :meth:`restart` brings it back)."""
        m = self.members[index]
        if m.proc is not None and m.alive:
            m.proc.send_signal(signal.SIGKILL)
            m.proc.wait()

    def restart(self, index: int) -> None:
        m = self.members[index]
        if not m.alive:
            self._spawn(m)
        self.wait_healthy()

    def stop(self) -> None:
        for m in self.members:
            if m.proc is not None and m.alive:
                m.proc.send_signal(signal.SIGKILL)
            if m.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    m.proc.wait(timeout=5)

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
