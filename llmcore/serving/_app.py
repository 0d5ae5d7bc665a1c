"""What both services' running apps share: the served gRPC server and the stop that unwinds the
exit stack their start-up built."""

from __future__ import annotations

import contextlib

import grpc
from grpc_health.v1 import health

from llmcore.serving._server import GrpcServer
from llmcore.telemetry import MetricsServer


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
