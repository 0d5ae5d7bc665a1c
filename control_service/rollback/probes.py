"""Engine health with k8s-probe hysteresis, from the control service's own probes. Pure logic.

An engine starts UNKNOWN. ``failure_threshold`` consecutive failed probes make it UNHEALTHY;
from UNHEALTHY it takes ``success_threshold`` consecutive good probes to be HEALTHY again (one
good probe is enough from UNKNOWN: there is nothing to recover from). The thresholds are passed
with each observation because operators change them at run time (``flags.rollback``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Any


class HealthState(enum.Enum):
    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True, slots=True)
class EngineHealth:
    """One engine's probe history, as far as the hysteresis needs it."""

    state: HealthState = HealthState.UNKNOWN
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    probes: int = 0
    last_detail: str = ""
    # When the state last changed (the probe's time), for evidence and benchmarks.
    since: float | None = None

    def evidence(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "consecutive_failures": self.consecutive_failures,
            "consecutive_successes": self.consecutive_successes,
            "probes": self.probes,
            "detail": self.last_detail,
        }


def observe(
    h: EngineHealth,
    ok: bool,
    detail: str,
    at: float,
    failure_threshold: int,
    success_threshold: int,
) -> EngineHealth:
    """``h`` after one probe."""
    if ok:
        h = replace(h, consecutive_successes=h.consecutive_successes + 1, consecutive_failures=0)
    else:
        h = replace(h, consecutive_failures=h.consecutive_failures + 1, consecutive_successes=0)
    h = replace(h, probes=h.probes + 1, last_detail=detail)
    state = h.state
    recovered = state is HealthState.UNKNOWN or h.consecutive_successes >= success_threshold
    if not ok and state is not HealthState.UNHEALTHY:
        if h.consecutive_failures >= failure_threshold:
            state = HealthState.UNHEALTHY
    elif ok and state is not HealthState.HEALTHY and recovered:
        state = HealthState.HEALTHY
    if state is not h.state:
        h = replace(h, state=state, since=at)
    return h


class HealthTracker:
    """The :class:`EngineHealth` of each engine (by name: ``ollama``, ``vllm``)."""

    def __init__(self) -> None:
        self._engines: dict[str, EngineHealth] = {}

    def observe(
        self,
        engine: str,
        ok: bool,
        detail: str,
        at: float,
        failure_threshold: int,
        success_threshold: int,
    ) -> EngineHealth:
        h = observe(self.view(engine), ok, detail, at, failure_threshold, success_threshold)
        self._engines[engine] = h
        return h

    def view(self, engine: str) -> EngineHealth:
        return self._engines.get(engine, EngineHealth())
