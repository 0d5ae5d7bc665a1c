"""Prometheus view of the engine pools: per replica load, health, breaker and counts, and each
pool's prefix-cache hit rate (the figure prefix-aware placement exists for)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from llmcore.vocabulary import ProviderName
from router_service.breaker import BreakerState
from router_service.pools.pool import EnginePool

__all__ = ["PoolCollector"]


class PoolCollector(Collector):
    def __init__(self, pools: Mapping[ProviderName, EnginePool]) -> None:
        self._pools = pools

    def collect(self) -> Iterable[Metric]:
        labels = ("provider", "replica")
        in_flight = GaugeMetricFamily(
            "llm_router_replica_in_flight", "This router's requests on the replica.", labels=labels
        )
        healthy = GaugeMetricFamily(
            "llm_router_replica_healthy", "1 while the replica's last probe passed.", labels=labels
        )
        draining = GaugeMetricFamily(
            "llm_router_replica_draining",
            "1 while the replica takes no new requests.",
            labels=labels,
        )
        breaker = GaugeMetricFamily(
            "llm_router_replica_breaker_open",
            "1 while the replica's breaker is open.",
            labels=labels,
        )
        load = GaugeMetricFamily(
            "llm_router_replica_engine_load",
            "Running + waiting requests the engine reported at its last scrape.",
            labels=labels,
        )
        attempts = CounterMetricFamily(
            "llm_router_replica_attempts", "Attempts placed on the replica.", labels=labels
        )
        failures = CounterMetricFamily(
            "llm_router_replica_failures",
            "Attempts the replica failed (engine errors, stream timeouts).",
            labels=labels,
        )
        queried = CounterMetricFamily(
            "llm_router_replica_prefix_cache_queries",
            "Prompt tokens the replica looked up in its prefix cache (since first scraped).",
            labels=labels,
        )
        hit = CounterMetricFamily(
            "llm_router_replica_prefix_cache_hits",
            "Prompt tokens found in the replica's prefix cache (since first scraped).",
            labels=labels,
        )
        placements = CounterMetricFamily(
            "llm_router_pool_placements",
            "Placement decisions by reason (affinity, affinity_spill, least_loaded).",
            labels=("provider", "reason"),
        )
        rate = GaugeMetricFamily(
            "llm_router_pool_prefix_cache_hit_rate",
            "Prefix-cache hit rate of the pool: hits / queries summed over its replicas.",
            labels=("provider",),
        )
        for name, pool in sorted(self._pools.items()):
            for r in pool.replicas.values():
                key = (name, r.id)
                in_flight.add_metric(key, r.in_flight)
                healthy.add_metric(key, 1.0 if r.healthy else 0.0)
                draining.add_metric(key, 1.0 if r.draining else 0.0)
                breaker.add_metric(key, 1.0 if r.breaker.state is BreakerState.OPEN else 0.0)
                load.add_metric(key, r.signals.load)
                attempts.add_metric(key, r.stats.attempts)
                failures.add_metric(key, r.stats.failures)
                q, h = r.prefix_window
                queried.add_metric(key, q)
                hit.add_metric(key, h)
            for reason, n in sorted(pool.reason_counts().items()):
                placements.add_metric((name, reason), n)
            pool_rate = pool.hit_rate()
            if pool_rate is not None:
                rate.add_metric((name,), pool_rate)
        yield from (in_flight, healthy, draining, breaker, load, attempts, failures)
        yield from (queried, hit, placements, rate)
