"""One way to build, start and stop a grpc.aio server: health, reflection, TLS/mTLS, the
caller's interceptors, and a graceful drain.

Start-up goes through the caller's ``contextlib.AsyncExitStack``: each step that starts something
registers how to stop it at once, so a failure at any later step (a port in use, a metrics
endpoint that cannot bind) unwinds exactly what was started, in reverse order, and nothing leaks.
A composition root ends with ``stack.pop_all()`` and keeps the returned stack as its ``stop``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def service_names(*services: ServiceDescriptor) -> tuple[str, ...]:
    """Full names (``llmgateway.v1.RouterService``) from the generated descriptors, so that
    health and reflection never carry a hand-typed name."""
    return tuple(s.full_name for s in services)


def server_credentials(
    cert_file: Path | None, key_file: Path | None, client_ca_file: Path | None = None
) -> grpc.ServerCredentials | None:
    """TLS from PEM files, mTLS (client certificates required) when a client CA is given;
    None (plaintext) without a certificate."""
    if cert_file is None or key_file is None:
        return None
    ca = client_ca_file.read_bytes() if client_ca_file is not None else None
    return grpc.ssl_server_credentials(
        [(key_file.read_bytes(), cert_file.read_bytes())],
        root_certificates=ca,
        require_client_auth=ca is not None,
    )


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """What a service decides about its server; :func:`start_server` does the rest."""

    host: str
    port: int  # 0 picks a free port
    services: tuple[str, ...]  # full names served: health and reflection list them
    grace_s: float  # how long in-flight calls get on stop
    interceptors: Sequence[grpc.aio.ServerInterceptor] = ()
    options: Sequence[tuple[str, int | str]] = ()
    credentials: grpc.ServerCredentials | None = None
    reflection: bool = True


class GrpcServer:
    """A started server: its port, its health servicer, and the drain."""

    def __init__(
        self,
        server: grpc.aio.Server,
        port: int,
        health: health.aio.HealthServicer,
        services: tuple[str, ...],
        grace_s: float,
    ) -> None:
        self.server = server
        self.port = port
        self.health = health
        self.services = services
        # Read by the stop the exit stack runs; a caller's stop(grace=...) overrides it first.
        self.grace_s = grace_s

    async def set_serving(self, service: str, serving: bool) -> None:
        """Health of one service name (ignored once draining: the drain's NOT_SERVING stays)."""
        await self.health.set(service, SERVING if serving else NOT_SERVING)

    async def enter_drain(self) -> None:
        """Every service NOT_SERVING, for good: load balancers and probes stop sending."""
        await self.health.enter_graceful_shutdown()

    async def stop(self) -> None:
        """Refuse new calls at once; in-flight ones get ``grace_s`` seconds, then are cancelled."""
        await self.enter_drain()
        await self.server.stop(self.grace_s)


async def start_server(
    stack: contextlib.AsyncExitStack,
    config: ServerConfig,
    register: Callable[[grpc.aio.Server], None],
) -> GrpcServer:
    """Build the server, let ``register`` add the servicers, add health (every service in
    ``config.services`` and ``""`` SERVING once started) and reflection, bind, start. Its stop
    (drain, then ``server.stop(grace_s)``) is on ``stack`` before anything can fail."""
    server = grpc.aio.server(interceptors=list(config.interceptors), options=list(config.options))
    health_servicer = health.aio.HealthServicer()
    running = GrpcServer(server, 0, health_servicer, config.services, config.grace_s)
    stack.push_async_callback(running.stop)
    register(server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if config.reflection:
        reflection.enable_server_reflection(
            (*config.services, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
    address = f"{config.host}:{config.port}"
    try:
        port = (
            server.add_secure_port(address, config.credentials)
            if config.credentials is not None
            else server.add_insecure_port(address)
        )
    except RuntimeError as exc:  # grpc's "Failed to bind": name the address as an OSError
        raise OSError(f"could not bind {address}: {exc}") from exc
    if port == 0:
        raise OSError(f"could not bind {address}")
    running.port = port
    await server.start()
    for name in ("", *config.services):
        await running.set_serving(name, True)
    log.info(
        "gRPC server on %s:%d (%s)",
        config.host,
        port,
        "TLS" if config.credentials is not None else "plaintext",
    )
    return running
