"""How proto values read for operators: enum labels, messages as JSON documents, table cells,
times, and the snapshot and router views every control verb shows.

Pure formatting (no I/O, no grpc): the verbs in ``_control_*``, ``_gpu``, ``_shadow`` and the
drill (through :mod:`clients.cli.api`) print what these return.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any, cast

from google.protobuf import json_format, timestamp_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from clients.gen.llmgateway.v1 import common_pb2, control_pb2


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


def mirroring_text(snap: control_pb2.ConfigSnapshot) -> str:
    """``on: 5% of episodes to vllm`` or ``off`` with the reason an operator can act on."""
    f = snap.flags
    if snap.mirroring:
        target = common_pb2.Provider.Name(f.shadow_provider).removeprefix("PROVIDER_").lower()
        return f"on: {f.shadow_sample_rate:.0%} of episodes to {target}"
    if snap.migration.phase == control_pb2.PHASE_SPLIT:
        return "off (set shadow_enabled and shadow_during_split to mirror during SPLIT)"
    return "off"


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
        "mirroring": snap.mirroring,
        "shadow_sample_rate": snap.flags.shadow_sample_rate,
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
        ("mirroring", mirroring_text(snap)),
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
