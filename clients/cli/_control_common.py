"""What the control-service verbs share: options, the client, exit codes and formatting.

Exit codes of the control verbs: 0 ok; 2 usage or invalid argument; 3 illegal transition
(FAILED_PRECONDITION); 4 version conflict (ABORTED, compare-and-set); 5 not authenticated or not
allowed (UNAUTHENTICATED, PERMISSION_DENIED); 1 anything else (unreachable, internal, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import grpc
from google.protobuf import json_format, timestamp_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from clients.cli._common import print_json
from clients.gen.llmgateway.v1 import control_pb2
from clients.llm import DEFAULT_CONTROL_TIMEOUT, ControlClient, RouterError

CONTROL_ENV = "LLMCTL_CONTROL"
TOKEN_ENV = "LLMCTL_TOKEN"
DEFAULT_CONTROL = "127.0.0.1:50061"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_ILLEGAL_TRANSITION = 3
EXIT_VERSION_CONFLICT = 4
EXIT_AUTH = 5

_EXIT_BY_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: EXIT_USAGE,
    grpc.StatusCode.FAILED_PRECONDITION: EXIT_ILLEGAL_TRANSITION,
    grpc.StatusCode.ABORTED: EXIT_VERSION_CONFLICT,
    grpc.StatusCode.UNAUTHENTICATED: EXIT_AUTH,
    grpc.StatusCode.PERMISSION_DENIED: EXIT_AUTH,
}

EXIT_CODES_HELP = (
    "exit status: 0 ok, 2 usage or invalid argument, 3 illegal transition, "
    "4 version conflict (--expected-version), 5 not authenticated or not allowed, 1 other"
)

Body = Callable[[ControlClient], Awaitable[int]]


class UsageError(Exception):
    """A command-line value llmctl itself refuses (exit 2); the message names the argument."""


# --- options --------------------------------------------------------------------------------


def default_actor() -> str:
    """``$USER@hostname`` (what the audit log records when ``--actor`` is not given)."""
    user = os.environ.get("USER") or os.environ.get("LOGNAME")
    if not user:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
    return f"{user}@{socket.gethostname()}"


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    *,
    help: str,
    description: str,
    mutating: bool = False,
) -> argparse.ArgumentParser:
    """A control-verb subparser with ``--control``, ``--token`` and ``-o table|json`` (and, for
    ``mutating``, ``--reason``, ``--actor``, ``--expected-version``)."""
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=EXIT_CODES_HELP,
    )
    add_connection_options(parser)
    if mutating:
        add_change_options(parser)
    return parser


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--control",
        default=os.environ.get(CONTROL_ENV) or DEFAULT_CONTROL,
        metavar="HOST:PORT",
        help=f"control service (default ${CONTROL_ENV} or {DEFAULT_CONTROL})",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV, ""),
        help=f"operator bearer token (default ${TOKEN_ENV})",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=["table", "json"],
        default="table",
        help="table (default, aligned columns) or one JSON document on stdout",
    )


def add_change_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", default="", help="why (recorded in the audit log)")
    parser.add_argument(
        "--actor", default=None, help="who (recorded in the audit log; default $USER@hostname)"
    )
    parser.add_argument(
        "--expected-version",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="compare-and-set: fail (exit 4) unless the config is still at version N",
    )


def change_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The ``ChangeMeta`` keyword arguments of a mutating call."""
    actor: str | None = args.actor
    return {
        "actor": actor if actor else default_actor(),
        "reason": args.reason,
        "expected_version": args.expected_version,
    }


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


# --- running a verb -------------------------------------------------------------------------


def run_control(args: argparse.Namespace, body: Body, *, interrupt_ok: bool = False) -> int:
    """Runs ``body`` with a client of ``--control``; maps failures to one clear stderr report
    and the exit status. ``interrupt_ok``: Ctrl-C ends the command normally (exit 0)."""
    timeout: float | None = args.timeout

    async def go() -> int:
        async with ControlClient(
            args.control,
            token=args.token or None,
            timeout=DEFAULT_CONTROL_TIMEOUT if timeout is None else timeout,
        ) as client:
            return await body(client)

    try:
        return asyncio.run(go())
    except UsageError as error:
        error_line(str(error))
        return EXIT_USAGE
    except RouterError as error:
        report(error, args.control)
        return exit_status(error)
    except KeyboardInterrupt:
        if interrupt_ok:
            return EXIT_OK
        raise


def exit_status(error: RouterError) -> int:
    """The exit status for a failed control call."""
    return _EXIT_BY_STATUS.get(error.status_code, EXIT_FAILURE)


def error_line(text: str) -> None:
    sys.stderr.write(f"llmctl: error: {text}\n")
    sys.stderr.flush()


def report(error: RouterError, target: str) -> None:
    """One line naming what failed (plus one line per field violation of INVALID_ARGUMENT)."""
    code, message = error.status_code, error.message
    if code is grpc.StatusCode.INVALID_ARGUMENT and error.field_violations:
        lines = [f"invalid argument ({len(error.field_violations)} field(s)):"]
        lines += [f"  {field}: {description}" for field, description in error.field_violations]
        sys.stderr.write("".join(f"llmctl: error: {line}\n" for line in lines[:1]))
        sys.stderr.write("".join(f"llmctl: {line}\n" for line in lines[1:]))
        sys.stderr.flush()
        return
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        error_line(f"invalid argument: {message}")
    elif code is grpc.StatusCode.FAILED_PRECONDITION:
        error_line(f"illegal transition: {message}")
    elif code is grpc.StatusCode.ABORTED:
        error_line(f"version conflict: {message}")
    elif code is grpc.StatusCode.UNAUTHENTICATED:
        error_line(f"not authenticated: {message} (pass --token or set ${TOKEN_ENV})")
    elif code is grpc.StatusCode.PERMISSION_DENIED:
        error_line(f"permission denied: {message} (check --token or ${TOKEN_ENV})")
    elif code is grpc.StatusCode.UNAVAILABLE:
        error_line(f"control service unavailable at {target}: {message}")
    elif code is grpc.StatusCode.DEADLINE_EXCEEDED:
        error_line(f"control service at {target} did not answer in time: {message}")
    else:
        error_line(f"{code.name}: {message}" if message else code.name)


# --- values ---------------------------------------------------------------------------------


def enum_prefix(enum: EnumDescriptor) -> str:
    """The common prefix of an enum's value names (``PROVIDER_`` for Provider)."""
    return enum.values_by_number[0].name.removesuffix("UNSPECIFIED")


def enum_label(enum: EnumDescriptor, number: int, zero: str = "unspecified") -> str:
    """``vllm`` for PROVIDER_VLLM; ``zero`` for the 0 value; the number for an unknown one."""
    if number == 0:
        return zero
    value = enum.values_by_number.get(number)
    if value is None:
        return str(number)
    return value.name.removeprefix(enum_prefix(enum)).lower()


def phase_label(number: int) -> str:
    return enum_label(control_pb2.Phase.DESCRIPTOR, number, zero="none")


def status_label(number: int) -> str:
    return enum_label(control_pb2.RolloutStatus.DESCRIPTOR, number)


def router_state_label(number: int) -> str:
    return enum_label(control_pb2.RouterState.DESCRIPTOR, number)


def health_label(number: int) -> str:
    return enum_label(control_pb2.HealthStatus.DESCRIPTOR, number)


# Labels of a field's 0 value where it means something (proto comments).
_ZERO_LABELS: dict[str, str] = {"Provider": "none", "ComponentProvider": "primary"}


def descriptor_of(message: Message) -> Descriptor:
    """``message.DESCRIPTOR`` as the pure-Python descriptor type (the C one is the same API)."""
    return cast(Descriptor, message.DESCRIPTOR)


def fields_of(descriptor: Descriptor) -> list[FieldDescriptor]:
    """A message type's fields, in declaration order."""
    return list(descriptor.fields)


def field_by_name(descriptor: Descriptor, name: str) -> FieldDescriptor | None:
    return descriptor.fields_by_name.get(name)


def enum_type(field: FieldDescriptor) -> EnumDescriptor:
    enum = field.enum_type
    if enum is None:
        raise TypeError(f"{field.full_name} is not an enum field")
    return enum


def message_type(field: FieldDescriptor) -> Descriptor:
    message = field.message_type
    if message is None:
        raise TypeError(f"{field.full_name} is not a message field")
    return message


def field_value(field: FieldDescriptor, value: Any) -> Any:
    """A scalar or enum field's value as shown to operators (enums by short lowercase name)."""
    if field.type == FieldDescriptor.TYPE_ENUM:
        enum = enum_type(field)
        return enum_label(enum, int(value), _ZERO_LABELS.get(enum.name, "unspecified"))
    if field.type in _INT64_TYPES:
        return int(value)
    return value


_INT64_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)


def message_dict(message: Message) -> dict[str, Any]:
    """``json_format``'s proto3 JSON mapping of ``message`` (field names as declared, defaults
    included, well-known types such as Timestamp as their JSON strings) with two llmctl
    conventions over it: enums by short lowercase label (``vllm``, as every other llmctl output
    writes them, not ``PROVIDER_VLLM``) and 64-bit integers as JSON numbers, not strings
    (scripts compare counts; none here comes near 2**53)."""
    document = json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        use_integers_for_enums=True,
    )
    return _relabel(descriptor_of(message), document)


def _relabel(descriptor: Descriptor, document: dict[str, Any]) -> dict[str, Any]:
    for name, value in document.items():
        field = descriptor.fields_by_name[name]
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            inner = field.message_type.fields_by_name["value"]
            document[name] = {k: _item(inner, v) for k, v in value.items()}
        elif field.is_repeated:
            document[name] = [_item(field, v) for v in value]
        else:
            document[name] = _item(field, value)
    return document


def _item(field: FieldDescriptor, value: Any) -> Any:
    message = field.message_type
    if message is not None:
        # Well-known types (Timestamp, Duration, ...) are already their JSON form.
        return (
            value if message.full_name.startswith("google.protobuf.") else _relabel(message, value)
        )
    return field_value(field, value)


def flat_items(value: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``{"a": {"b": 1}}`` as ``[("a.b", 1)]``, in field order."""
    items: list[tuple[str, Any]] = []
    for key, inner in value.items():
        path = f"{prefix}{key}"
        if isinstance(inner, dict):
            items.extend(flat_items(inner, f"{path}."))
        else:
            items.append((path, inner))
    return items


def show(value: Any) -> str:
    """A value in a table cell (lists as compact JSON)."""
    if isinstance(value, list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "-"
    return str(value)


def percent(value: float) -> str:
    return f"{value:g}%"


# --- times ----------------------------------------------------------------------------------


def _seconds(ts: timestamp_pb2.Timestamp) -> float | None:
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return ts.seconds + ts.nanos / 1e9


def iso_time(ts: timestamp_pb2.Timestamp) -> str | None:
    """RFC 3339 in UTC (JSON output); None when unset."""
    seconds = _seconds(ts)
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def ago(ts: timestamp_pb2.Timestamp, now: float | None = None) -> str:
    """``5s ago``, ``3m ago``, ``2h ago``, ``4d ago``; ``-`` when unset."""
    seconds = _seconds(ts)
    if seconds is None:
        return "-"
    delta = max(0.0, (time.time() if now is None else now) - seconds)
    if delta < 60:
        return f"{delta:.0f}s ago"
    if delta < 3600:
        return f"{delta / 60:.0f}m ago"
    if delta < 86400:
        return f"{delta / 3600:.0f}h ago"
    return f"{delta / 86400:.0f}d ago"


def local_time(ts: timestamp_pb2.Timestamp) -> str:
    """``2025-06-01 12:00:05`` in local time; ``-`` when unset."""
    seconds = _seconds(ts)
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


# --- snapshots and routers ------------------------------------------------------------------


def phase_text(snap: control_pb2.ConfigSnapshot) -> str:
    """``split 30%``, ``shadow``, ``facade (aborted from split 30%)``."""
    m = snap.migration
    text = phase_label(m.phase)
    if m.phase == control_pb2.PHASE_SPLIT:
        text += f" {m.split_weight_percent}%"
    if m.status == control_pb2.ROLLOUT_STATUS_ABORTED:
        left = phase_label(m.aborted_phase)
        if m.aborted_phase == control_pb2.PHASE_SPLIT:
            left += f" {m.aborted_weight_percent}%"
        text += f" (aborted from {left})"
    return text


def status_text(snap: control_pb2.ConfigSnapshot) -> str:
    m = snap.migration
    text = status_label(m.status)
    return f"{text}: {m.status_reason}" if m.status_reason else text


def snapshot_dict(snap: control_pb2.ConfigSnapshot) -> dict[str, Any]:
    """The migration part of a snapshot, for JSON output."""
    m = snap.migration
    aborted = m.status == control_pb2.ROLLOUT_STATUS_ABORTED
    return {
        "version": snap.version,
        "phase": phase_label(m.phase),
        "status": status_label(m.status),
        "status_reason": m.status_reason,
        "split_weight_percent": m.split_weight_percent,
        "split_steps": list(m.split_steps),
        "vllm_traffic_percent": snap.vllm_traffic_percent,
        "aborted_phase": phase_label(m.aborted_phase) if aborted else None,
        "aborted_weight_percent": m.aborted_weight_percent if aborted else None,
        "automatic_rollbacks": m.automatic_rollbacks,
        "last_rollback_at": iso_time(m.last_rollback_at),
        "created_at": iso_time(snap.created_at),
    }


def snapshot_rows(snap: control_pb2.ConfigSnapshot) -> list[tuple[str, str]]:
    """The migration part of a snapshot as key/value rows."""
    m = snap.migration
    steps = ", ".join(str(s) for s in m.split_steps)
    rollbacks: list[tuple[str, str]] = []
    if m.automatic_rollbacks:
        last = f"last {ago(m.last_rollback_at)}, {local_time(m.last_rollback_at)}"
        rollbacks.append(("auto rollbacks", f"{m.automatic_rollbacks} ({last})"))
    return [
        (
            "version",
            f"{snap.version} (changed {ago(snap.created_at)}, {local_time(snap.created_at)})",
        ),
        ("phase", f"{phase_text(snap)} (split steps {steps})"),
        ("status", status_text(snap)),
        ("vllm traffic", percent(snap.vllm_traffic_percent)),
        *rollbacks,
    ]


def router_dict(r: control_pb2.RouterInfo) -> dict[str, Any]:
    return {
        "router_id": r.router_id,
        "address": r.address,
        "state": router_state_label(r.state),
        "connected": r.connected,
        "applied_version": r.applied_version,
        "last_sent_version": r.last_sent_version,
        "last_nack_version": r.last_nack_version,
        "last_nack_reason": r.last_nack_reason,
        "connected_since": iso_time(r.connected_since),
        "last_seen": iso_time(r.last_seen),
    }


# --- printing -------------------------------------------------------------------------------


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        padded = [c.ljust(widths[i]) for i, c in enumerate(cells[:-1])]
        return "  ".join([*padded, cells[-1]]).rstrip()

    return [line(list(headers)), *(line(list(r)) for r in rows)]


def format_pairs(rows: Sequence[tuple[str, str]]) -> list[str]:
    """``key   value`` lines with the values aligned."""
    width = max((len(k) for k, _ in rows), default=0)
    return [f"{k.ljust(width)}  {v}".rstrip() for k, v in rows]


def write_lines(lines: Sequence[str]) -> None:
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    sys.stdout.flush()


def emit(args: argparse.Namespace, document: dict[str, Any], lines: Sequence[str]) -> None:
    """``document`` as JSON with ``-o json``, else ``lines``."""
    if args.output == "json":
        print_json(document)
    else:
        write_lines(lines)
