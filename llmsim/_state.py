"""Live, shared state of one simulator: counters and the log of recent requests."""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from llmsim._config import SimConfig, Timing
from llmsim._engine import ModelEngine
from llmsim._faults import FaultPlan, Faults, plan_for

__all__ = ["RequestLog", "SimContext", "SimStats"]


class SimStats:
    """Live counters. ``running``/``waiting`` are read from the engines at access time.

    * requests_total: inference requests received (generate/chat/completions/embeddings)
    * aborted_total: requests whose client went away before the answer was complete
    * rejected_total: requests refused because the queue was full (Ollama 503)
    * errors_total: injected error responses (error_rate / ``X-Sim-Fault: error``)
    * tokens_total: output tokens sent
    """

    __slots__ = (
        "_engines",
        "aborted_total",
        "errors_total",
        "rejected_total",
        "requests_total",
        "tokens_total",
    )

    def __init__(self, engines: Iterable[ModelEngine]) -> None:
        self._engines = list(engines)
        self.requests_total = 0
        self.aborted_total = 0
        self.rejected_total = 0
        self.errors_total = 0
        self.tokens_total = 0

    @property
    def running(self) -> int:
        return sum(e.admission.running for e in self._engines)

    @property
    def waiting(self) -> int:
        return sum(e.admission.waiting for e in self._engines)

    def reset(self) -> None:
        self.requests_total = 0
        self.aborted_total = 0
        self.rejected_total = 0
        self.errors_total = 0
        self.tokens_total = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests_total": self.requests_total,
            "aborted_total": self.aborted_total,
            "rejected_total": self.rejected_total,
            "errors_total": self.errors_total,
            "tokens_total": self.tokens_total,
            "running": self.running,
            "waiting": self.waiting,
            "models": {
                e.spec.name: {"running": e.admission.running, "waiting": e.admission.waiting}
                for e in self._engines
            },
        }


# Body fields that carry prompt text: never recorded.
_CONTENT_FIELDS = frozenset(
    {"messages", "prompt", "input", "system", "suffix", "images", "context", "template"}
)


class RequestLog:
    """The last N requests as the router sent them (no prompt text)."""

    __slots__ = ("_entries",)

    def __init__(self, size: int) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=size)

    def record(
        self, method: str, path: str, headers: Any, body: dict[str, Any] | None
    ) -> dict[str, Any]:
        body = body or {}
        params = {k: v for k, v in body.items() if k not in _CONTENT_FIELDS}
        entry: dict[str, Any] = {
            "time": time.time(),
            "method": method,
            "path": path,
            "model": body.get("model"),
            "x_request_id": headers.get("X-Request-Id"),
            "traceparent": headers.get("traceparent"),
            "tracestate": headers.get("tracestate"),
            "sim_fault": headers.get("X-Sim-Fault"),
            "stream": body.get("stream"),
            "options": body.get("options"),
            "keep_alive": body.get("keep_alive"),
            "stream_options": body.get("stream_options"),
            "params": params,
            "status": None,
        }
        self._entries.append(entry)
        return entry

    def entries(self) -> list[dict[str, Any]]:
        return list(self._entries)

    def clear(self) -> None:
        self._entries.clear()


@dataclass(slots=True)
class SimContext:
    """The object graph one simulator's handlers share (built in ``_server.start_simulator``)."""

    config: SimConfig
    timing: Timing
    faults: Faults
    stats: SimStats
    log: RequestLog
    engines: dict[str, ModelEngine]
    rng: random.Random
    started_wall: float = field(default_factory=time.time)

    def plan(self, request: web.Request) -> FaultPlan:
        """Fault plan for one request; raises FaultHeaderError for a bad X-Sim-Fault header."""
        return plan_for(self.faults, request.headers.get("X-Sim-Fault"), self.rng)

    def seed(self, value: Any) -> int:
        """The request's seed if it gave a usable one, else the simulator's."""
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        return self.config.seed
