"""``llmctl status|routers|history|health``: read the control service (and a router)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import grpc

from clients.cli._common import Subparsers, print_json
from clients.cli._control_common import (
    EXIT_FAILURE,
    add_parser,
    ago,
    emit,
    format_pairs,
    format_table,
    health_label,
    iso_time,
    local_time,
    percent,
    router_dict,
    router_state_label,
    run_control,
    snapshot_dict,
    snapshot_rows,
    write_lines,
)
from clients.gen.llmgateway.v1 import common_pb2, control_pb2, router_pb2
from clients.llm import ControlClient, RouterClient, RouterError

MAX_PAGE = 1000
_TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
_HEALTH_ORDER = {"ok": 0, "degraded": 1, "down": 2}


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def register(subparsers: Subparsers) -> None:
    """Adds ``status``, ``routers``, ``history`` and ``health``."""
    p = add_parser(
        subparsers,
        "status",
        help="show the migration phase, config version and routers",
        description="Shows the phase, status (active/paused/aborted), vLLM share, config version "
        "and each router's state. --watch re-prints on every change until Ctrl-C.",
    )
    p.add_argument("-w", "--watch", action="store_true", help="re-print on change until Ctrl-C")
    p.add_argument(
        "--interval",
        type=_positive_float,
        default=1.0,
        metavar="SECONDS",
        help="poll interval of --watch (default 1)",
    )
    # Stop --watch after this many prints (tests and scripts).
    p.add_argument("--watch-count", type=_positive_int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(handler=run_status)

    p = add_parser(
        subparsers,
        "routers",
        help="list the routers the control service knows",
        description="Lists every router seen since the control service started: state, the "
        "version it applied, and the last version it refused (NACK) with the reason.",
    )
    p.set_defaults(handler=run_routers)

    p = add_parser(
        subparsers,
        "history",
        help="show the audit log, newest first",
        description="Pages through the audit log (every accepted change), newest first.",
    )
    p.add_argument(
        "--limit", type=_positive_int, default=20, metavar="N", help="events to show (default 20)"
    )
    p.add_argument(
        "--before",
        type=_positive_int,
        default=0,
        metavar="VERSION",
        help="only events older than VERSION (the next page)",
    )
    p.set_defaults(handler=run_history)

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


# --- status ---------------------------------------------------------------------------------


def status_document(state: control_pb2.GetStateResponse) -> dict[str, Any]:
    routers = [router_dict(r) for r in state.routers]
    return {
        **snapshot_dict(state.snapshot),
        "routers_connected": sum(r.connected for r in state.routers),
        "routers_synced": sum(r.state == control_pb2.ROUTER_STATE_SYNCED for r in state.routers),
        "routers": routers,
    }


def status_lines(state: control_pb2.GetStateResponse) -> list[str]:
    routers = state.routers
    connected = sum(r.connected for r in routers)
    synced = sum(r.state == control_pb2.ROUTER_STATE_SYNCED for r in routers)
    summary = f"{connected} connected, {synced} synced" + (
        f" ({len(routers)} known)" if len(routers) != connected else ""
    )
    lines = format_pairs([*snapshot_rows(state.snapshot), ("routers", summary)])
    if routers:
        rows = [
            [
                r.router_id,
                router_state_label(r.state),
                str(r.applied_version),
                "yes" if r.connected else "no",
                ago(r.last_seen),
            ]
            for r in routers
        ]
        lines += ["", *format_table(["ROUTER", "STATE", "APPLIED", "CONNECTED", "LAST SEEN"], rows)]
    return lines


def _fingerprint(state: control_pb2.GetStateResponse) -> str:
    """What --watch compares: the snapshot and each router's state, not its last-seen time."""
    routers = [
        (r.router_id, r.state, r.connected, r.applied_version, r.last_nack_version)
        for r in state.routers
    ]
    return json.dumps([state.snapshot.version, routers])


def run_status(args: argparse.Namespace) -> int:
    """Runs ``status`` (and ``status --watch``)."""

    async def once(client: ControlClient) -> int:
        state = await client.get_state()
        emit(args, status_document(state), status_lines(state))
        return 0

    async def watch(client: ControlClient) -> int:
        last, printed, unavailable = "", 0, False
        while args.watch_count is None or printed < args.watch_count:
            try:
                state = await client.get_state()
            except RouterError as error:
                if error.status_code not in _TRANSIENT:
                    raise
                if not unavailable:
                    sys.stderr.write(f"llmctl: control service unavailable, retrying: {error}\n")
                    sys.stderr.flush()
                unavailable = True
                await asyncio.sleep(args.interval)
                continue
            unavailable = False
            fingerprint = _fingerprint(state)
            if fingerprint != last:
                last = fingerprint
                if args.output == "json":
                    print_json(status_document(state))
                else:
                    header = f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} ---"
                    write_lines([*([""] if printed else []), header, *status_lines(state)])
                printed += 1
                continue
            await asyncio.sleep(args.interval)
        return 0

    if args.watch:
        return run_control(args, watch, interrupt_ok=True)
    return run_control(args, once)


# --- routers --------------------------------------------------------------------------------


def run_routers(args: argparse.Namespace) -> int:
    """Runs ``routers``."""

    async def body(client: ControlClient) -> int:
        state = await client.get_state()
        version = state.snapshot.version
        rows = [
            [
                r.router_id,
                r.address or "-",
                router_state_label(r.state),
                "yes" if r.connected else "no",
                str(r.applied_version),
                str(r.last_sent_version),
                ago(r.last_seen),
                f"v{r.last_nack_version}: {r.last_nack_reason}" if r.last_nack_version else "-",
            ]
            for r in state.routers
        ]
        headers = ["ROUTER", "ADDRESS", "STATE", "CONNECTED", "APPLIED", "SENT", "LAST SEEN"]
        lines = [f"config version {version}: {len(rows)} router(s)"]
        if rows:
            lines += format_table([*headers, "LAST NACK"], rows)
        emit(args, {"version": version, "routers": [router_dict(r) for r in state.routers]}, lines)
        return 0

    return run_control(args, body)


# --- history --------------------------------------------------------------------------------


def _loads(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {"?": text}
    return value if isinstance(value, dict) else {"?": value}


def _plain(value: Any, most: int = 40) -> str:
    if value is None:
        text = "none"
    elif isinstance(value, str):
        text = value if value else '""'
    else:
        text = json.dumps(value)
    return text if len(text) <= most else text[: most - 3] + "..."


def change_text(before: dict[str, Any], after: dict[str, Any], most: int = 4) -> str:
    """``migration.phase: FACADE -> SHADOW, ...`` (at most ``most`` keys, then ``+N more``)."""
    keys = sorted(before.keys() | after.keys())
    parts = [f"{k}: {_plain(before.get(k))} -> {_plain(after.get(k))}" for k in keys[:most]]
    if len(keys) > most:
        parts.append(f"+{len(keys) - most} more")
    return ", ".join(parts) or "-"


def run_history(args: argparse.Namespace) -> int:
    """Runs ``history``."""

    async def body(client: ControlClient) -> int:
        events: list[control_pb2.AuditEvent] = []
        before: int = args.before
        more = 0
        while len(events) < args.limit:
            page = await client.list_events(
                page_size=min(MAX_PAGE, args.limit - len(events)), before_version=before
            )
            events.extend(page.events)
            more = page.next_before_version
            if not more or not page.events:
                break
            before = more
        events = events[: args.limit]
        documents: list[dict[str, Any]] = [
            {
                "version": e.version,
                "time": iso_time(e.time),
                "actor": e.actor,
                "action": e.action,
                "reason": e.reason,
                "before": _loads(e.before_json),
                "after": _loads(e.after_json),
            }
            for e in events
        ]
        rows = [
            [
                str(d["version"]),
                f"{local_time(e.time)} ({ago(e.time)})",
                e.actor or "-",
                e.action,
                e.reason or "-",
                change_text(d["before"], d["after"]),
            ]
            for e, d in zip(events, documents, strict=True)
        ]
        headers = ["VERSION", "TIME", "ACTOR", "ACTION", "REASON", "CHANGE"]
        emit(
            args,
            {"events": documents, "next_before_version": more},
            format_table(headers, rows) if rows else ["no events"],
        )
        if more and args.output != "json":
            sys.stderr.write(f"llmctl: older events: llmctl history --before {more}\n")
            sys.stderr.flush()
        return 0

    return run_control(args, body)


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
