"""Builds the router's object graph from settings and runs its gRPC server."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry

from clients.gen.llmgateway.v1 import control_pb2, router_pb2, router_pb2_grpc
from llmcore.decode_guard import DecodeGuard
from llmcore.serving import (
    GrpcServer,
    ServedApp,
    ServerConfig,
    service_names,
    start_server,
    start_tracing,
)
from llmcore.vocabulary import ProviderName
from router_service.api_keys import ApiKeyInterceptor, load_api_keys
from router_service.breaker import BreakerPolicy, Breakers
from router_service.config import (
    ConfigError,
    ConfigHolder,
    RoutingConfig,
    bootstrap_config,
    from_snapshot,
)
from router_service.config.health import start_config_health
from router_service.config.persist import load_snapshot
from router_service.config.subscriber import (
    SESSION_CHANNEL_OPTIONS,
    ConfigSubscriber,
    SubscriberOptions,
)
from router_service.dispatch import Dispatcher
from router_service.engine_health import EngineHealth
from router_service.pools import EnginePool
from router_service.pools.build import PoolRuntime, build_pools, replica_reports
from router_service.pools.metrics import PoolCollector
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
    client_interceptors,
    get_tracer,
    server_interceptors,
    start_metrics_server,
)

log = logging.getLogger(__name__)

(SERVICE_NAME,) = service_names(router_pb2.DESCRIPTOR.services_by_name["RouterService"])


def build_providers(
    settings: RouterSettings, tracer_provider: TracerProvider | None = None
) -> dict[ProviderName, Provider]:
    """Each engine is a pool of replicas (docs/pools.md); one URL is a pool of one."""
    return dict(build_pools(settings, tracer_provider))


@dataclass
class RouterApp(ServedApp):
    """A running router: server, port, its parts (for tests and benchmarks), and its stop."""

    settings: RouterSettings
    grpc_server: GrpcServer
    providers: dict[ProviderName, Provider]
    servicer: RouterServicer
    config: ConfigHolder
    recorder: RequestStatsRecorder
    stats: RouterStats
    shadow: ShadowMirror
    engines: EngineHealth
    # What start_router started, in order; closing it stops them in reverse (see stop).
    _stack: contextlib.AsyncExitStack
    pool_runtime: PoolRuntime
    subscriber: ConfigSubscriber | None = None
    control_channel: grpc.aio.Channel | None = None
    # One channel per control replica (control_address may list several); the first is above.
    control_channels: list[grpc.aio.Channel] = field(default_factory=list)
    # Observability: the Prometheus registry (always), its endpoint and the tracer provider.
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    metrics_server: MetricsServer | None = None
    tracer_provider: TracerProvider | None = None


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


def _dispatcher(
    settings: RouterSettings,
    providers: dict[ProviderName, Provider],
    retry: RetryPolicy,
    stats: RouterStats,
) -> Dispatcher:
    breakers = Breakers(
        BreakerPolicy(
            settings.breaker_failure_threshold,
            settings.breaker_open_s,
            settings.breaker_half_open_probes,
        )
    )
    return Dispatcher(providers, retry, stats, breakers=breakers)


def _shadow(
    settings: RouterSettings,
    providers: dict[ProviderName, Provider],
    recorder: RequestStatsRecorder,
    tracer: Tracer,
) -> ShadowMirror:
    """The shadow's own dispatcher: one attempt (no retry), its own engine stats and breakers,
    so a failing shadow engine never shows in, or trips anything of, the primary's path."""
    return ShadowMirror(
        _dispatcher(settings, providers, RetryPolicy(1, 0.0, 0.0), RouterStats()),
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


def _server_config(
    settings: RouterSettings, tracer_provider: TracerProvider | None, registry: CollectorRegistry
) -> ServerConfig:
    api_keys = load_api_keys(settings.api_keys, settings.api_keys_file)
    return ServerConfig(
        host=settings.host,
        port=settings.port,
        services=(SERVICE_NAME,),
        grace_s=settings.grace_period_s,
        interceptors=[
            *server_interceptors(tracer_provider),
            *([ApiKeyInterceptor(api_keys, registry)] if api_keys else []),
            DecodeGuard(log),  # last: it wraps the real handlers (llmcore.decode_guard)
        ],
        reflection=settings.reflection,
        options=[
            # What a request can need, derived from the prompt limits (router_service.limits).
            ("grpc.max_receive_message_length", settings.max_receive_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.keepalive_permit_without_calls", 1),
            # Two routers must never share a port silently.
            ("grpc.so_reuseport", 0),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ],
    )


async def _connect_control(
    stack: contextlib.AsyncExitStack,
    settings: RouterSettings,
    port: int,
    holder: ConfigHolder,
    recorder: RequestStatsRecorder,
    tracer_provider: TracerProvider | None,
    replicas: Callable[[], list[control_pb2.ReplicaReport]] | None = None,
) -> tuple[list[grpc.aio.Channel], ConfigSubscriber]:
    """The session channels (one per control replica: ``control_address`` may list several,
    comma-separated, docs/ha.md) and the started subscriber, all stopped by ``stack``."""
    creds = settings.control_credentials()
    interceptors = client_interceptors(tracer_provider)
    addresses = [a.strip() for a in settings.control_address.split(",") if a.strip()]
    channels: list[grpc.aio.Channel] = []
    for address in addresses:
        channel = (
            grpc.aio.secure_channel(
                address, creds, options=SESSION_CHANNEL_OPTIONS, interceptors=interceptors
            )
            if creds is not None
            else grpc.aio.insecure_channel(
                address, options=SESSION_CHANNEL_OPTIONS, interceptors=interceptors
            )
        )
        stack.push_async_callback(channel.close)
        channels.append(channel)
    subscriber = ConfigSubscriber(
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
            replicas=replicas,
        ),
    )
    stack.push_async_callback(subscriber.stop)
    subscriber.start()
    return channels, subscriber


async def start_router(
    settings: RouterSettings,
    providers: dict[ProviderName, Provider] | None = None,
    *,
    tracer_provider: TracerProvider | None = None,
) -> RouterApp:
    """Start a router on ``settings.host:settings.port`` (port 0 picks a free one).

    ``tracer_provider`` (tests) is used as given and left open on stop; without it one is built
    from the settings and ``OTEL_*`` (None: tracing off) and shut down on stop. ``providers``
    given by the caller are closed on stop too. A failure at any step stops what was started."""
    async with contextlib.AsyncExitStack() as stack:
        if tracer_provider is None:
            tracer_provider = start_tracing(stack, "llm-router", settings.otlp_endpoint)
        tracer = get_tracer(tracer_provider)
        registry = CollectorRegistry()
        metrics = RouterMetrics(registry)
        providers = (
            providers if providers is not None else build_providers(settings, tracer_provider)
        )
        for provider in providers.values():
            stack.push_async_callback(provider.aclose)
        pools = {n: p for n, p in providers.items() if isinstance(p, EnginePool)}
        pool_runtime = PoolRuntime(settings, pools)
        stack.push_async_callback(pool_runtime.stop)
        stats = RouterStats()
        retry = RetryPolicy(
            settings.retry_attempts, settings.retry_base_delay_s, settings.retry_max_delay_s
        )
        dispatcher = _dispatcher(settings, providers, retry, stats)
        holder = ConfigHolder(initial_config(settings))
        await pool_runtime.start(holder)  # a DNS source's first answer comes before serving
        recorder = RequestStatsRecorder(max_shadow_pairs=settings.shadow_report_max_pairs)
        recorder.shadow_observers.append(metrics.observe_shadow)
        shadow = _shadow(settings, providers, recorder, tracer)
        servicer = RouterServicer(
            settings,
            dispatcher,
            holder,
            recorder,
            shadow=shadow,
            observer=GenAIObserver(tracer, metrics, capture_content=settings.trace_content),
        )
        server = await start_server(
            stack,
            _server_config(settings, tracer_provider, registry),
            lambda s: router_pb2_grpc.add_RouterServiceServicer_to_server(servicer, s),
        )
        stack.push_async_callback(shadow.stop)  # shadows never hold up a shutdown
        channels: list[grpc.aio.Channel] = []
        subscriber: ConfigSubscriber | None = None
        if settings.control_address:
            channels, subscriber = await _connect_control(
                stack,
                settings,
                server.port,
                holder,
                recorder,
                tracer_provider,
                replicas=lambda: replica_reports(pools),
            )
        await start_config_health(stack, server, subscriber)
        engines = EngineHealth(providers, settings.engine_probe_interval_s)
        stack.push_async_callback(engines.stop)
        engines.start()
        servicer.status = StatusView(
            settings.resolved_router_id(),
            holder,
            providers,
            engines,
            lambda: servicer.admission.active,
            dispatcher.breakers,
            subscriber,
        ).snapshot
        registry.register(
            RouterStateCollector(
                RouterStateReaders(
                    breaker_states=lambda: {
                        p: dispatcher.breakers.state(p).value for p in providers
                    },
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
        registry.register(PoolCollector(pools))
        metrics_server = await start_metrics_server(registry, settings.host, settings.metrics_port)
        if metrics_server is not None:
            stack.push_async_callback(metrics_server.stop)
        # Last in, first out: the drain's NOT_SERVING comes before anything else stops.
        stack.push_async_callback(server.enter_drain)
        log.info("router listening on %s:%d", settings.host, server.port)
        return RouterApp(
            settings,
            server,
            providers,
            servicer,
            holder,
            recorder,
            stats,
            shadow,
            engines,
            stack.pop_all(),
            pool_runtime,
            subscriber=subscriber,
            control_channel=channels[0] if channels else None,
            control_channels=channels,
            registry=registry,
            metrics_server=metrics_server,
            tracer_provider=tracer_provider,
        )
    raise AssertionError("unreachable")  # pragma: no cover - the with block returns or raises
