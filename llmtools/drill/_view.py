"""The drill's live terminal view: a compact block redrawn about once a second on a terminal
(plain ANSI), one status line every few seconds otherwise. Narration printed through
:meth:`View.say` goes above the block."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from clients.cli.api import phase_label, status_label
from clients.llm import ControlClient, RouterError
from llmtools.drill._load import Load, engines, ttft_p95

_CLEAR_BLOCK = "\x1b[{n}F\x1b[J"  # cursor up n lines to column 0, clear to the end of screen


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}ms"


@dataclass
class View:
    out: TextIO
    load: Load
    control: ControlClient
    live: bool = False
    interval_s: float = 1.0
    line_every_s: float = 3.0
    recent_s: float = 10.0
    phase: str = "?"
    weight: float = 0.0
    status: str = "?"
    last_decision: str = "-"
    _drawn: int = 0
    _started: float = field(default_factory=time.monotonic)
    _task: asyncio.Task[None] | None = None
    _last_line: float = 0.0

    def say(self, *lines: str) -> None:
        self._erase()
        for line in lines:
            self.out.write(line + "\n")
        self._draw()
        self.out.flush()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._erase()
        self.out.flush()

    async def _loop(self) -> None:
        while True:
            await self.poll()
            if self.live:
                self._erase()
                self._draw()
                self.out.flush()
            elif time.monotonic() - self._last_line >= self.line_every_s:
                self._last_line = time.monotonic()
                self.out.write("  | " + " | ".join(self.block()[:3]) + "\n")
                self.out.flush()
            await asyncio.sleep(self.interval_s)

    async def poll(self) -> None:
        try:
            state = await self.control.get_state()
            events = await self.control.list_events(page_size=1)
        except RouterError as err:
            self.status = f"control unreachable ({err})"
            return
        m = state.snapshot.migration
        self.phase = phase_label(m.phase).upper()
        self.weight = state.snapshot.vllm_traffic_percent
        self.status = status_label(m.status)
        if events.events:
            e = events.events[0]
            self.last_decision = f"v{e.version} {e.action} by {e.actor}: {e.reason}"[:110]

    def block(self) -> list[str]:
        now = time.monotonic()
        recent = self.load.since(now - self.recent_s)
        step = self.load.of_step(self.load.step)
        per_engine = engines(step)
        errors = self.load.errors
        return [
            f"{now - self._started:6.1f}s {self.phase} vLLM {self.weight:.0f}% ({self.status})"
            f" step={self.load.step}",
            f"calls this step: ollama {per_engine['ollama']} vllm {per_engine['vllm']}"
            f" fallback {sum(1 for c in step if c.fallback)} | user-visible errors {errors}",
            f"TTFT p95 last {self.recent_s:.0f}s: ollama {_ms(ttft_p95(recent, 'ollama'))}"
            f" vllm {_ms(ttft_p95(recent, 'vllm'))}"
            f" | queries {self.load.queries_started}",
            f"last decision: {self.last_decision}",
        ]

    def _draw(self) -> None:
        if not self.live:
            return
        lines: Sequence[str] = ["-" * 72, *self.block(), "-" * 72]
        for line in lines:
            self.out.write(line + "\n")
        self._drawn = len(lines)

    def _erase(self) -> None:
        if self.live and self._drawn:
            self.out.write(_CLEAR_BLOCK.format(n=self._drawn))
            self._drawn = 0
