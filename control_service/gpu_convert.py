"""GPU telemetry and model selection <-> protobuf. Imports the generated ``_pb2``, never grpc.

Absent metrics stay unset (the proto fields are ``optional``), never zero.
"""

from __future__ import annotations

from typing import Any

from clients.gen.llmgateway.v1 import common_pb2, control_pb2
from control_service.convert import PROVIDER_FROM_PROTO, PROVIDER_TO_PROTO, TASK_TO_PROTO, timestamp
from control_service.errors import FieldViolation, InvalidChange
from control_service.gpu.monitor import GpuMonitor
from control_service.gpu.readings import DeviceReading, GpuStatus
from control_service.gpu.selector import Selection
from llmcore.vocabulary import ProviderName, TaskName

RECENT_OOM_EVENTS = 20
_TASK_FROM_PROTO: dict[int, TaskName] = {v: k for k, v in TASK_TO_PROTO.items()}


def _set(**fields: Any) -> dict[str, Any]:
    """Keyword arguments without the ``None`` ones (unset optional fields)."""
    return {k: v for k, v in fields.items() if v is not None}


def device_to_proto(d: DeviceReading, oom_events: int) -> control_pb2.GpuDevice:
    processes = [
        control_pb2.GpuProcess(pid=p.pid, **_set(used_memory_bytes=p.used_memory_bytes))
        for p in d.processes or ()
    ]
    return control_pb2.GpuDevice(
        index=d.index,
        name=d.name,
        uuid=d.uuid,
        memory_api=d.memory_api,
        processes=processes,
        absent_metrics=d.absent,
        oom_events=oom_events,
        **_set(
            memory_total_bytes=d.memory_total_bytes,
            memory_used_bytes=d.memory_used_bytes,
            memory_free_bytes=d.memory_free_bytes,
            memory_reserved_bytes=d.memory_reserved_bytes,
            utilization_gpu_percent=d.utilization_gpu_percent,
            utilization_memory_percent=d.utilization_memory_percent,
            temperature_celsius=d.temperature_celsius,
            power_draw_watts=d.power_draw_watts,
            power_limit_watts=d.power_limit_watts,
        ),
    )


def status_to_proto(status: GpuStatus, monitor: GpuMonitor) -> control_pb2.GpuStatus:
    """``status`` with the monitor's OOM counts and recent events."""
    events = monitor.oom_events()[:RECENT_OOM_EVENTS]
    return control_pb2.GpuStatus(
        available=status.available,
        unavailable_reason=status.reason,
        sampled_at=timestamp(status.sampled_at) if status.sampled_at else None,
        devices=[device_to_proto(d, monitor.oom_count(d.key)) for d in status.devices],
        driver_version=status.driver_version,
        oom_events_total=monitor.oom_count(),
        recent_oom_events=[
            control_pb2.OomEvent(
                time=timestamp(e.time), device_index=e.device_index, kind=e.kind, detail=e.detail
            )
            for e in events
        ],
        poll_interval_seconds=monitor.config.interval_s,
    )


def selection_to_proto(s: Selection) -> control_pb2.SelectModelResponse:
    return control_pb2.SelectModelResponse(
        model=s.model or "",
        reason=s.reason,
        candidates=[
            control_pb2.ModelCandidate(
                model=c.model, vram_bytes=c.vram_bytes, fits=c.fits, reason=c.reason
            )
            for c in s.candidates
        ],
        provider=PROVIDER_TO_PROTO[s.engine],
        limit_bytes=s.limit_bytes,
        headroom_bytes=s.headroom_bytes,
        gpu_available=s.gpu_available,
        gpu_unavailable_reason="" if s.gpu_available else s.gpu_reason,
        current_model=s.current_model,
        **_set(budget_bytes=s.budget_bytes, free_bytes=s.free_bytes),
    )


def task_from_proto(value: int, path: str = "task") -> TaskName:
    """A task named explicitly: TASK_UNSPECIFIED and unknown values are INVALID_ARGUMENT."""
    if value == common_pb2.TASK_UNSPECIFIED:
        raise InvalidChange([FieldViolation(path, "must name a task")])
    task = _TASK_FROM_PROTO.get(value)
    if task is None:
        raise InvalidChange([FieldViolation(path, f"unknown task value {value}")])
    return task


def provider_from_proto(value: int, path: str = "provider") -> ProviderName | None:
    """None for PROVIDER_UNSPECIFIED; INVALID_ARGUMENT for an unknown value."""
    if value not in PROVIDER_FROM_PROTO:
        raise InvalidChange([FieldViolation(path, f"unknown provider value {value}")])
    return PROVIDER_FROM_PROTO[value]
