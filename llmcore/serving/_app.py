"""What both services' running apps share: the served gRPC server and the stop that unwinds the
exit stack their start-up built."""

from __future__ import annotations

import contextlib

import grpc
from grpc_health.v1 import health
from opentelemetry.sdk.trace import TracerProvider

from llmcore.serving._server import GrpcServer
from llmcore.telemetry import MetricsServer, build_tracer_provider, tracing_endpoint


def start_tracing(
    stack: contextlib.AsyncExitStack, service_name: str, otlp_endpoint: str
) -> TracerProvider | None:
    """The service's tracer provider from its setting and ``OTEL_*`` (None: tracing off), shut
    down (which flushes what is batched) when ``stack`` closes."""
    provider = build_tracer_provider(service_name, tracing_endpoint(otlp_endpoint))
    if provider is not None:
        stack.callback(provider.shutdown)
    return provider


class ServedApp:
    """Mixin for a service's app dataclass, which declares these three fields itself."""

    grpc_server: GrpcServer
    metrics_server: MetricsServer | None
    # What start-up started, in order; closing it stops them in reverse.
    _stack: contextlib.AsyncExitStack

    @property
    def server(self) -> grpc.aio.Server:
        return self.grpc_server.server

    @property
    def port(self) -> int:
        return self.grpc_server.port

    @property
    def health(self) -> health.aio.HealthServicer:
        return self.grpc_server.health

    @property
    def metrics_port(self) -> int | None:
        return self.metrics_server.port if self.metrics_server is not None else None

    async def stop(self, grace: float | None = None) -> None:
        """The drain first (health NOT_SERVING), then everything start-up started, in reverse;
        in-flight calls get ``grace`` seconds (default: the service's grace period)."""
        if grace is not None:
            self.grpc_server.grace_s = grace
        await self._stack.aclose()
