"""``llmctl status|routers|history``: read the control service's state and audit log."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import grpc

from clients.cli._common import Subparsers, positive_float, positive_int, print_json
from clients.cli._control_common import add_parser, run_control
from clients.cli._output import WatchView, emit, format_pairs, format_table
from clients.cli._values import (
    ago,
    iso_time,
    local_time,
    router_dict,
    router_state_label,
    snapshot_dict,
    snapshot_rows,
)
from clients.gen.llmgateway.v1 import control_pb2
from clients.llm import ControlClient, RouterError

MAX_PAGE = 1000
_TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def register(subparsers: Subparsers) -> None:
    """Adds ``status``, ``routers`` and ``history``."""
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
        type=positive_float,
        default=1.0,
        metavar="SECONDS",
        help="poll interval of --watch (default 1)",
    )
    # Stop --watch after this many prints (tests and scripts).
    p.add_argument("--watch-count", type=positive_int, default=None, help=argparse.SUPPRESS)
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
        "--limit", type=positive_int, default=20, metavar="N", help="events to show (default 20)"
    )
    p.add_argument(
        "--before",
        type=positive_int,
        default=0,
        metavar="VERSION",
        help="only events older than VERSION (the next page)",
    )
    p.set_defaults(handler=run_history)


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
        with WatchView() as view:
            return await _watch(client, view)

    async def _watch(client: ControlClient, view: WatchView) -> int:
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
                    view.show(status_lines(state))
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
