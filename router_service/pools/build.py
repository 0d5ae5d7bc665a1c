"""Builds the engine pools from settings and runs their background work (DNS, scrapes)."""

from __future__ import annotations

import httpx
from opentelemetry.sdk.trace import TracerProvider

from llmcore.vocabulary import PROVIDERS, ProviderName
from router_service.breaker import BreakerPolicy
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
from router_service.settings import RouterSettings
from router_service.telemetry import instrument_http_client

__all__ = ["PoolRuntime", "build_pools", "replica_factory"]


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
    options = PoolOptions(load_factor=settings.pool_load_factor)
    pools: dict[ProviderName, EnginePool] = {}
    for engine in PROVIDERS:
        factory = replica_factory(settings, engine, tracer_provider)
        pool = EnginePool(engine, factory, policy, options)
        for url in settings.replica_urls(engine):
            pool.add(url, "static")
        pools[engine] = pool
    return pools


class PoolRuntime:
    """The pools' background tasks: DNS sources and the signal scraper."""

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

    async def start(self) -> None:
        for source in self.dns:
            await source.refresh()  # the first answer before the router serves
            source.start()
        self.scraper.start()

    async def stop(self) -> None:
        for source in self.dns:
            await source.stop()
        await self.scraper.stop()
