"""The seam between telemetry and the GPU library: :class:`GpuBackend`.

Implementations: :class:`control_service.gpu.nvml.NvmlBackend` (nvidia-ml-py) and, for tests
and demos, the same backend over :class:`control_service.gpu.fake.FakeNvml`; plus
:class:`DisabledBackend` for ``gpu_backend: off``. Calls block (NVML is a C library): the
poller runs them in a worker thread, never on the event loop.
"""

from __future__ import annotations

from typing import Protocol

from control_service.gpu.readings import DeviceReading


class GpuUnavailable(Exception):
    """No telemetry: no library, no driver, no device. ``reason`` is for operators."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class GpuLost(GpuUnavailable):
    """Telemetry worked and stopped (GPU fell off the bus, driver reset, unknown NVML error)."""


class GpuBackend(Protocol):
    """What the poller needs from a GPU library. Only :meth:`init`, :meth:`device_count` and
    :meth:`read` may raise, and only :class:`GpuUnavailable` (or :class:`GpuLost`): a metric a
    device does not support is absent from its :class:`DeviceReading`, not an error."""

    def init(self) -> None:
        """Load and initialise the library (raises :class:`GpuUnavailable`)."""

    def shutdown(self) -> None:
        """Release the library; never raises. :meth:`init` may be called again afterwards."""

    def driver_version(self) -> str:
        """The driver's version, or "" when unknown; never raises."""

    def device_count(self) -> int:
        """How many GPUs there are."""

    def read(self, index: int) -> DeviceReading:
        """Every metric of GPU ``index``."""


class DisabledBackend:
    """``gpu_backend: off``: telemetry is unavailable, saying so."""

    def __init__(self, reason: str = "GPU telemetry is switched off (gpu_backend: off)") -> None:
        self._reason = reason

    def init(self) -> None:
        raise GpuUnavailable(self._reason)

    def shutdown(self) -> None:
        return None

    def driver_version(self) -> str:
        return ""

    def device_count(self) -> int:
        return 0

    def read(self, index: int) -> DeviceReading:
        raise GpuUnavailable(self._reason)
