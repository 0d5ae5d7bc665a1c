#!/usr/bin/env python3
"""Container health check for the llmgateway image; installed as ``llmgateway-healthcheck``.

    llmgateway-healthcheck grpc HOST:PORT SERVICE   # grpc.health.v1.Health/Check says SERVING
    llmgateway-healthcheck http URL                 # an HTTP GET answers 2xx

Exit status 0 when healthy, 1 when not (the reason on stderr), 2 on bad usage: what Docker's
``healthcheck`` expects. It needs nothing beyond the image's own dependencies (grpcio and
grpcio-health-checking), so the image carries no ``grpc_health_probe`` binary. Kubernetes does
not use it: its native ``grpc`` probe asks the same health service.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

HEALTHY, UNHEALTHY, USAGE = 0, 1, 2


def check_grpc(target: str, service: str, timeout_s: float) -> tuple[bool, str]:
    """Whether ``target`` reports ``service`` as SERVING on the standard health service."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError as exc:
            # The sync stack raises an RpcError that is also a grpc.Call (code(), details()).
            code, details = getattr(exc, "code", None), getattr(exc, "details", None)
            name = code().name if callable(code) else "error"
            detail = details() if callable(details) else str(exc)
            return False, f"{target} {service!r}: {name}: {detail}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, f"{target} {service!r}: {status}"


def check_http(url: str, timeout_s: float) -> tuple[bool, str]:
    """Whether a GET of ``url`` answers with a 2xx status."""
    if not url.startswith(("http://", "https://")):
        return False, f"{url}: not an http(s) URL"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return False, f"{url}: HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"{url}: {exc}"
    return 200 <= status < 300, f"{url}: HTTP {status}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="llmgateway-healthcheck", description="Container health check for llmgateway."
    )
    p.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    sub = p.add_subparsers(dest="kind", required=True)
    g = sub.add_parser("grpc", help="standard gRPC health check")
    g.add_argument("target", help="HOST:PORT")
    g.add_argument("service", nargs="?", default="", help="service name ('' = the server)")
    h = sub.add_parser("http", help="HTTP GET, 2xx is healthy")
    h.add_argument("url")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.timeout <= 0:
        sys.stderr.write("llmgateway-healthcheck: --timeout must be positive\n")
        return USAGE
    if args.kind == "grpc":
        ok, message = check_grpc(args.target, args.service, args.timeout)
    else:
        ok, message = check_http(args.url, args.timeout)
    (sys.stdout if ok else sys.stderr).write(message + "\n")
    return HEALTHY if ok else UNHEALTHY


if __name__ == "__main__":
    sys.exit(main())
