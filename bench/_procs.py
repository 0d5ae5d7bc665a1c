"""Subprocesses for the benchmarks: simulators, routers and LiteLLM's proxy, pinned to cores,
on loopback, always stopped (``Procs`` is a context manager), plus /proc readings."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
_SIM_RE = re.compile(r"listening on (http://\S+)")
_ROUTER_RE = re.compile(r"llm-router ready on (\S+)")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[str]
    address: str
    lines: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pin_self(cores: set[int]) -> None:
    if hasattr(os, "sched_setaffinity") and cores:
        os.sched_setaffinity(0, cores)


def cores() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def _pinned(cmd: list[str], core: int | None) -> list[str]:
    if core is not None and shutil.which("taskset"):
        return ["taskset", "-c", str(core), *cmd]
    return cmd


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LLM_ROUTER_") and k not in ("OLLAMA_BASE_URL", "VLLM_BASE_URL")
    }
    env.update(extra)
    return env


class Procs:
    """Starts processes and stops every one of them on exit, whatever happened."""

    def __init__(self) -> None:
        self._procs: list[Proc] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="llmbench-")

    def __enter__(self) -> Procs:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()
        self._tmp.cleanup()

    @property
    def tmp(self) -> Path:
        return Path(self._tmp.name)

    def _start(
        self,
        name: str,
        cmd: list[str],
        pattern: re.Pattern[str],
        env: dict[str, str],
        timeout_s: float,
        cwd: Path = ROOT,
    ) -> Proc:
        popen = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a Ctrl-C here must not reach them before we stop them
        )
        proc = Proc(name, popen, "")
        self._procs.append(proc)
        found = threading.Event()

        def pump(out: IO[str]) -> None:
            # Keep reading so a chatty child never blocks on a full pipe.
            for line in out:
                if len(proc.lines) < 2000:
                    proc.lines.append(line.rstrip())
                if not found.is_set() and (m := pattern.search(line)):
                    proc.address = m.group(1)
                    found.set()

        assert popen.stdout is not None
        threading.Thread(target=pump, args=(popen.stdout,), daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while not found.wait(0.1):
            if popen.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(proc.lines[-20:])
                raise RuntimeError(f"{name} did not start ({' '.join(cmd)}):\n{tail}")
        return proc

    def simulator(self, flavor: str, core: int | None, args: Sequence[str] = ()) -> Proc:
        cmd = [sys.executable, "-m", "llmsim.main", "--flavor", flavor]
        cmd += ["--port", "0", *args]
        return self._start(f"llm-sim {flavor}", _pinned(cmd, core), _SIM_RE, _clean_env({}), 30)

    def router(
        self,
        core: int | None,
        *,
        ollama_url: str = "http://127.0.0.1:9",
        vllm_url: str = "http://127.0.0.1:9",
        env: dict[str, str] | None = None,
        tree: Path = ROOT,
    ) -> Proc:
        """A router process; ``tree`` is the checkout it runs from (``python -m`` imports
        from the working directory first), so another revision can run beside this one."""
        cmd = [sys.executable, "-m", "router_service.main", "--port", "0"]
        cmd += ["--log-level", "WARNING"]
        extra = {"OLLAMA_BASE_URL": ollama_url, "VLLM_BASE_URL": vllm_url, **(env or {})}
        return self._start(
            f"llm-router ({tree})", _pinned(cmd, core), _ROUTER_RE, _clean_env(extra), 30, tree
        )

    def litellm(self, core: int | None, models: dict[str, str], litellm_bin: str) -> Proc:
        """LiteLLM's proxy, one worker, no database, no callbacks, access log off, one
        ``hosted_vllm`` model per entry of ``models`` (name → the simulator's base URL)."""
        port = free_port()
        key = "sk-" + secrets.token_hex(16)
        cfg = self.tmp / "litellm.yaml"
        entries = "".join(
            f"  - model_name: {name}\n"
            f"    litellm_params:\n"
            f"      model: hosted_vllm/Qwen/Qwen3-8B\n"
            f"      api_base: {url}/v1\n"
            f"      api_key: none\n"
            for name, url in models.items()
        )
        cfg.write_text(
            f"model_list:\n{entries}"
            "litellm_settings:\n  telemetry: false\n  drop_params: true\n"
            f"general_settings:\n  master_key: {key}\n"
        )
        log_cfg = self.tmp / "litellm-log.json"
        # Access log off (one line per request is CPU we would be charging to LiteLLM);
        # uvicorn's start-up line kept, it tells us the proxy is up.
        log_cfg.write_text(
            '{"version": 1, "disable_existing_loggers": false,'
            ' "handlers": {"err": {"class": "logging.StreamHandler",'
            ' "stream": "ext://sys.stderr"}},'
            ' "loggers": {"uvicorn.error": {"handlers": ["err"], "level": "INFO",'
            ' "propagate": false},'
            ' "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": false}}}'
        )
        cmd = [litellm_bin, "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--num_workers", "1", "--log_config", str(log_cfg)]
        env = _clean_env(
            {
                # Offline: the bundled cost map instead of fetching it; no telemetry.
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_LOG": "ERROR",
                "LITELLM_MASTER_KEY": key,
                "NO_DOCKER": "1",
            }
        )
        pattern = re.compile(r"Uvicorn running on (http://\S+)")
        proc = self._start("litellm", _pinned(cmd, core), pattern, env, 120, cwd=self.tmp)
        proc.address = f"http://127.0.0.1:{port}|{key}"
        return proc

    def stop(self, proc: Proc, timeout_s: float = 10.0) -> None:
        if proc.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.popen.send_signal(signal.SIGTERM)
            try:
                proc.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()
        if proc in self._procs:
            self._procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self._procs)):
            self.stop(proc)

    def __iter__(self) -> Iterator[Proc]:
        return iter(list(self._procs))
