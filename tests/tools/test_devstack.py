"""``make run`` under failure: the supervisor restarts what exits and nothing else stops.

The whole stack runs as real processes on free ports in a temporary run directory, exactly as
``make run`` starts it (``python -m llmtools.devstack``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from clients.gen.llmgateway.v1 import control_pb2, control_pb2_grpc
from clients.llm import RouterError, SyncRouterClient
from tests._wait import wait_for_sync

pytestmark = pytest.mark.timeout(120)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    wait_for_sync(predicate, timeout, what=what)


@dataclass
class Stack:
    proc: subprocess.Popen[bytes]
    run_dir: Path
    router: str
    control: str
    log: Path

    def children(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.run_dir / "devstack.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return data

    @property
    def auth(self) -> tuple[tuple[str, str], ...]:
        """The operator token make run generated (the file llmctl reads by default)."""
        token = (self.run_dir / "llmctl.token").read_text().strip()
        return (("authorization", f"Bearer {token}"),)

    def pid(self, name: str) -> int | None:
        entry = self.children().get(name)
        return None if entry is None else entry["pid"]


@contextlib.contextmanager
def _devstack(tmp_path: Path) -> Iterator[Stack]:
    ollama, vllm, control, router = _free_ports(4)
    env = {
        **os.environ,
        "SIM_OLLAMA_PORT": str(ollama),
        "SIM_VLLM_PORT": str(vllm),
        "LLM_CONTROL_PORT": str(control),
        "LLM_ROUTER_PORT": str(router),
        "LLM_DEVSTACK_RUN_DIR": str(tmp_path / "run"),
    }
    for var in ("OLLAMA_BASE_URL", "VLLM_BASE_URL", "LLM_ROUTER_CONTROL_ADDRESS"):
        env.pop(var, None)
    log = tmp_path / "devstack.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llmtools.devstack"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    stack = Stack(proc, tmp_path / "run", f"127.0.0.1:{router}", f"127.0.0.1:{control}", log)
    try:
        _wait(lambda: b"devstack: ready" in log.read_bytes(), 60, "make run to be ready")
        yield stack
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _control_version(stack: Stack) -> int | None:
    with grpc.insecure_channel(stack.control) as channel:
        try:
            state = control_pb2_grpc.ControlServiceStub(channel).GetState(
                control_pb2.GetStateRequest(), timeout=2, metadata=stack.auth
            )
        except grpc.RpcError:
            return None
        return int(state.snapshot.version)


@dataclass
class Load:
    """memOS asking through the router in a loop, counting what it gets."""

    address: str
    ok: int = 0
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with SyncRouterClient(self.address, timeout=10) as client:
            while not self.stop.is_set():
                try:
                    text = "".join(client.generate(prompt="ping", task="analysis").text())
                except RouterError as err:
                    self.errors.append(f"{type(err).__name__}: {err}")
                else:
                    assert text
                    self.ok += 1


def test_kill_9_of_the_control_service_leaves_generate_answering(tmp_path: Path) -> None:
    with _devstack(tmp_path) as stack:
        with grpc.insecure_channel(stack.control) as channel:
            control_pb2_grpc.ControlServiceStub(channel).Pause(
                control_pb2.PauseRequest(
                    meta=control_pb2.ChangeMeta(actor="test", reason="state to keep")
                ),
                timeout=5,
                metadata=stack.auth,
            )
        before = _control_version(stack)
        assert before is not None
        old_pid = stack.pid("control service")
        assert old_pid is not None

        load = Load(stack.router)
        worker = threading.Thread(target=load.run)
        worker.start()
        try:
            _wait(lambda: load.ok >= 3, 20, "the first answers")
            os.kill(old_pid, signal.SIGKILL)
            answered_at_kill = load.ok
            _wait(
                lambda: stack.pid("control service") not in (None, old_pid),
                20,
                "the control service to be restarted",
            )
            _wait(lambda: _control_version(stack) is not None, 20, "control to answer")
            _wait(lambda: load.ok >= answered_at_kill + 5, 20, "answers after the restart")
        finally:
            load.stop.set()
            worker.join(timeout=15)
        assert load.errors == []  # not one call failed while control was down
        assert _control_version(stack) == before  # its state came back with it
        with grpc.insecure_channel(stack.control) as channel:
            state = control_pb2_grpc.ControlServiceStub(channel).GetState(
                control_pb2.GetStateRequest(), timeout=5, metadata=stack.auth
            )
        assert state.snapshot.migration.status_reason == "state to keep"
        assert stack.children()["control service"]["restarts"] == 1
        assert stack.children()["router"]["restarts"] == 0  # the router was never touched
        log = stack.log.read_text()
        assert "control service exited with status -9; restarting in" in log


def test_a_crashed_router_is_restarted_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    with _devstack(tmp_path) as stack:
        old_pid = stack.pid("router")
        assert old_pid is not None
        os.kill(old_pid, signal.SIGKILL)
        _wait(lambda: stack.pid("router") not in (None, old_pid), 20, "the router to restart")

        def answers() -> bool:
            with SyncRouterClient(stack.router, timeout=5) as client:
                try:
                    return bool("".join(client.generate(prompt="hi", task="analysis").text()))
                except RouterError:
                    return False

        _wait(answers, 30, "the restarted router to answer")
        pids = [entry["pid"] for entry in stack.children().values()]
        assert len(pids) == 4
        assert all(pids)

        stack.proc.send_signal(signal.SIGINT)
        assert stack.proc.wait(timeout=30) == 0
        for pid in pids:  # every child is gone, not orphaned
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
