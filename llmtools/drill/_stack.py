"""The stack ``make demo`` drills: both simulators, the control service and a router, each its
own process (as ``make run`` starts them), on free ports, with the fast windows the drill needs
(rollback evaluated every 100 ms, routers reporting every 100 ms). Logs go to files."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from llmtools.drill._results import DrillTargets

# Meaning-aware simulators, for the drill's meaning step (docs/simulator.md, "Meaning").
MEANING = ("--answer-mode", "concepts", "--embedding-mode", "concepts")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class _Child:
    name: str
    proc: subprocess.Popen[bytes]
    port: int


def _wait_port(child: _Child, log: Path, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if child.proc.poll() is not None:
            raise SystemExit(f"{child.name} exited with status {child.proc.returncode}; see {log}")
        try:
            with socket.create_connection(("127.0.0.1", child.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{child.name} did not listen on port {child.port} within {timeout:.0f}s")


@contextlib.contextmanager
def process_stack(workdir: Path | None = None) -> Iterator[tuple[DrillTargets, Path]]:
    """Starts the stack; yields its addresses and the folder holding logs and state."""
    root = workdir or Path(tempfile.mkdtemp(prefix="llmgateway-drill-"))
    root.mkdir(parents=True, exist_ok=True)
    ollama_port, vllm_port, control_port, router_port = (free_port() for _ in range(4))
    ollama_url, vllm_url = f"http://127.0.0.1:{ollama_port}", f"http://127.0.0.1:{vllm_port}"
    env = dict(os.environ)
    for key in ("OLLAMA_BASE_URL", "VLLM_BASE_URL"):
        env.pop(key, None)
    children: list[_Child] = []

    def spawn(name: str, args: Sequence[str], port: int, extra: dict[str, str]) -> _Child:
        log = root / f"{name.replace(' ', '-')}.log"
        with log.open("wb") as f:
            proc = subprocess.Popen(
                [sys.executable, "-m", *args],
                env={**env, **extra},
                stdout=f,
                stderr=subprocess.STDOUT,
            )
        child = _Child(name, proc, port)
        children.append(child)
        _wait_port(child, log)
        return child

    try:
        sim = "llmsim.main"
        spawn(
            "ollama simulator",
            [sim, "--flavor", "ollama", "--port", str(ollama_port), "--num-parallel", "16",
             "--ttft-ms", "30", "--itl-ms", "3", *MEANING],
            ollama_port,
            {},
        )  # fmt: skip
        spawn(
            "vllm simulator",
            [sim, "--flavor", "vllm", "--port", str(vllm_port), "--ttft-ms", "10",
             "--itl-ms", "2", *MEANING],
            vllm_port,
            {},
        )  # fmt: skip
        spawn(
            "control service",
            ["control_service.main", "--port", str(control_port), "--db", str(root / "control.db")],
            control_port,
            {
                "OLLAMA_BASE_URL": ollama_url,
                "VLLM_BASE_URL": vllm_url,
                "LLM_CONTROL_EVALUATION_INTERVAL_S": "0.1",
                "LLM_CONTROL_STATS_SLOT_S": "0.5",
                "LLM_CONTROL_PROBE_TIMEOUT_S": "0.5",
                "LLM_CONTROL_PROBE_CACHE_S": "0",
                "LLM_CONTROL_GONOGO_WINDOW_S": "10",
                "LLM_CONTROL_GONOGO_MIN_REQUESTS": "20",
                "LLM_CONTROL_GRACE_PERIOD_S": "0.5",
                # The drill's own throwaway stack on loopback (docs/security.md).
                "LLM_CONTROL_INSECURE": "true",
            },
        )
        spawn(
            "router",
            ["router_service.main", "--port", str(router_port)],
            router_port,
            {
                "OLLAMA_BASE_URL": ollama_url,
                "VLLM_BASE_URL": vllm_url,
                "LLM_ROUTER_CONTROL_ADDRESS": f"127.0.0.1:{control_port}",
                "LLM_ROUTER_ROUTER_ID": "drill-router-1",
                "LLM_ROUTER_CONFIG_CACHE_PATH": str(root / "router.snapshot"),
                "LLM_ROUTER_STATS_REPORT_INTERVAL_S": "0.1",
                "LLM_ROUTER_RETRY_BASE_DELAY_S": "0.001",
                "LLM_ROUTER_RETRY_MAX_DELAY_S": "0.002",
                "LLM_ROUTER_READ_TIMEOUT_S": "2",
                "LLM_ROUTER_CONNECT_TIMEOUT_S": "0.5",
                # Out of the way: the drill shows the control plane's rollback, not the breaker.
                "LLM_ROUTER_BREAKER_FAILURE_THRESHOLD": "1000",
                "LLM_ROUTER_GRACE_PERIOD_S": "0.5",
            },
        )
        yield (
            DrillTargets(
                routers=[f"127.0.0.1:{router_port}"],
                control=f"127.0.0.1:{control_port}",
                ollama_url=ollama_url,
                vllm_url=vllm_url,
            ),
            root,
        )
    finally:
        for child in reversed(children):
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        for child in reversed(children):
            try:
                child.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.proc.kill()
