"""The sim profile's own services, run here as processes, exactly as Compose would start them
but without Docker: each service's resolved command, environment and healthcheck, with only the
network rewritten (service names and 0.0.0.0 become 127.0.0.1, the fixed ports free ones, the
volume a temporary folder). Proves the commands start, the healthchecks pass, the router
authenticates to the control service with the shared token and gets its config, and a
generation reaches both simulated engines under the model names the compose file gives them."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

import pytest

from clients.llm import Provider, SyncRouterClient
from tests._wait import wait_for_sync
from tests.deploy._support import DEPLOY, HEALTHCHECK_COMMAND, HEALTHCHECK_SCRIPT, services

# In dependency order (router last).
ORDER = ("ollama-sim", "vllm-sim", "control-sim", "router")
HOSTS = ("ollama", "vllm", "control", "jaeger")
FIXED_PORTS = (11434, 8000, 50061, 50051)
STATE = "/var/lib/llmgateway"


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Rewrite:
    ports: dict[int, int]
    # Container path → local path: named volumes to a folder, bind mounts to their source.
    mounts: tuple[tuple[str, str], ...] = ()

    def __call__(self, value: str) -> str:
        for target, local in sorted(self.mounts, key=lambda m: -len(m[0])):
            value = value.replace(target, local)
        value = value.replace("0.0.0.0", "127.0.0.1")
        value = re.sub(rf"\b({'|'.join(HOSTS)})(?=:\d)", "127.0.0.1", value)
        if value.isdigit() and int(value) in self.ports:
            return str(self.ports[int(value)])
        return re.sub(
            rf"(?<=[:=])({'|'.join(map(str, self.ports))})\b",
            lambda m: str(self.ports[int(m.group(1))]),
            value,
        )


@dataclass
class Running:
    name: str
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    log_path: Path

    def tail(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-3000:]


def _script(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    assert found, f"console script {name} is not installed in this environment"
    return found


def _healthy(test: list[str], rewrite: Rewrite) -> bool:
    assert test[:2] == ["CMD", HEALTHCHECK_COMMAND]
    argv = [sys.executable, str(HEALTHCHECK_SCRIPT), "--timeout", "1", *map(rewrite, test[2:])]
    return subprocess.run(argv, capture_output=True, timeout=10, check=False).returncode == 0


@contextlib.contextmanager
def _stack(tmp_path: Path) -> Iterator[tuple[dict[str, Running], Rewrite]]:
    svcs = services("sim")
    rewrite = Rewrite(dict(zip(FIXED_PORTS, _free_ports(len(FIXED_PORTS)), strict=True)))
    running: dict[str, Running] = {}
    try:
        for name in ORDER:
            svc = svcs[name]
            workdir = tmp_path / name
            workdir.mkdir()
            mounts = tuple(
                (v["target"], str(workdir) if v["type"] == "volume" else v["source"])
                for v in svc.get("volumes") or ()
            )
            assert all(t == STATE or Path(src).is_relative_to(DEPLOY) for t, src in mounts)
            local = replace(rewrite, mounts=mounts)
            env = {"PATH": os.environ.get("PATH", ""), "HOME": str(workdir)}
            for key, value in (svc.get("environment") or {}).items():
                env[key] = local(str(value or ""))
            command = [_script(svc["command"][0]), *map(local, svc["command"][1:])]
            log_path = tmp_path / f"{name}.log"
            log = log_path.open("wb")
            proc = subprocess.Popen(command, env=env, cwd=workdir, stdout=log, stderr=log)
            running[name] = Running(name, proc, log, log_path)

            _wait_healthy(running[name], svc["healthcheck"]["test"], rewrite)
        yield running, rewrite
    finally:
        for r in reversed(running.values()):
            if r.proc.poll() is None:
                r.proc.send_signal(signal.SIGTERM)
        for r in reversed(running.values()):
            try:
                r.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                r.proc.kill()
                r.proc.wait()
            r.log.close()


def _wait_healthy(r: Running, test: list[str], rewrite: Rewrite) -> None:
    def healthy() -> bool:
        if r.proc.poll() is not None:
            pytest.fail(f"{r.name} exited:\n{r.tail()}")
        return _healthy(test, rewrite)

    try:
        wait_for_sync(healthy, 15, what=f"{r.name} to become healthy", interval=0.2)
    except AssertionError as exc:
        pytest.fail(f"{exc}:\n{r.tail()}")


@pytest.mark.timeout(90)
def test_sim_profile_services_start_connect_and_route(tmp_path: Path) -> None:
    with _stack(tmp_path) as (running, rewrite):
        target = f"127.0.0.1:{rewrite.ports[50051]}"
        with SyncRouterClient(target, timeout=20) as client:
            status = client.get_status()

            def synced() -> bool:
                nonlocal status
                status = client.get_status()
                return status.config_state == "synced" and status.config_version >= 1

            try:
                wait_for_sync(synced, 20, what="the router to sync", interval=0.2)
            except AssertionError as exc:
                pytest.fail(
                    f"{exc}: {status}\n{running['router'].tail()}\n{running['control-sim'].tail()}"
                )
            assert status.router_id == "router-1"

            via_ollama = client.generate("Why is the sky blue?", task="analysis", max_tokens=4)
            result = via_ollama.collect()
            assert result.provider is Provider.OLLAMA
            assert result.engine_model == "qwen3:8b"
            assert result.text

            pinned = client.generate("Why is the sky blue?", provider="vllm", max_tokens=4)
            on_vllm = pinned.collect()
            assert on_vllm.provider is Provider.VLLM
            assert on_vllm.engine_model == "Qwen/Qwen3-8B"

        # The router kept the config it got on its volume; the control service its database.
        assert (tmp_path / "router" / "router.snapshot").is_file()
        assert (tmp_path / "control-sim" / "control.db").is_file()
    for r in running.values():
        assert r.proc.returncode == 0, f"{r.name} exited {r.proc.returncode}:\n{r.tail()}"
