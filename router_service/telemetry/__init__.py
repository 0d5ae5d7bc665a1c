"""Observability: tracing setup, GenAI spans and metrics, the Prometheus endpoint."""

from llmcore.telemetry._exposition import MetricsServer, start_metrics_server
from llmcore.telemetry._tracing import (
    REQUEST_ID_KEY,
    RequestIdSpanProcessor,
    build_tracer_provider,
    client_interceptors,
    get_tracer,
    instrument_http_client,
    new_tracer_provider,
    request_baggage,
    server_interceptors,
    tracing_endpoint,
)
from router_service.telemetry._genai import GenAIObserver
from router_service.telemetry._router_metrics import (
    RouterMetrics,
    RouterStateCollector,
    RouterStateReaders,
)

__all__ = [
    "REQUEST_ID_KEY",
    "GenAIObserver",
    "MetricsServer",
    "RequestIdSpanProcessor",
    "RouterMetrics",
    "RouterStateCollector",
    "RouterStateReaders",
    "build_tracer_provider",
    "client_interceptors",
    "get_tracer",
    "instrument_http_client",
    "new_tracer_provider",
    "request_baggage",
    "server_interceptors",
    "start_metrics_server",
    "tracing_endpoint",
]
