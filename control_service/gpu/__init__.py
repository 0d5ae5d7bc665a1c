"""GPU telemetry (NVML), OOM detection, VRAM stability and VRAM-aware model selection.

Plain Python: nothing here imports grpc, protobuf or pydantic (``scripts/gpu_check.py`` runs
with only python3, nvidia-ml-py and this repository), and ``pynvml`` itself is imported only when
the NVML backend initialises. ``control_service.gpu.fake`` holds the fake NVML used by tests and
by ``gpu_backend: fake``. See docs/gpu.md.
"""

from control_service.gpu.backend import DisabledBackend, GpuBackend, GpuLost, GpuUnavailable
from control_service.gpu.monitor import GpuMetricsSnapshot, GpuMonitor, MonitorConfig
from control_service.gpu.nvml import NvmlBackend
from control_service.gpu.oom import OomDetector, OomEvent
from control_service.gpu.readings import GB, MIB, DeviceReading, GpuProcess, GpuStatus
from control_service.gpu.sampler import GpuSampler
from control_service.gpu.stability import StabilityThresholds, StabilityVerdict

__all__ = [
    "GB",
    "MIB",
    "DeviceReading",
    "DisabledBackend",
    "GpuBackend",
    "GpuLost",
    "GpuMetricsSnapshot",
    "GpuMonitor",
    "GpuProcess",
    "GpuSampler",
    "GpuStatus",
    "GpuUnavailable",
    "MonitorConfig",
    "NvmlBackend",
    "OomDetector",
    "OomEvent",
    "StabilityThresholds",
    "StabilityVerdict",
]
