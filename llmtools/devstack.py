"""``make run``: the whole stack on one machine.

Starts the Ollama and vLLM simulators (unless ``OLLAMA_BASE_URL`` / ``VLLM_BASE_URL`` point at
real engines) and the router, each as its own process, waits until each answers, and stops
them all on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

SIM_OLLAMA_PORT = int(os.environ.get("SIM_OLLAMA_PORT", "11434"))
SIM_VLLM_PORT = int(os.environ.get("SIM_VLLM_PORT", "8000"))
ROUTER_PORT = int(os.environ.get("LLM_ROUTER_PORT", "50051"))
CONTROL_PORT = int(os.environ.get("LLM_CONTROL_PORT", "50061"))


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    port: int


def _wait_port(child: Child, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if child.proc.poll() is not None:
            raise SystemExit(f"{child.name} exited with status {child.proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", child.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{child.name} did not listen on port {child.port} within {timeout:.0f}s")


def _spawn(name: str, args: Sequence[str], port: int, env: dict[str, str]) -> Child:
    print(f"devstack: starting {name} on 127.0.0.1:{port}", flush=True)
    return Child(name, subprocess.Popen([sys.executable, "-m", *args], env=env), port)


def main() -> None:
    env = dict(os.environ)
    children: list[Child] = []
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        if "OLLAMA_BASE_URL" not in env:
            children.append(
                _spawn(
                    "ollama simulator",
                    [
                        "llmsim.main",
                        "--flavor",
                        "ollama",
                        "--port",
                        str(SIM_OLLAMA_PORT),
                    ],
                    SIM_OLLAMA_PORT,
                    env,
                )
            )
            env["OLLAMA_BASE_URL"] = f"http://127.0.0.1:{SIM_OLLAMA_PORT}"
        if "VLLM_BASE_URL" not in env:
            children.append(
                _spawn(
                    "vllm simulator",
                    ["llmsim.main", "--flavor", "vllm", "--port", str(SIM_VLLM_PORT)],
                    SIM_VLLM_PORT,
                    env,
                )
            )
            env["VLLM_BASE_URL"] = f"http://127.0.0.1:{SIM_VLLM_PORT}"
        control = _spawn(
            "control service",
            ["control_service.main", "--port", str(CONTROL_PORT), "--db", ".run/control.db"],
            CONTROL_PORT,
            env,
        )
        children.append(control)
        for child in children:
            _wait_port(child)
        env.setdefault("LLM_ROUTER_CONTROL_ADDRESS", f"127.0.0.1:{CONTROL_PORT}")
        env.setdefault("LLM_ROUTER_ROUTER_ID", "router-1")
        router = _spawn(
            "router", ["router_service.main", "--port", str(ROUTER_PORT)], ROUTER_PORT, env
        )
        children.append(router)
        _wait_port(router)
        print(
            "devstack: ready.\n"
            f"  ollama: {env['OLLAMA_BASE_URL']}\n"
            f"  vllm:   {env['VLLM_BASE_URL']}\n"
            f"  router: 127.0.0.1:{ROUTER_PORT} (gRPC)\n"
            f"  control: 127.0.0.1:{CONTROL_PORT} (gRPC; state in .run/control.db)\n"
            '  try:    .venv/bin/llmctl generate "Why is the sky blue?"\n'
            "          .venv/bin/llmctl status\n"
            "  Ctrl-C stops everything.",
            flush=True,
        )
        while not stopping:
            for child in children:
                if child.proc.poll() is not None:
                    print(f"devstack: {child.name} exited ({child.proc.returncode})", flush=True)
                    stopping = True
            time.sleep(0.2)
    finally:
        for child in reversed(children):
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        for child in reversed(children):
            try:
                child.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.proc.kill()


if __name__ == "__main__":
    main()
