"""Builds the router's object graph from settings and runs its gRPC server."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from clients.gen.llmgateway.v1 import router_pb2, router_pb2_grpc
from llmcore.vocabulary import ProviderName
from router_service.breaker import BreakerPolicy, Breakers
from router_service.config import (
    ConfigError,
    ConfigHolder,
    RoutingConfig,
    bootstrap_config,
    from_snapshot,
)
from router_service.config.persist import load_snapshot
from router_service.config.subscriber import (
    SESSION_CHANNEL_OPTIONS,
    ConfigSubscriber,
    SubscriberOptions,
)
from router_service.dispatch import Dispatcher
from router_service.engine_health import EngineHealth
from router_service.pools import EnginePool
from router_service.pools.build import PoolRuntime, build_pools
from router_service.providers import Provider
from router_service.request_stats import RequestStatsRecorder
from router_service.retry import RetryPolicy
from router_service.servicer import RouterServicer
from router_service.settings import RouterSettings
from router_service.shadow import MirrorOptions, ShadowMirror
from router_service.stats import RouterStats
from router_service.status import StatusView
from router_service.telemetry import (
    GenAIObserver,
    MetricsServer,
    RouterMetrics,
    RouterStateCollector,
    RouterStateReaders,
    build_tracer_provider,
    client_interceptors,
    get_tracer,
    server_interceptors,
    start_metrics_server,
    tracing_endpoint,
)

log = logging.getLogger(__name__)

SERVICE_NAME: str = router_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name


def build_providers(
    settings: RouterSettings, tracer_provider: TracerProvider | None = None
) -> dict[ProviderName, Provider]:
    """Each engine is a pool of replicas (docs/pools.md); one URL is a pool of one."""
    return dict(build_pools(settings, tracer_provider))


@dataclass
class RouterApp:
    """A running router: server, port and what must be closed on shutdown."""

    settings: RouterSettings
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    providers: dict[ProviderName, Provider]
    servicer: RouterServicer
    config: ConfigHolder
    recorder: RequestStatsRecorder
    stats: RouterStats = field(default_factory=RouterStats)
    subscriber: ConfigSubscriber | None = None
    control_channel: grpc.aio.Channel | None = None
    # One channel per control replica (control_address may list several); the first is above.
    control_channels: list[grpc.aio.Channel] = field(default_factory=list)
    engines: EngineHealth | None = None
    pool_runtime: PoolRuntime | None = None
    shadow: ShadowMirror | None = None
    # Observability: the Prometheus registry (always), its endpoint and the tracer provider.
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    metrics_server: MetricsServer | None = None
    tracer_provider: TracerProvider | None = None
    own_tracer_provider: bool = False

    @property
    def metrics_port(self) -> int | None:
        return self.metrics_server.port if self.metrics_server is not None else None

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let in-flight streams finish within ``grace`` seconds, close pools."""
        await self.health.enter_graceful_shutdown()
        if self.engines is not None:
            await self.engines.stop()
        if self.pool_runtime is not None:
            await self.pool_runtime.stop()
        if self.shadow is not None:
            await self.shadow.stop()  # shadows never hold up a shutdown
        if self.subscriber is not None:
            await self.subscriber.stop()
        for channel in self.control_channels:
            await channel.close()
        await self.server.stop(self.settings.grace_period_s if grace is None else grace)
        for p in self.providers.values():
            await p.aclose()
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        if self.tracer_provider is not None and self.own_tracer_provider:
            self.tracer_provider.shutdown()  # flushes what is batched


def initial_config(settings: RouterSettings) -> RoutingConfig:
    """The persisted last good snapshot, else the bootstrap from settings (100% Ollama)."""
    if settings.control_address:
        snap = load_snapshot(settings.resolved_cache_path())
        if snap is not None:
            try:
                return from_snapshot(snap)
            except ConfigError as exc:
                log.warning("persisted config unusable (%s); starting from bootstrap", exc)
    return bootstrap_config(
        settings.catalog(),
        settings.primary_provider,
        settings.fallback_provider,
        settings.task_providers,
    )


async def start_router(
    settings: RouterSettings,
    providers: dict[ProviderName, Provider] | None = None,
    *,
    tracer_provider: TracerProvider | None = None,
) -> RouterApp:
    """Start a router on ``settings.host:settings.port`` (port 0 picks a free one).

    ``tracer_provider`` (tests) is used as given and left open on stop; without it one is built
    from the settings and ``OTEL_*`` (None: tracing off) and shut down on stop."""
    own_tp = tracer_provider is None
    if tracer_provider is None:
        tracer_provider = build_tracer_provider(
            "llm-router", tracing_endpoint(settings.otlp_endpoint)
        )
    tracer = get_tracer(tracer_provider)
    registry = CollectorRegistry()
    metrics = RouterMetrics(registry)
    providers = providers if providers is not None else build_providers(settings, tracer_provider)
    pools = {n: p for n, p in providers.items() if isinstance(p, EnginePool)}
    pool_runtime = PoolRuntime(settings, pools)
    await pool_runtime.start()  # a DNS source's first answer comes before serving
    stats = RouterStats()
    dispatcher = Dispatcher(
        providers,
        RetryPolicy(
            settings.retry_attempts, settings.retry_base_delay_s, settings.retry_max_delay_s
        ),
        stats,
        breakers=Breakers(
            BreakerPolicy(
                settings.breaker_failure_threshold,
                settings.breaker_open_s,
                settings.breaker_half_open_probes,
            )
        ),
    )
    holder = ConfigHolder(initial_config(settings))
    recorder = RequestStatsRecorder(max_shadow_pairs=settings.shadow_report_max_pairs)
    recorder.shadow_observers.append(metrics.observe_shadow)
    # The shadow's own dispatcher: one attempt (no retry), its own engine stats and breakers, so
    # a failing shadow engine never shows in, or trips anything of, the primary's path.
    shadow = ShadowMirror(
        Dispatcher(
            providers,
            RetryPolicy(1, 0.0, 0.0),
            RouterStats(),
            breakers=Breakers(
                BreakerPolicy(
                    settings.breaker_failure_threshold,
                    settings.breaker_open_s,
                    settings.breaker_half_open_probes,
                )
            ),
        ),
        recorder,
        MirrorOptions(
            max_concurrency=settings.shadow_max_concurrency,
            queue_size=settings.shadow_queue_size,
            timeout_s=settings.shadow_timeout_s,
            capture_max_chars=settings.shadow_capture_max_chars,
            start_delay_s=settings.shadow_start_delay_s,
        ),
        tracer=tracer,
    )
    servicer = RouterServicer(
        settings,
        dispatcher,
        holder,
        recorder,
        shadow=shadow,
        observer=GenAIObserver(tracer, metrics, capture_content=settings.trace_content),
    )
    server = grpc.aio.server(
        interceptors=server_interceptors(tracer_provider),
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.keepalive_permit_without_calls", 1),
            # Two routers must never share a port silently.
            ("grpc.so_reuseport", 0),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ],
    )
    router_pb2_grpc.add_RouterServiceServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    if port == 0:
        raise OSError(f"could not bind {settings.host}:{settings.port}")
    await server.start()
    await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    log.info("router listening on %s:%d", settings.host, port)
    app = RouterApp(
        settings, server, port, health_servicer, providers, servicer, holder, recorder, stats
    )
    app.shadow = shadow
    app.pool_runtime = pool_runtime
    app.registry = registry
    app.tracer_provider = tracer_provider
    app.own_tracer_provider = own_tp
    if settings.control_address:
        creds = settings.control_credentials()
        # Comma-separated: several control replicas (HA), one channel each (docs/ha.md).
        addresses = [a.strip() for a in settings.control_address.split(",") if a.strip()]
        channels = [
            grpc.aio.secure_channel(
                address,
                creds,
                options=SESSION_CHANNEL_OPTIONS,
                interceptors=client_interceptors(tracer_provider),
            )
            if creds is not None
            else grpc.aio.insecure_channel(
                address,
                options=SESSION_CHANNEL_OPTIONS,
                interceptors=client_interceptors(tracer_provider),
            )
            for address in addresses
        ]
        app.control_channel = channels[0]
        app.control_channels = channels
        app.subscriber = ConfigSubscriber(
            channels,
            holder,
            recorder,
            SubscriberOptions(
                router_id=settings.resolved_router_id(),
                address=f"{settings.host}:{port}",
                persist_path=settings.resolved_cache_path(),
                token=settings.control_token,
                stale_grace_s=settings.config_stale_grace_s,
                report_interval_s=settings.stats_report_interval_s,
            ),
        )
        app.subscriber.start()
    app.engines = EngineHealth(providers, settings.engine_probe_interval_s)
    app.engines.start()
    servicer.status = StatusView(
        settings.resolved_router_id(),
        holder,
        providers,
        app.engines,
        lambda: servicer.admission.active,
        dispatcher.breakers,
        app.subscriber,
    ).snapshot
    subscriber = app.subscriber
    registry.register(
        RouterStateCollector(
            RouterStateReaders(
                breaker_states=lambda: {p: dispatcher.breakers.state(p).value for p in providers},
                config_version=lambda: holder.current.version,
                subscriber_state=lambda: subscriber.state.value if subscriber else None,
                active_requests=lambda: servicer.admission.active,
                shadow_counters=lambda: {
                    "mirrored": shadow.counters.mirrored,
                    "dropped": shadow.counters.dropped,
                    "completed": shadow.counters.completed,
                    "compared": shadow.counters.compared,
                },
            )
        )
    )
    app.metrics_server = await start_metrics_server(registry, settings.host, settings.metrics_port)
    return app
