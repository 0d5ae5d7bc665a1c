"""Builds the control service's object graph from settings and runs its gRPC server."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import grpc
import httpx
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from control_service import convert
from control_service.auth import AuthInterceptor
from control_service.controller import Controller
from control_service.gpu import GB, GpuBackend, GpuMonitor
from control_service.gpu_service import GpuService, MonitorVramSource, build_monitor
from control_service.health import EngineProber, HealthAggregator, engine_probe_urls
from control_service.hub import Hub
from control_service.leadership.replica import Replica
from control_service.leadership.setup import HaParts
from control_service.rollback.gate import GateThresholds
from control_service.rollback.golden_runner import GoldenRunner
from control_service.rollback.gonogo import GoNoGo, VramSource
from control_service.rollback.loop import RollbackLoop
from control_service.servicer import SERVICE, ControlServicer, add_to_server
from control_service.session import ExpiryAudit, SessionPolicy
from control_service.settings import ControlSettings
from control_service.shadow_store import ShadowStore
from control_service.state import default_state
from control_service.stats_ingest import StatsIngest
from control_service.stats_windows import StatsWindows
from control_service.store import StateStore
from control_service.store.etcd import EtcdStore
from control_service.store.factory import open_store
from control_service.telemetry import ControlStateCollector, RollbackObserver, VllmMetricsReader
from llmcore.telemetry import (
    MetricsServer,
    build_tracer_provider,
    get_tracer,
    server_interceptors,
    start_metrics_server,
    tracing_endpoint,
)

log = logging.getLogger(__name__)

SERVICE_NAME: str = SERVICE.full_name

# Keepalive compatible with the router's subscriber: it may ping every 10 s without calls; the
# server pings idle sessions itself so a router that vanished is seen as disconnected.
SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
]


@dataclass
class ControlApp:
    """A running control service: server, port, and its parts (for tests and benchmarks)."""

    settings: ControlSettings
    server: grpc.aio.Server
    port: int
    store: StateStore
    hub: Hub
    stats: StatsWindows
    controller: Controller
    health: health.aio.HealthServicer
    prober: EngineProber
    http_client: httpx.AsyncClient
    _own_http_client: bool
    gpu: GpuMonitor = field(kw_only=True)
    # The automatic rollback loop (None when rollback_enabled is off) and the go/no-go gate.
    rollback: RollbackLoop | None = field(default=None, kw_only=True)
    gonogo: GoNoGo | None = field(default=None, kw_only=True)
    shadow: ShadowStore | None = field(default=None, kw_only=True)
    # Observability: the Prometheus registry, its endpoint, the vLLM metrics reader, tracing.
    registry: CollectorRegistry = field(default_factory=CollectorRegistry, kw_only=True)
    metrics_server: MetricsServer | None = field(default=None, kw_only=True)
    vllm_metrics: VllmMetricsReader | None = field(default=None, kw_only=True)
    tracer_provider: TracerProvider | None = field(default=None, kw_only=True)
    own_tracer_provider: bool = field(default=False, kw_only=True)
    # HA (etcd store): this replica's leadership, state follower and stats relay.
    replica: Replica | None = field(default=None, kw_only=True)

    @property
    def metrics_port(self) -> int | None:
        return self.metrics_server.port if self.metrics_server is not None else None

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, end router sessions (UNAVAILABLE, so they reconnect), let unary
        calls finish within ``grace`` seconds, then close the store and the HTTP client."""
        if self.replica is not None:
            await self.replica.stop()  # resigns: a follower takes over without waiting a TTL
        if self.rollback is not None:
            await self.rollback.stop()
        if self.vllm_metrics is not None:
            await self.vllm_metrics.stop()
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        await self.health.enter_graceful_shutdown()
        self.hub.shutdown()
        # Ends WatchGpuStatus streams (their generators return) before the server waits on them.
        await self.gpu.stop()
        await self.server.stop(self.settings.grace_period_s if grace is None else grace)
        await self.prober.aclose()
        if self._own_http_client:
            await self.http_client.aclose()
        if isinstance(self.hub.on_expire, ExpiryAudit):
            await self.hub.on_expire.drain()  # expiry events still being written
        await self.store.close()
        if self.tracer_provider is not None and self.own_tracer_provider:
            self.tracer_provider.shutdown()


def server_credentials(settings: ControlSettings) -> grpc.ServerCredentials | None:
    """TLS (and mTLS when a client CA is set) from the settings' PEM files; None: plaintext."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    key = settings.tls_key_file.read_bytes()
    cert = settings.tls_cert_file.read_bytes()
    ca = settings.tls_client_ca_file.read_bytes() if settings.tls_client_ca_file else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
    )


async def start_control(
    settings: ControlSettings,
    *,
    store: StateStore | None = None,
    http_client: httpx.AsyncClient | None = None,
    gpu_backend: GpuBackend | None = None,
    vram_source: VramSource | None = None,
    tracer_provider: TracerProvider | None = None,
) -> ControlApp:
    """Start the control service on ``settings.host:settings.port`` (port 0 picks a free one).
    ``store`` defaults to SQLite at ``settings.db_path``; ``http_client`` (for engine probes)
    to a new client closed on stop; ``gpu_backend`` (tests: ``control_service.gpu.fake``) to
    the one ``settings.gpu_backend`` names; ``vram_source`` feeds the go/no-go gate's VRAM
    criterion (default: the GPU monitor's history; no telemetry: INCONCLUSIVE, "no GPU
    telemetry")."""
    credentials = settings.credentials()
    if credentials.empty and not credentials.insecure:
        raise ValueError(
            "no credentials configured: set auth_token, reader_token, router_token, "
            "credentials_file or mTLS (tls_client_ca_file), or insecure=true for a dev setup "
            "(docs/security.md)"
        )
    if credentials.insecure:
        log.warning(
            "INSECURE: ControlService calls without a credential are allowed (insecure=true); "
            "anyone who can reach %s:%d can change the fleet's config",
            settings.host,
            settings.port,
        )
    own_tp = tracer_provider is None
    if tracer_provider is None:
        tracer_provider = build_tracer_provider(
            "llm-control", tracing_endpoint(settings.otlp_endpoint)
        )
    tracer = get_tracer(tracer_provider)
    store = store if store is not None else open_store(settings)
    hub = Hub(
        expiry_s=settings.router_expiry_s,
        max_routers=settings.max_routers,
        takeover_s=settings.session_takeover_s,
    )
    controller = Controller(store, hub, convert.encode_session_snapshot, tracer)
    hub.on_expire = ExpiryAudit(controller.record)
    auth = AuthInterceptor(credentials)
    try:
        snap = await controller.start(default_state(tuple(settings.split_steps)))
    except BaseException:
        await store.close()
        raise
    stats = StatsWindows(settings.stats_retention_s, settings.stats_slot_s, clock=time.time)
    shadow = ShadowStore(settings.shadow_retention_s, settings.shadow_max_pairs, clock=time.time)
    # HA (etcd): stats go through etcd to every replica; leadership starts once the port is known.
    ha = (
        HaParts(store, settings, StatsIngest(stats, shadow).add)
        if isinstance(store, EtcdStore)
        else None
    )
    own_client = http_client is None
    client = http_client if http_client is not None else httpx.AsyncClient()
    prober = EngineProber(
        client,
        engine_probe_urls(settings.ollama_base_url, settings.vllm_base_url),
        timeout_s=settings.probe_timeout_s,
        cache_s=settings.probe_cache_s,
    )
    aggregator = HealthAggregator(
        store,
        hub,
        lambda: (controller.current.version, controller.current.state),
        prober,
        store_timeout_s=settings.store_health_timeout_s,
        extra=ha.components if ha is not None else None,
    )
    gpu_monitor = build_monitor(settings, gpu_backend)
    gpu = GpuService(gpu_monitor, controller, headroom_bytes=int(settings.gpu_headroom_gb * GB))
    gonogo = GoNoGo(
        stats,
        GateThresholds(
            latency_go_ms=settings.gonogo_latency_go_ms,
            latency_no_go_ms=settings.gonogo_latency_no_go_ms,
            shadow_error_go=settings.gonogo_shadow_error_go,
            shadow_error_no_go=settings.gonogo_shadow_error_no_go,
            min_requests=settings.gonogo_min_requests,
            vram_window_s=settings.gonogo_vram_window_s,
        ),
        settings.gonogo_window_s,
        GoldenRunner(
            settings.golden_queries_file,
            settings.golden_router_address,
            timeout_s=settings.golden_timeout_s,
            concurrency=settings.golden_concurrency,
        ),
        vram_source if vram_source is not None else MonitorVramSource(gpu_monitor),
    )
    rollback = (
        RollbackLoop(controller, stats, prober, interval_s=settings.evaluation_interval_s)
        if settings.rollback_enabled
        else None
    )
    servicer = ControlServicer(
        controller,
        hub,
        stats,
        aggregator,
        gpu=gpu,
        gonogo=gonogo,
        shadow=shadow,
        identify=auth.principal,
        session_policy=SessionPolicy(
            principal=auth.principal,
            record=controller.record,
            max_report_count=settings.max_report_count,
        ),
        stats_sink=ha.relay.publish if ha is not None else None,
        session_catch_up_s=2.0 if ha is not None else 0.0,
    )
    server = grpc.aio.server(
        interceptors=[
            *server_interceptors(tracer_provider),
            auth,
        ],
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            *SERVER_OPTIONS,
        ],
    )
    add_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if settings.reflection:
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
    address = f"{settings.host}:{settings.port}"
    try:
        creds = server_credentials(settings)
        port = (
            server.add_secure_port(address, creds)
            if creds is not None
            else server.add_insecure_port(address)
        )
        if port == 0:
            raise OSError(f"could not bind {address}")
        await server.start()
    except BaseException:
        await store.close()
        if own_client:
            await client.aclose()
        raise
    await gpu_monitor.start()
    registry = CollectorRegistry()
    if rollback is not None:
        rollback.observers.append(RollbackObserver(registry, tracer))
    replica = None
    if ha is not None:
        replica = ha.start(controller, rollback, port, registry)  # the leader runs the loop
    elif rollback is not None:
        rollback.start()
    vllm_metrics = VllmMetricsReader(
        client, settings.vllm_base_url, settings.vllm_metrics_interval_s
    )
    registry.register(ControlStateCollector(controller, hub, gpu_monitor, vllm_metrics))
    try:
        metrics_server = await start_metrics_server(registry, settings.host, settings.metrics_port)
    except BaseException:
        if replica is not None:
            await replica.stop()
        if rollback is not None:
            await rollback.stop()
        await server.stop(0)
        await gpu_monitor.stop()
        await store.close()
        if own_client:
            await client.aclose()
        raise
    if metrics_server is not None:
        vllm_metrics.start()
    await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "control service listening on %s:%d (%s, state v%d at %s)",
        settings.host,
        port,
        "TLS" if creds is not None else "plaintext",
        snap.version,
        settings.store or settings.db_path,
    )
    return ControlApp(
        settings,
        server,
        port,
        store,
        hub,
        stats,
        controller,
        health_servicer,
        prober,
        client,
        own_client,
        gpu=gpu_monitor,
        rollback=rollback,
        gonogo=gonogo,
        shadow=shadow,
        registry=registry,
        metrics_server=metrics_server,
        vllm_metrics=vllm_metrics,
        tracer_provider=tracer_provider,
        own_tracer_provider=own_tp,
        replica=replica,
    )
