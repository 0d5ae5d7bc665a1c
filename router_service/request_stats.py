"""Per-(provider, task) request outcomes, drained into reports for the control service.

Histograms use fixed buckets so the control service can merge them across routers by adding
counts (a fleet p95 from merged buckets, never an average of per-router p95s).
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

from router_service.errors import ErrorKind
from router_service.values import ProviderName, TaskName

# Milliseconds; dense around the seed's 5 s p95 threshold and its 10 s no-go line.
LATENCY_BOUNDS_MS: tuple[float, ...] = (
    25, 50, 100, 250, 500, 1000, 2000, 3000, 4000, 5000, 6000, 7500, 10000, 15000, 20000,
    30000, 60000, 120000,
)  # fmt: skip


@dataclass
class Histogram:
    bounds: tuple[float, ...] = LATENCY_BOUNDS_MS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_MS) + 1))
    total: float = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value


@dataclass
class Aggregate:
    requests: int = 0
    errors: int = 0
    errors_by_kind: Counter[ErrorKind] = field(default_factory=Counter)
    timeouts: int = 0
    ttft_ms: Histogram = field(default_factory=Histogram)
    total_ms: Histogram = field(default_factory=Histogram)
    prompt_tokens: int = 0
    completion_tokens: int = 0


Key = tuple[ProviderName, TaskName, bool]  # (provider, task, shadow)


class RequestStatsRecorder:
    """Accumulates outcomes between two drains. Single-threaded (the event loop's)."""

    def __init__(self) -> None:
        self._current: dict[Key, Aggregate] = {}
        self._consecutive_timeouts: Counter[ProviderName] = Counter()

    def record(
        self,
        provider: ProviderName,
        task: TaskName,
        error: ErrorKind | None,
        ttft_ms: float | None,
        total_ms: float,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        shadow: bool = False,
    ) -> None:
        agg = self._current.get((provider, task, shadow))
        if agg is None:
            agg = self._current[(provider, task, shadow)] = Aggregate()
        agg.requests += 1
        agg.total_ms.observe(total_ms)
        if ttft_ms is not None:
            agg.ttft_ms.observe(ttft_ms)
        agg.prompt_tokens += prompt_tokens
        agg.completion_tokens += completion_tokens
        if error is None:
            if not shadow:
                self._consecutive_timeouts[provider] = 0
            return
        agg.errors += 1
        agg.errors_by_kind[error] += 1
        if error is ErrorKind.LLM_TIMEOUT:
            agg.timeouts += 1
            if not shadow:
                self._consecutive_timeouts[provider] += 1

    def consecutive_timeouts(self, provider: ProviderName) -> int:
        return self._consecutive_timeouts[provider]

    def drain(self) -> dict[Key, Aggregate]:
        """The outcomes since the last drain; the recorder starts empty again."""
        out, self._current = self._current, {}
        return out
