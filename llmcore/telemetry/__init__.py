"""Telemetry set-up shared by both services: tracer providers, gRPC/httpx instrumentation,
the Prometheus endpoint."""

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

__all__ = [
    "REQUEST_ID_KEY",
    "MetricsServer",
    "RequestIdSpanProcessor",
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
