"""One replica of an engine pool: its provider, health, breaker, in-flight count and stats.

The pool is the engine for everything above it (placement plan, the dispatcher's per-engine
breaker, rollback rules); a replica is where the evidence lands: which one failed, timed out,
is slow or cold.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from llmcore.engine_signals import EngineSignals
from router_service.breaker import Breaker, BreakerState
from router_service.pools.placement import ReplicaView
from router_service.providers import Provider

__all__ = ["Replica", "ReplicaStats"]


@dataclass
class ReplicaStats:
    """Cumulative counts for one replica since it joined the pool."""

    attempts: int = 0
    successes: int = 0
    failures: int = 0
    timeouts: int = 0
    placed: Counter[str] = field(default_factory=Counter)  # Decision.reason values


@dataclass
class Replica:
    """``id`` is its base URL: unique in a pool, and what an operator names to drain it."""

    id: str
    provider: Provider
    breaker: Breaker
    # The replica's own HTTP client, for probes and signal scrapes (the provider has one too).
    client: httpx.AsyncClient | None = None
    source: str = "static"  # static | control | dns
    in_flight: int = 0
    draining: bool = False
    retired: bool = False  # left the pool; closed when its last call ends
    # Unknown until the first probe: a new replica is tried, not held back.
    healthy: bool = True
    probed: bool = False
    detail: str = "not probed yet"
    probe_latency_ms: float = 0.0
    probed_at: float = 0.0
    signals: EngineSignals = field(default_factory=EngineSignals)
    # The counters at the first scrape, so the hit rate is this router's window, not since
    # the engine started.
    signals_base: EngineSignals | None = None
    stats: ReplicaStats = field(default_factory=ReplicaStats)

    def breaker_refuses(self) -> bool:
        """Whether ``breaker.allow()`` would say no now, without its side effects."""
        b = self.breaker
        if b.state is BreakerState.OPEN:
            return b.clock() - b.opened_at < b.policy.open_s
        if b.state is BreakerState.HALF_OPEN:
            return b.probes_in_flight >= b.policy.half_open_probes
        return False

    def view(self, screen: bool = True, model: str = "") -> ReplicaView:
        """Placement's view; ``screen=False`` (a pool of one) ignores health and breaker, which
        the engine's own breaker and health already stand for."""
        return ReplicaView(
            id=self.id,
            healthy=self.healthy or not screen,
            draining=self.draining,
            breaker_open=screen and self.breaker_refuses(),
            in_flight=self.in_flight,
            engine_load=self.signals.load,
            kv_usage=self.signals.kv_usage,
            model_loaded=(
                model in self.signals.loaded_models
                if model and self.signals.loaded_models
                else None
            ),
        )

    def mark(self, healthy: bool, detail: str, latency_ms: float = 0.0) -> bool:
        """Record a probe (or a connect failure); True when the health changed."""
        changed = self.probed and healthy != self.healthy
        self.healthy, self.detail, self.probe_latency_ms = healthy, detail, latency_ms
        self.probed, self.probed_at = True, time.monotonic()
        return changed

    def observe(self, signals: EngineSignals) -> None:
        if self.signals_base is None or signals.prefix_queries < self.signals_base.prefix_queries:
            self.signals_base = signals  # first scrape, or the engine restarted
        self.signals = signals

    @property
    def prefix_window(self) -> tuple[float, float]:
        """(queried, hit) prefix-cache tokens since this router first scraped the replica."""
        base = self.signals_base or self.signals
        return (
            self.signals.prefix_queries - base.prefix_queries,
            self.signals.prefix_hits - base.prefix_hits,
        )
