"""GPU telemetry as plain, immutable data (no grpc, no pydantic, no pynvml).

A metric the device or driver does not support is ``None`` and named in ``absent`` with the
reason NVML gave, never a zero: a zero watt draw and "power not supported" are different facts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GB = 1_000_000_000
"""Model sizes, budgets and headroom are in decimal gigabytes (10^9 bytes), like Ollama's."""
MIB = 1024 * 1024
"""nvidia-smi reports memory in MiB."""


@dataclass(frozen=True, slots=True)
class GpuProcess:
    """A compute process on a GPU (host PID namespace)."""

    pid: int
    # None when the driver does not say (WDDM, some containers).
    used_memory_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class DeviceReading:
    """One GPU at one instant. Every metric is optional (see the module docstring)."""

    index: int
    name: str = ""
    uuid: str = ""
    memory_total_bytes: int | None = None
    # With memory_api "v2" used excludes reserved; with "v1" it includes it.
    memory_used_bytes: int | None = None
    memory_free_bytes: int | None = None
    memory_reserved_bytes: int | None = None
    memory_api: str = ""
    utilization_gpu_percent: int | None = None
    utilization_memory_percent: int | None = None
    temperature_celsius: int | None = None
    power_draw_watts: float | None = None
    power_limit_watts: float | None = None
    # None: the process list is not available (see ``absent["processes"]``).
    processes: tuple[GpuProcess, ...] | None = None
    # Metric name -> why it is absent ("Not Supported", "Insufficient Permissions", ...).
    absent: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The device's identity across polls: its UUID, else its index."""
        return self.uuid or f"index:{self.index}"

    @property
    def has_memory(self) -> bool:
        return self.memory_total_bytes is not None and self.memory_free_bytes is not None


@dataclass(frozen=True, slots=True)
class GpuStatus:
    """One poll of every GPU, or why there is no telemetry."""

    available: bool
    reason: str
    sampled_at: float
    devices: tuple[DeviceReading, ...] = ()
    driver_version: str = ""

    @property
    def max_free_bytes(self) -> int | None:
        """The most free memory on one device (models are not split across GPUs here)."""
        free = [d.memory_free_bytes for d in self.devices if d.memory_free_bytes is not None]
        return max(free) if self.available and free else None

    @property
    def max_total_bytes(self) -> int | None:
        total = [d.memory_total_bytes for d in self.devices if d.memory_total_bytes is not None]
        return max(total) if self.available and total else None


NOT_SAMPLED = GpuStatus(False, "GPU telemetry has not sampled yet", 0.0)
