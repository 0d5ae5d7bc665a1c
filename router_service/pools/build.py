"""Builds the engine pools from settings and runs their background work: DNS, scrapes, and
what the control service pushes (replicas, drains)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx
from opentelemetry.sdk.trace import TracerProvider

from clients.gen.llmgateway.v1 import control_pb2
from llmcore.vocabulary import PROVIDERS, ProviderName
from router_service.breaker import BreakerPolicy
from router_service.config.holder import ConfigHolder
from router_service.config.routing import RoutingConfig
from router_service.pools.pool import EnginePool, PoolOptions, ReplicaFactory
from router_service.pools.scrape import SignalScraper
from router_service.pools.sources import DnsSource, Resolver, loop_resolver
from router_service.providers import (
    OllamaProvider,
    OpenAICompatProvider,
    Provider,
    ProviderLimits,
    build_http_client,
)
from router_service.requests import PROVIDER_TO_PROTO
from router_service.settings import RouterSettings
from router_service.telemetry import instrument_http_client

__all__ = ["PoolRuntime", "build_pools", "replica_factory", "replica_reports"]

log = logging.getLogger(__name__)


def replica_factory(
    settings: RouterSettings, engine: ProviderName, tracer_provider: TracerProvider | None
) -> ReplicaFactory:
    """One pooled HTTP client per replica, shared by its provider and its scrapes."""
    limits = ProviderLimits(settings.connect_timeout_s, settings.read_timeout_s)
    headers = (
        {"authorization": f"Bearer {settings.vllm_api_key}"}
        if engine == "vllm" and settings.vllm_api_key
        else None
    )

    def make(url: str) -> tuple[Provider, httpx.AsyncClient | None]:
        client = build_http_client(url, limits, settings.max_connections_per_backend, headers)
        instrument_http_client(client, tracer_provider)
        provider: Provider = (
            OllamaProvider(client, keep_alive=settings.ollama_keep_alive)
            if engine == "ollama"
            else OpenAICompatProvider(client)
        )
        return provider, client

    return make


def build_pools(
    settings: RouterSettings, tracer_provider: TracerProvider | None = None
) -> dict[ProviderName, EnginePool]:
    policy = BreakerPolicy(
        settings.breaker_failure_threshold,
        settings.breaker_open_s,
        settings.breaker_half_open_probes,
    )
    options = PoolOptions(strategy=settings.pool_placement, load_factor=settings.pool_load_factor)
    pools: dict[ProviderName, EnginePool] = {}
    for engine in PROVIDERS:
        factory = replica_factory(settings, engine, tracer_provider)
        pool = EnginePool(engine, factory, policy, options)
        for url in settings.replica_urls(engine):
            pool.add(url, "static")
        pools[engine] = pool
    return pools


def replica_reports(pools: dict[ProviderName, EnginePool]) -> list[control_pb2.ReplicaReport]:
    """Per-replica evidence for the stats report (cumulative since this router started)."""
    out: list[control_pb2.ReplicaReport] = []
    for engine, pool in pools.items():
        for r in pool.replicas.values():
            out.append(
                control_pb2.ReplicaReport(
                    provider=PROVIDER_TO_PROTO[engine],
                    url=r.id,
                    attempts=r.stats.attempts,
                    successes=r.stats.successes,
                    failures=r.stats.failures,
                    timeouts=r.stats.timeouts,
                    breaker_state=r.breaker.state.value,
                    in_flight=r.in_flight,
                    healthy=r.healthy,
                    draining=r.draining,
                    source=r.source,
                )
            )
    return out


async def apply_config(pools: dict[ProviderName, EnginePool], cfg: RoutingConfig) -> None:
    """The control service's replicas and drains, from the config in force."""
    for engine, pool in pools.items():
        await pool.sync([url for e, url in cfg.replicas if e == engine], "control")
        for r in pool.replicas.values():
            if r.draining != (r.id in cfg.drained_replicas):
                pool.drain(r.id, r.id in cfg.drained_replicas)


class PoolRuntime:
    """The pools' background tasks: DNS sources, the signal scraper, pushed config."""

    def __init__(
        self,
        settings: RouterSettings,
        pools: dict[ProviderName, EnginePool],
        resolver: Resolver = loop_resolver,
    ) -> None:
        self.pools = pools
        self.dns: list[DnsSource] = []
        for engine, url in (("ollama", settings.ollama_dns_url), ("vllm", settings.vllm_dns_url)):
            if url and engine in pools:
                self.dns.append(DnsSource(pools[engine], url, settings.dns_refresh_s, resolver))
        self.scraper = SignalScraper(list(pools.values()), settings.replica_scrape_interval_s)
        self._watch: asyncio.Task[None] | None = None

    async def start(self, holder: ConfigHolder) -> None:
        for source in self.dns:
            await source.refresh()  # the first answer before the router serves
            source.start()
        await apply_config(self.pools, holder.current)
        self._watch = asyncio.create_task(self._follow(holder), name="pool-config")
        self.scraper.start()

    async def _follow(self, holder: ConfigHolder) -> None:
        cfg = holder.current
        while True:
            cfg = await holder.next_change(cfg.version)
            try:
                await apply_config(self.pools, cfg)
            except Exception:  # the watcher must never die
                log.exception("applying pool config v%d failed", cfg.version)

    async def stop(self) -> None:
        for source in self.dns:
            await source.stop()
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await self.scraper.stop()
