"""``llmctl health``: the aggregate health of the control service (store, routers, engines)
and a router's own status."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import grpc

from clients.cli._common import Subparsers
from clients.cli._control_common import add_parser, run_control
from clients.cli._errors import EXIT_FAILURE
from clients.cli._output import emit, format_pairs, format_table
from clients.cli._values import health_label, percent
from clients.gen.llmgateway.v1 import common_pb2, router_pb2
from clients.llm import ControlClient, RouterClient, RouterError

_HEALTH_ORDER = {"ok": 0, "degraded": 1, "down": 2}


def register(subparsers: Subparsers) -> None:
    """Adds ``health``."""
    p = add_parser(
        subparsers,
        "health",
        help="aggregate health of the control service, routers and engines",
        description="The control service's GetHealth (store, every router, each engine) and "
        "the router's own GetStatus (--router, default the global --target). Exit 1 when "
        "anything is down or unreachable, else 0.",
    )
    p.add_argument(
        "--router",
        metavar="HOST:PORT",
        default=None,
        help="router to ask for its status (default: the global --target)",
    )
    p.add_argument("--no-router", action="store_true", help="do not ask a router")
    p.set_defaults(handler=run_health)


# --- health ---------------------------------------------------------------------------------


def _worst(*statuses: str) -> str:
    return max(statuses, key=lambda s: _HEALTH_ORDER.get(s, 2))


async def _control_health(client: ControlClient, target: str) -> dict[str, Any]:
    try:
        health = await client.get_health()
    except RouterError as error:
        if error.status_code in (
            grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.PERMISSION_DENIED,
        ):
            raise
        return {"target": target, "status": "down", "error": str(error), "components": []}
    return {
        "target": target,
        "status": health_label(health.status),
        "error": None,
        "components": [
            {
                "name": c.name,
                "status": health_label(c.status),
                "detail": c.detail,
                "latency_ms": c.latency_ms,
            }
            for c in health.components
        ],
    }


def _engine_name(provider: int) -> str:
    if provider == common_pb2.PROVIDER_OLLAMA:
        return "ollama"
    if provider == common_pb2.PROVIDER_VLLM:
        return "vllm"
    return str(provider)


def _router_status(target: str, status: router_pb2.GetStatusResponse) -> dict[str, Any]:
    engines = [
        {
            "provider": _engine_name(e.provider),
            "base_url": e.base_url,
            "healthy": e.healthy,
            "detail": e.detail,
            "latency_ms": e.latency_ms,
            "age_ms": e.age_ms,
            "breaker_state": e.breaker_state,
        }
        for e in status.engines
    ]
    degraded = status.config_state not in ("synced", "standalone") or not all(
        e["healthy"] and e["breaker_state"] in ("", "closed") for e in engines
    )
    return {
        "target": target,
        "status": "degraded" if degraded else "ok",
        "error": None,
        "router_id": status.router_id,
        "config_version": status.config_version,
        "config_state": status.config_state,
        "phase": status.phase,
        "vllm_traffic_percent": status.vllm_traffic_percent,
        "active_requests": status.active_requests,
        "last_config_error": status.last_config_error,
        "engines": engines,
    }


async def _router_health(target: str, deadline_s: float) -> dict[str, Any]:
    try:
        async with RouterClient(target, timeout=deadline_s) as router:
            status = await router.get_status()
    except RouterError as error:
        return {"target": target, "status": "down", "error": str(error)}
    return _router_status(target, status)


def health_lines(document: dict[str, Any]) -> list[str]:
    control = document["control"]
    lines = [f"overall: {document['status']}", ""]
    if control["error"]:
        lines.append(f"control {control['target']}: {control['status']}: {control['error']}")
    else:
        lines.append(f"control {control['target']}: {control['status']}")
        rows = [
            [c["name"], c["status"], f"{c['latency_ms']:.1f}ms", c["detail"] or "-"]
            for c in control["components"]
        ]
        lines += format_table(["COMPONENT", "STATUS", "LATENCY", "DETAIL"], rows)
    router = document["router"]
    if router is None:
        return lines
    lines.append("")
    if router["error"]:
        lines.append(f"router {router['target']}: {router['status']}: {router['error']}")
        return lines
    lines.append(f"router {router['target']}: {router['status']}")
    lines += format_pairs(
        [
            ("router id", router["router_id"]),
            ("config", f"v{router['config_version']} {router['config_state']}"),
            ("phase", f"{router['phase']}, vllm {percent(router['vllm_traffic_percent'])}"),
            ("active requests", str(router["active_requests"])),
            ("last config error", router["last_config_error"] or "-"),
        ]
    )
    rows = [
        [
            e["provider"],
            "yes" if e["healthy"] else "no",
            f"{e['latency_ms']:.1f}ms",
            f"{e['age_ms'] / 1000:.1f}s ago",
            e["breaker_state"] or "-",
            e["base_url"],
            e["detail"] or "-",
        ]
        for e in router["engines"]
    ]
    if rows:
        lines += format_table(
            ["ENGINE", "HEALTHY", "LATENCY", "PROBED", "BREAKER", "URL", "DETAIL"], rows
        )
    return lines


def run_health(args: argparse.Namespace) -> int:
    """Runs ``health``."""
    router_target: str | None = None if args.no_router else (args.router or args.target)

    async def body(client: ControlClient) -> int:
        timeout: float = args.timeout or 5.0
        control, router = await asyncio.gather(
            _control_health(client, args.control),
            _router_health(router_target, timeout) if router_target else _none(),
        )
        overall = _worst(control["status"], *([router["status"]] if router else []))
        document = {"status": overall, "control": control, "router": router}
        emit(args, document, health_lines(document))
        return EXIT_FAILURE if overall == "down" else 0

    return run_control(args, body)


async def _none() -> None:
    return None
