"""Builds the control service's object graph from settings and runs its gRPC server."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field

import grpc
import httpx
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from control_service import convert
from control_service.auth import AuthInterceptor
from control_service.authz import Credentials
from control_service.controller import Controller
from control_service.engines import EngineDirectory, ReplicaEvidenceBook
from control_service.gpu import GB, GpuBackend, GpuMonitor
from control_service.gpu_service import GpuService, MonitorVramSource, build_monitor
from control_service.health import EngineProber, HealthAggregator
from control_service.hub import Hub
from control_service.leadership.replica import Replica
from control_service.leadership.setup import HaParts
from control_service.parity_service import ParityService
from control_service.rollback.criteria_semantic import MeaningThresholds
from control_service.rollback.gate import GateThresholds
from control_service.rollback.golden_runner import GoldenRunner
from control_service.rollback.gonogo import GoNoGo, VramSource
from control_service.rollback.loop import RollbackLoop
from control_service.rollback.meaning import MeaningSource
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
from llmcore import serving
from llmcore.decode_guard import DecodeGuard
from llmcore.serving import GrpcServer, ServedApp, ServerConfig, start_server, start_tracing
from llmcore.telemetry import (
    MetricsServer,
    get_tracer,
    server_interceptors,
    start_metrics_server,
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
class ControlApp(ServedApp):
    """A running control service: server, port, and its parts (for tests and benchmarks)."""

    settings: ControlSettings
    grpc_server: GrpcServer
    store: StateStore
    hub: Hub
    stats: StatsWindows
    controller: Controller
    prober: EngineProber
    http_client: httpx.AsyncClient
    # What start_control started, in order; closing it stops them in reverse (see stop).
    _stack: contextlib.AsyncExitStack
    gpu: GpuMonitor = field(kw_only=True)
    # The automatic rollback loop (None when rollback_enabled is off) and the go/no-go gate.
    rollback: RollbackLoop | None = field(default=None, kw_only=True)
    gonogo: GoNoGo | None = field(default=None, kw_only=True)
    shadow: ShadowStore | None = field(default=None, kw_only=True)
    # Engine pools: every replica and the routers' per-replica evidence (docs/pools.md).
    engines: EngineDirectory | None = field(default=None, kw_only=True)
    # Observability: the Prometheus registry, its endpoint, the vLLM metrics reader, tracing.
    registry: CollectorRegistry = field(default_factory=CollectorRegistry, kw_only=True)
    metrics_server: MetricsServer | None = field(default=None, kw_only=True)
    vllm_metrics: VllmMetricsReader | None = field(default=None, kw_only=True)
    tracer_provider: TracerProvider | None = field(default=None, kw_only=True)
    # HA (etcd store): this replica's leadership, state follower and stats relay.
    replica: Replica | None = field(default=None, kw_only=True)


def server_credentials(settings: ControlSettings) -> grpc.ServerCredentials | None:
    """TLS (and mTLS when a client CA is set) from the settings' PEM files; None: plaintext."""
    return serving.server_credentials(
        settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
    )


def _credentials(settings: ControlSettings) -> Credentials:
    """The credentials calls are checked against; none at all is refused unless ``insecure``."""
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
    return credentials


def _gonogo(
    settings: ControlSettings,
    stats: StatsWindows,
    gpu_monitor: GpuMonitor,
    vram_source: VramSource | None,
    meaning: MeaningSource,
    shadow: ShadowStore,
) -> GoNoGo:
    return GoNoGo(
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
        meaning=meaning,
        meaning_thresholds=MeaningThresholds(
            semantic_go=settings.gonogo_semantic_go,
            semantic_no_go=settings.gonogo_semantic_no_go,
            judge_loss_go=settings.gonogo_judge_loss_go,
            judge_loss_no_go=settings.gonogo_judge_loss_no_go,
            min_pairs=settings.gonogo_min_meaning_pairs,
        ),
        structured=shadow.schema_validity,
    )


def _parity(
    settings: ControlSettings, http_client: httpx.AsyncClient, controller: Controller
) -> ParityService:
    return ParityService(
        http_client,
        {"ollama": settings.ollama_base_url, "vllm": settings.vllm_base_url},
        controller,
        corpus_file=settings.parity_corpus_file,
        min_cosine_p10=settings.parity_min_cosine_p10,
        min_overlap=settings.parity_min_overlap,
        timeout_s=settings.parity_timeout_s,
    )


def _server_config(
    settings: ControlSettings, tracer_provider: TracerProvider | None, auth: AuthInterceptor
) -> ServerConfig:
    return ServerConfig(
        host=settings.host,
        port=settings.port,
        services=(SERVICE_NAME,),
        grace_s=settings.grace_period_s,
        interceptors=[
            *server_interceptors(tracer_provider),
            auth,
            DecodeGuard(log),  # last: it wraps the real handlers (llmcore.decode_guard)
        ],
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            *SERVER_OPTIONS,
        ],
        credentials=server_credentials(settings),
        reflection=settings.reflection,
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
    ``store`` defaults to SQLite at ``settings.db_path`` (closed on stop either way);
    ``http_client`` (for engine probes) to a new client closed on stop; ``gpu_backend`` (tests:
    ``control_service.gpu.fake``) to the one ``settings.gpu_backend`` names; ``vram_source``
    feeds the go/no-go gate's VRAM criterion (default: the GPU monitor's history; no telemetry:
    INCONCLUSIVE, "no GPU telemetry"). A failure at any step stops what was started."""
    credentials = _credentials(settings)
    async with contextlib.AsyncExitStack() as stack:
        if tracer_provider is None:
            tracer_provider = start_tracing(stack, "llm-control", settings.otlp_endpoint)
        tracer = get_tracer(tracer_provider)
        store = store if store is not None else open_store(settings)
        stack.push_async_callback(store.close)
        hub = Hub(
            expiry_s=settings.router_expiry_s,
            max_routers=settings.max_routers,
            takeover_s=settings.session_takeover_s,
        )
        controller = Controller(store, hub, convert.encode_session_snapshot, tracer)
        # Audit events of what this process observes about its own routers. HA: every replica
        # writes its own (unfenced: they decide nothing); one replica: through the controller.
        observed = store.note if isinstance(store, EtcdStore) else controller.record
        expiry_audit = ExpiryAudit(observed)
        hub.on_expire = expiry_audit
        # Expiry events still being written go to the store before it closes.
        stack.push_async_callback(expiry_audit.drain)
        auth = AuthInterceptor(credentials)
        snap = await controller.start(default_state(tuple(settings.split_steps)))
        stats = StatsWindows(settings.stats_retention_s, settings.stats_slot_s, clock=time.time)
        shadow = ShadowStore(
            settings.shadow_retention_s, settings.shadow_max_pairs, clock=time.time
        )
        # HA (etcd): stats go through etcd to every replica; leadership starts once the port is
        # known.
        ha = (
            HaParts(store, settings, StatsIngest(stats, shadow).add)
            if isinstance(store, EtcdStore)
            else None
        )
        if http_client is None:
            http_client = httpx.AsyncClient()
            stack.push_async_callback(http_client.aclose)
        engines = EngineDirectory(
            http_client,
            settings.replica_urls(),
            lambda: controller.current.state.flags,
            ReplicaEvidenceBook(),
            timeout_s=max(settings.probe_timeout_s, 0.5),
        )
        prober = EngineProber(
            http_client,
            {},  # every replica of each pool, the single URLs included (docs/pools.md)
            timeout_s=settings.probe_timeout_s,
            cache_s=settings.probe_cache_s,
            replicas=engines.probe_targets,
        )
        stack.push_async_callback(prober.aclose)
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
        parity = _parity(settings, http_client, controller)
        meaning = MeaningSource(shadow, lambda: controller.current.state, lambda: parity.last)
        gonogo = _gonogo(settings, stats, gpu_monitor, vram_source, meaning, shadow)
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
            parity=parity,
            identify=auth.principal,
            session_policy=SessionPolicy(auth.principal, observed, settings.max_report_count),
            stats_sink=ha.relay.publish if ha is not None else None,
            session_catch_up_s=2.0 if ha is not None else 0.0,
            engines=engines,
        )
        config = _server_config(settings, tracer_provider, auth)
        server = await start_server(stack, config, lambda s: add_to_server(servicer, s))
        # Ends WatchGpuStatus streams (their generators return) before the server waits on them.
        stack.push_async_callback(gpu_monitor.stop)
        await gpu_monitor.start()
        # Router sessions end (UNAVAILABLE, so they reconnect) before the server's grace.
        stack.callback(hub.shutdown)
        registry = CollectorRegistry()
        if rollback is not None:
            rollback.observers.append(RollbackObserver(registry, tracer))
            stack.push_async_callback(rollback.stop)
        replica = None
        if ha is not None:
            replica = ha.start(controller, rollback, server.port, registry)  # the leader's loop
            # Resigns first on stop: a follower takes over without waiting a TTL.
            stack.push_async_callback(replica.stop)
        elif rollback is not None:
            rollback.start()
        vllm_metrics = VllmMetricsReader(
            http_client, settings.vllm_base_url, settings.vllm_metrics_interval_s
        )
        registry.register(ControlStateCollector(controller, hub, gpu_monitor, vllm_metrics))
        metrics_server = await start_metrics_server(registry, settings.host, settings.metrics_port)
        if metrics_server is not None:
            stack.push_async_callback(metrics_server.stop)
            stack.push_async_callback(vllm_metrics.stop)
            vllm_metrics.start()
        # Last in, first out: the drain's NOT_SERVING comes before anything else stops.
        stack.push_async_callback(server.enter_drain)
        log.info(
            "control service listening on %s:%d (%s, state v%d at %s)",
            settings.host,
            server.port,
            "TLS" if config.credentials is not None else "plaintext",
            snap.version,
            settings.store or settings.db_path,
        )
        return ControlApp(
            settings,
            server,
            store,
            hub,
            stats,
            controller,
            prober,
            http_client,
            stack.pop_all(),
            gpu=gpu_monitor,
            rollback=rollback,
            gonogo=gonogo,
            shadow=shadow,
            engines=engines,
            registry=registry,
            metrics_server=metrics_server,
            vllm_metrics=vllm_metrics,
            tracer_provider=tracer_provider,
            replica=replica,
        )
    raise AssertionError("unreachable")  # pragma: no cover - the with block returns or raises
