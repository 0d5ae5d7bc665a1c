"""Control-service replicas as real processes (the ``llm-control`` console script of this
environment) on one etcd store, on free loopback ports: for the HA tests and the failover
benchmark. Each replica can be killed (SIGKILL), paused (SIGSTOP), resumed and started again."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

_READY = re.compile(r"llm-control ready on (\S+)")
START_TIMEOUT_S = 30.0


def llm_control() -> str:
    """The console script next to this interpreter (the worktree's venv)."""
    script = Path(sys.executable).with_name("llm-control")
    if not script.exists():
        raise FileNotFoundError(f"{script} is missing: pip install -e . in this environment")
    return str(script)


@dataclass
class ControlProc:
    replica_id: str
    popen: subprocess.Popen[str]
    address: str = ""
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        # The pipe is closed at EOF (the process ended): left open, it is a ResourceWarning.
        with self.popen.stdout:
            for line in self.popen.stdout:
                self.lines.append(line.rstrip("\n"))
                m = _READY.search(line)
                if m and not self.ready.is_set():
                    self.address = m.group(1)
                    self.ready.set()


@dataclass
class ControlReplicas:
    """``size`` replicas on ``store_url`` under ``prefix``; ``env`` adds LLM_CONTROL_* settings
    (e.g. a 2 s lease and a fast rollback loop). A context manager that always kills them."""

    store_url: str
    prefix: str
    root: Path
    size: int = 3
    lease_ttl_s: int = 2
    env: dict[str, str] = field(default_factory=dict)
    procs: list[ControlProc] = field(default_factory=list)

    def _environ(self, index: int, port: int) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "LLM_CONTROL_STORE": self.store_url,
                "LLM_CONTROL_ETCD_PREFIX": self.prefix,
                "LLM_CONTROL_LEADER_LEASE_TTL_S": str(self.lease_ttl_s),
                "LLM_CONTROL_REPLICA_ID": f"c{index}",
                "LLM_CONTROL_HOST": "127.0.0.1",
                "LLM_CONTROL_PORT": str(port),
                "LLM_CONTROL_GPU_BACKEND": "off",
                "LLM_CONTROL_GRACE_PERIOD_S": "0.5",
                "LLM_CONTROL_DB_PATH": str(self.root / f"unused-{index}.db"),
                "OTEL_SDK_DISABLED": "true",
                # Throwaway replicas on loopback (tests, benchmarks): calls without a
                # credential pass, as for the test suite's in-process servers (docs/security.md).
                "LLM_CONTROL_INSECURE": "true",
            }
        )
        env.update(self.env)
        return env

    def start(self, index: int, port: int = 0) -> ControlProc:
        """Start replica ``index`` (again); ``port`` 0 picks a free one, a replica restarted
        on its old port is found again by clients that list it."""
        popen = subprocess.Popen(
            [llm_control(), "--log-level", "INFO"],
            env=self._environ(index, port),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        proc = ControlProc(f"c{index}", popen)
        threading.Thread(target=proc._pump, daemon=True).start()
        if index < len(self.procs):
            self.procs[index] = proc
        else:
            self.procs.append(proc)
        return proc

    def wait_ready(self, proc: ControlProc, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not proc.ready.wait(0.1):
            if not proc.alive or time.monotonic() > deadline:
                tail = "\n".join(proc.lines[-30:])
                what = "exited" if not proc.alive else f"not ready in {timeout_s:g}s"
                raise RuntimeError(f"{proc.replica_id} {what}:\n{tail}")

    def start_all(self) -> ControlReplicas:
        for i in range(self.size):
            self.start(i)
        for p in self.procs:
            self.wait_ready(p)
        return self

    @property
    def addresses(self) -> list[str]:
        return [p.address for p in self.procs]

    @property
    def target(self) -> str:
        """Every replica, comma-separated (LLMCTL_CONTROL, LLM_ROUTER_CONTROL_ADDRESS)."""
        return ",".join(self.addresses)

    def index_of(self, address: str) -> int:
        return self.addresses.index(address)

    def restart(self, index: int) -> ControlProc:
        """Start a stopped replica again on the port it had."""
        port = int(self.procs[index].address.rpartition(":")[2])
        proc = self.start(index, port)
        self.wait_ready(proc)
        return proc

    def kill(self, index: int) -> float:
        """SIGKILL; returns the wall time it was sent."""
        at = time.time()
        self.procs[index].popen.send_signal(signal.SIGKILL)
        self.procs[index].popen.wait(10)
        return at

    def pause(self, index: int) -> float:
        at = time.time()
        os.kill(self.procs[index].pid, signal.SIGSTOP)
        return at

    def resume(self, index: int) -> float:
        at = time.time()
        os.kill(self.procs[index].pid, signal.SIGCONT)
        return at

    def log(self, index: int) -> str:
        return "\n".join(self.procs[index].lines)

    def stop(self) -> None:
        for p in self.procs:
            if p.alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGCONT)  # a paused process cannot act on SIGTERM
                p.popen.terminate()
        for p in self.procs:
            try:
                p.popen.wait(10)
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait(5)

    def __enter__(self) -> ControlReplicas:
        try:
            return self.start_all()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
