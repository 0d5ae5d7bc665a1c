"""A fake of the nvidia-ml-py (``pynvml``) API over a scripted device set, shipped for tests
and demos (``gpu_backend: fake``). Pass it to :class:`~control_service.gpu.nvml.NvmlBackend`
(or use :func:`fake_backend`) and the real backend code runs: error mapping, v2→v1 memory
fallback, the ``_v3`` process-list mismatch, per-metric "Not Supported".

Only the calls the backend makes exist. Error classes carry pynvml's names, codes and messages.
Tests change devices between polls with :meth:`FakeNvml.update`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from control_service.gpu.nvml import NvmlBackend
from control_service.gpu.readings import MIB

# --- pynvml's exception classes (names, codes and messages as in pynvml.py) ------------------


class NVMLError(Exception):
    value = 999
    message = "Unknown Error"

    def __str__(self) -> str:
        return self.message


class NVMLError_Uninitialized(NVMLError):
    value, message = 1, "Uninitialized"


class NVMLError_NotSupported(NVMLError):
    value, message = 3, "Not Supported"


class NVMLError_NoPermission(NVMLError):
    value, message = 4, "Insufficient Permissions"


class NVMLError_DriverNotLoaded(NVMLError):
    value, message = 9, "Driver Not Loaded"


class NVMLError_LibraryNotFound(NVMLError):
    value, message = 12, "NVML Shared Library Not Found"


class NVMLError_FunctionNotFound(NVMLError):
    value, message = 13, "Function Not Found"


class NVMLError_GpuIsLost(NVMLError):
    value, message = 15, "GPU is lost"


class NVMLError_Unknown(NVMLError):
    value, message = 999, "Unknown Error"


class NVMLLibraryMismatchError(Exception):
    pass


ERRORS: dict[str, type[NVMLError]] = {
    cls.__name__.removeprefix("NVMLError_"): cls
    for cls in (
        NVMLError_Uninitialized,
        NVMLError_NotSupported,
        NVMLError_NoPermission,
        NVMLError_DriverNotLoaded,
        NVMLError_LibraryNotFound,
        NVMLError_FunctionNotFound,
        NVMLError_GpuIsLost,
        NVMLError_Unknown,
    )
}
"""Error class by short name (``"NotSupported"``), for :attr:`FakeDevice.unsupported`."""

Metric = Literal[
    "name",
    "uuid",
    "memory",
    "utilization",
    "temperature",
    "power_draw",
    "power_limit",
    "processes",
]


@dataclass
class FakeDevice:
    """One scripted GPU (defaults: the seed's 24 GB TITAN RTX, idle). Memory follows v2:
    ``free = total - reserved - used``; v1 reports ``used + reserved`` as used."""

    name: str = "NVIDIA TITAN RTX"
    uuid: str = "GPU-00000000-fake-0000-0000-000000000000"
    total: int = 24576 * MIB
    used: int = 0
    reserved: int = 303 * MIB
    utilization_gpu: int = 0
    utilization_memory: int = 0
    temperature: int = 35
    power_mw: int = 18_000
    power_limit_mw: int = 280_000
    # (pid, used bytes or None)
    processes: list[tuple[int, int | None]] = field(default_factory=list)
    # Metric -> short error name raised for it, e.g. {"power_draw": "NotSupported"}.
    unsupported: dict[Metric, str] = field(default_factory=dict)
    # Every call on a lost device raises NVMLError_GpuIsLost (or ``lost_error``).
    lost: bool = False
    lost_error: str = "GpuIsLost"

    @property
    def free(self) -> int:
        return max(0, self.total - self.reserved - self.used)


@dataclass(frozen=True)
class _Memory:
    total: int
    used: int
    free: int
    reserved: int | None = None
    version: int | None = None


@dataclass(frozen=True)
class _Utilization:
    gpu: int
    memory: int


@dataclass(frozen=True)
class _Process:
    pid: int
    usedGpuMemory: int | None


class FakeNvml:
    """A stand-in for the ``pynvml`` module.

    ``init_error``: short error name ``nvmlInit`` raises (``"LibraryNotFound"``: no GPU,
    ``"DriverNotLoaded"``). ``memory_v2``: ``"ok"``, ``"function_not_found"`` (old driver) or
    ``"no_attribute"`` (old bindings without ``nvmlMemory_v2``). ``processes_v3=False``: the
    unversioned process list raises ``NVMLLibraryMismatchError`` (driver without ``_v3``).
    """

    NVMLError = NVMLError
    NVMLLibraryMismatchError = NVMLLibraryMismatchError
    NVMLError_Uninitialized = NVMLError_Uninitialized
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_NoPermission = NVMLError_NoPermission
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_FunctionNotFound = NVMLError_FunctionNotFound
    NVMLError_GpuIsLost = NVMLError_GpuIsLost
    NVMLError_Unknown = NVMLError_Unknown
    NVML_TEMPERATURE_GPU = 0
    _MEMORY_V2 = 0x02000028

    def __init__(
        self,
        devices: list[FakeDevice] | None = None,
        *,
        init_error: str | None = None,
        driver_version: str = "550.127.05",
        memory_v2: Literal["ok", "function_not_found", "no_attribute"] = "ok",
        processes_v3: bool = True,
    ) -> None:
        self.devices: list[FakeDevice] = list(devices) if devices is not None else [FakeDevice()]
        self.init_error = init_error
        self.driver = driver_version
        self.memory_v2 = memory_v2
        self.processes_v3 = processes_v3
        self.initialized = False
        self.init_calls = 0
        self.shutdown_calls = 0
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes not set above: nvmlMemory_v2 is absent on request.
        if name == "nvmlMemory_v2" and self.memory_v2 != "no_attribute":
            return self._MEMORY_V2
        raise AttributeError(name)

    # --- scripting -------------------------------------------------------------------------

    def update(self, index: int, **changes: Any) -> None:
        """Change device ``index`` (its :class:`FakeDevice` fields) atomically between calls."""
        with self.lock:
            self.devices[index] = replace(self.devices[index], **changes)

    def set_devices(self, devices: list[FakeDevice]) -> None:
        with self.lock:
            self.devices = list(devices)

    # --- the pynvml API --------------------------------------------------------------------

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def _device(self, handle: int, metric: Metric | None = None) -> FakeDevice:
        if not self.initialized:
            raise NVMLError_Uninitialized()
        if handle >= len(self.devices):
            raise NVMLError_GpuIsLost()
        device = self.devices[handle]
        if device.lost:
            raise ERRORS[device.lost_error]()
        if metric is not None and metric in device.unsupported:
            raise ERRORS[device.unsupported[metric]]()
        return device

    def nvmlInit(self) -> None:
        self.init_calls += 1
        if self.init_error is not None:
            raise ERRORS[self.init_error]()
        self.initialized = True

    def nvmlShutdown(self) -> None:
        self.shutdown_calls += 1
        if not self.initialized:
            raise NVMLError_Uninitialized()
        self.initialized = False

    def nvmlSystemGetDriverVersion(self) -> str:
        if not self.initialized:
            raise NVMLError_Uninitialized()
        return self.driver

    def nvmlDeviceGetCount(self) -> int:
        with self.lock:
            if not self.initialized:
                raise NVMLError_Uninitialized()
            return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        with self.lock:
            self._device(index)
            return index

    def nvmlDeviceGetName(self, handle: int) -> str:
        with self.lock:
            return self._device(handle, "name").name

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        with self.lock:
            return self._device(handle, "uuid").uuid

    def nvmlDeviceGetMemoryInfo(self, handle: int, version: int | None = None) -> _Memory:
        with self.lock:
            if version:
                self._count("memory_v2")
                if self.memory_v2 == "function_not_found":
                    raise NVMLError_FunctionNotFound()
                d = self._device(handle, "memory")
                return _Memory(d.total, d.used, d.free, d.reserved, version)
            self._count("memory_v1")
            d = self._device(handle, "memory")
            return _Memory(d.total, d.used + d.reserved, d.free)

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> _Utilization:
        with self.lock:
            d = self._device(handle, "utilization")
            return _Utilization(d.utilization_gpu, d.utilization_memory)

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        with self.lock:
            return self._device(handle, "temperature").temperature

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        with self.lock:
            return self._device(handle, "power_draw").power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:
        with self.lock:
            return self._device(handle, "power_limit").power_limit_mw

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[_Process]:
        with self.lock:
            self._count("processes_v3")
            if not self.processes_v3:
                # pynvml's @throwOnVersionMismatch turns FunctionNotFound into this.
                raise NVMLLibraryMismatchError(
                    "Unversioned function called and the pyNVML version does not match the "
                    "NVML lib version."
                )
            return self._processes(handle)

    def nvmlDeviceGetComputeRunningProcesses_v2(self, handle: int) -> list[_Process]:
        with self.lock:
            self._count("processes_v2")
            return self._processes(handle)

    def _processes(self, handle: int) -> list[_Process]:
        d = self._device(handle, "processes")
        return [_Process(pid, used) for pid, used in d.processes]


def fake_backend(*devices: FakeDevice, **options: Any) -> tuple[NvmlBackend, FakeNvml]:
    """The real NVML backend over a :class:`FakeNvml` of ``devices`` (default: one TITAN RTX);
    ``options`` go to :class:`FakeNvml`."""
    nvml = FakeNvml(list(devices) if devices else None, **options)
    return NvmlBackend(nvml), nvml


def demo_backend() -> NvmlBackend:
    """``gpu_backend: fake``: one TITAN RTX with Ollama's qwen3:8b loaded (6100 MiB in use)."""
    device = FakeDevice(
        used=6100 * MIB,
        utilization_gpu=12,
        utilization_memory=4,
        temperature=46,
        power_mw=71_500,
        processes=[(4242, 6000 * MIB)],
    )
    return NvmlBackend(FakeNvml([device]))
