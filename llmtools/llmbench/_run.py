"""Drive a target: a fixed number of requests, or a closed loop for a time window."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llmtools.llmbench._prompts import Prompt
from llmtools.llmbench._targets import Sample, Target


@dataclass(slots=True)
class Batch:
    """What one fixed-count run produced: every sample and the wall time it took."""

    samples: list[Sample]
    wall_s: float


async def run_requests(
    target: Target,
    prompts: Sequence[Prompt],
    runs: int,
    concurrency: int,
    on_done: Callable[[Sample], None] | None = None,
) -> Batch:
    """``runs`` requests, at most ``concurrency`` in flight, prompts taken in turn."""
    samples: list[Sample] = []
    next_seq = 0

    async def worker() -> None:
        nonlocal next_seq
        while next_seq < runs:
            seq = next_seq
            next_seq += 1
            sample = await target.run(prompts[seq % len(prompts)], seq)
            samples.append(sample)
            if on_done is not None:
                on_done(sample)

    t0 = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(max(1, min(concurrency, runs))):
            tg.create_task(worker())
    return Batch(samples, time.perf_counter() - t0)


@dataclass(slots=True)
class Window:
    """A closed-loop run: samples of every request, and the measuring window ``[w0, w1]``."""

    samples: list[Sample]
    w0: float
    w1: float

    @property
    def seconds(self) -> float:
        return self.w1 - self.w0

    def in_window(self) -> list[Sample]:
        """Requests that started inside the window (their latency is the window's)."""
        return [s for s in self.samples if self.w0 <= s.t_start < self.w1]

    def tokens_in_window(self) -> float:
        """Completion tokens received inside the window, each request's tokens spread evenly
        between its first token and its end (so long requests at the edges count in part)."""
        total = 0.0
        for s in self.samples:
            if s.t_first is None or not s.completion_tokens:
                continue
            span = s.t_end - s.t_first
            if span <= 0:
                total += s.completion_tokens if self.w0 <= s.t_end < self.w1 else 0
                continue
            overlap = min(s.t_end, self.w1) - max(s.t_first, self.w0)
            if overlap > 0:
                total += s.completion_tokens * overlap / span
        return total


async def run_window(
    target: Target,
    prompts: Sequence[Prompt],
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    drain_s: float = 30.0,
) -> Window:
    """``concurrency`` streams, each starting a new request when the last ends, for
    ``warmup_s + duration_s``; then no new requests, and those in flight get ``drain_s`` to end
    (the rest are cancelled and not counted)."""
    samples: list[Sample] = []
    start = time.perf_counter()
    w0 = start + warmup_s
    w1 = w0 + duration_s
    seq = 0

    async def stream() -> None:
        nonlocal seq
        while time.perf_counter() < w1:
            seq += 1
            samples.append(await target.run(prompts[seq % len(prompts)], seq))

    tasks = [asyncio.create_task(stream()) for _ in range(concurrency)]
    try:
        await asyncio.wait(tasks, timeout=warmup_s + duration_s + drain_s)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
    return Window(samples, w0, w1)
