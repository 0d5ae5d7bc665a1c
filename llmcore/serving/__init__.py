"""The gRPC server bootstrap both services use (:func:`start_server`) and the process loop that
drains on SIGTERM (:func:`run_until_signalled`)."""

from llmcore.serving._app import ServedApp, start_tracing
from llmcore.serving._server import (
    GrpcServer,
    ServerConfig,
    server_credentials,
    service_names,
    start_server,
)
from llmcore.serving._signals import run_until_signalled

__all__ = [
    "GrpcServer",
    "ServedApp",
    "ServerConfig",
    "run_until_signalled",
    "server_credentials",
    "service_names",
    "start_server",
    "start_tracing",
]
