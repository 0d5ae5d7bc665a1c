"""A small process supervisor: start children in order, restart any that exits, stop all on demand.

``make run`` must survive the crash of one component the way a deployment does (the compose file
restarts every service ``unless-stopped``): when the control service dies the router keeps serving
from its last snapshot and the supervisor brings the control service back, with its state, from
the same database. A child that exits is restarted after a backoff (``RestartPolicy``); the others
are never touched. ``stop()`` (Ctrl-C, SIGTERM) ends the loop and stops every child, newest first.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from llmtools.restart_policy import RestartPolicy, RestartState


@dataclass(frozen=True)
class ChildSpec:
    name: str
    module_args: tuple[str, ...]  # run as ``python -m <module_args...>``
    port: int
    env: dict[str, str]


@dataclass
class _Child:
    spec: ChildSpec
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float | None = None  # set while waiting out a backoff
    state: RestartState = field(default_factory=RestartState)


def wait_port(port: int, alive: Callable[[], bool], timeout: float = 30.0) -> bool:
    """True once 127.0.0.1:``port`` accepts a connection; False if ``alive()`` turns false or
    ``timeout`` passes first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not alive():
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


class Supervisor:
    def __init__(
        self,
        policy: RestartPolicy | None = None,
        state_file: Path | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self._policy = policy or RestartPolicy()
        self._state_file = state_file
        self._log = log or (lambda line: print(f"devstack: {line}", flush=True))
        self._children: list[_Child] = []
        self._stopping = False

    def stop(self, *_: object) -> None:
        self._stopping = True

    @property
    def stopping(self) -> bool:
        return self._stopping

    def start(self, spec: ChildSpec, wait: bool = True, timeout: float = 30.0) -> None:
        """Start ``spec`` and, with ``wait``, block until it listens on its port; a child that
        exits or never listens ends the start-up (raises SystemExit after stopping the rest)."""
        child = _Child(spec)
        self._children.append(child)
        self._spawn(child)
        if wait and not wait_port(spec.port, lambda: _alive(child) and not self._stopping, timeout):
            code = child.proc.poll() if child.proc else None
            self.shutdown()
            why = f"exited with status {code}" if code is not None else "did not listen"
            raise SystemExit(f"{spec.name} {why} on port {spec.port}")

    def run(self, poll_s: float = 0.2) -> None:
        """Watch the children until ``stop()``; restart any that exits after its backoff."""
        while not self._stopping:
            now = time.monotonic()
            for child in self._children:
                self._tend(child, now)
            time.sleep(poll_s)

    def shutdown(self, grace_s: float = 15.0) -> None:
        """SIGTERM every running child, newest first; SIGKILL what is left after ``grace_s``."""
        for child in reversed(self._children):
            if _alive(child):
                assert child.proc is not None
                child.proc.send_signal(signal.SIGTERM)
        for child in reversed(self._children):
            if child.proc is None:
                continue
            try:
                child.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
        self._write_state()

    def _tend(self, child: _Child, now: float) -> None:
        if child.restart_at is not None:
            if now >= child.restart_at:
                child.restart_at = None
                self._spawn(child)
                self._log(f"{child.spec.name} restarted (restart {child.state.restarts})")
            return
        if child.proc is None or child.proc.poll() is None:
            return
        delay = child.state.exited(self._policy, now - child.started_at)
        child.restart_at = now + delay
        self._log(
            f"{child.spec.name} exited with status {child.proc.returncode}; "
            f"restarting in {delay:.1f}s (the other components keep running)"
        )

    def _spawn(self, child: _Child) -> None:
        spec = child.spec
        self._log(f"starting {spec.name} on 127.0.0.1:{spec.port}")
        child.proc = subprocess.Popen([sys.executable, "-m", *spec.module_args], env=spec.env)
        child.started_at = time.monotonic()
        self._write_state()

    def _write_state(self) -> None:
        """Each child's pid and restart count, for operators (and the tests) to find them."""
        if self._state_file is None:
            return
        state = {
            c.spec.name: {
                "pid": c.proc.pid if _alive(c) and c.proc else None,
                "port": c.spec.port,
                "restarts": c.state.restarts,
            }
            for c in self._children
        }
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, self._state_file)


def _alive(child: _Child) -> bool:
    return child.proc is not None and child.proc.poll() is None


__all__: Sequence[str] = ["ChildSpec", "Supervisor", "wait_port"]
